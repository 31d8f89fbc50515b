"""A pyiceberg catalog on the local emulator: what the local deploy, `etl query` and the e2e tests
read the dataset tables with (moto's Glue holds the catalog, its S3 the Iceberg metadata)."""

from __future__ import annotations

from typing import Any

LOCAL_CREDENTIALS = ("testing", "testing")


def emulator_catalog(endpoint: str, region: str = "us-east-1") -> Any:
    """A pyiceberg GlueCatalog on the emulator (pyiceberg's own pyarrow S3 FileIO)."""
    from pyiceberg.catalog.glue import GlueCatalog

    key, secret = LOCAL_CREDENTIALS
    return GlueCatalog(
        "local",
        **{
            "glue.endpoint": endpoint,
            "glue.region": region,
            "glue.access-key-id": key,
            "glue.secret-access-key": secret,
            "s3.endpoint": endpoint,
            "s3.region": region,
            "s3.access-key-id": key,
            "s3.secret-access-key": secret,
        },
    )
