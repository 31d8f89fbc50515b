"""Shared fixtures: a moto-backed bucket and status table with the real key schema.

``etl_aws`` is the one to use: inside ``moto.mock_aws`` it creates the versioned bucket
``etl-data-test`` and the table ``etl-status-test`` (pk ``file_id`` S, sk ``chunk_id`` S),
sets the environment every handler reads (docs/contracts.md), and resets the process-wide
boto3 clients before and after so no client leaks between tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

try:  # pyiceberg needs Python >= 3.10; on 3.9 the tests that publish are skipped (README)
    import pyiceberg  # noqa: F401

    _HAS_PYICEBERG = True
except ImportError:
    _HAS_PYICEBERG = False

# Before any etl module is imported: Powertools reads these when its objects are created.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "transaction-etl")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "TransactionEtl")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

TEST_BUCKET = "etl-data-test"
TEST_TABLE = "etl-status-test"
TEST_GLUE_DATABASE = "transaction_etl_test"


@dataclass
class EtlAws:
    """Handles on the mocked resources."""

    bucket: str
    table_name: str
    s3: Any
    dynamodb: Any

    def put(self, key: str, body: bytes) -> dict[str, Any]:
        """Upload an object; returns the PutObject response (VersionId, ETag)."""
        return self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)

    def get(self, key: str) -> bytes:
        """The current bytes of ``key``."""
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def keys(self, prefix: str = "") -> list[str]:
        """Current keys under ``prefix``, sorted."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for p in pages for o in p.get("Contents", []))

    @property
    def repo(self) -> Any:
        """A StatusRepository on the test table."""
        from etl.aws.status import StatusRepository

        return StatusRepository(self.table_name)


# SEC2: partners the tests upload under that have no schema file (context ``partners`` declares
# such partners with "schema": "default" in a real deployment).
TEST_DEFAULT_SCHEMA_PARTNERS = ("acme", "acme-bank", "acme2", "bank42", "globex", "other", "p", "x")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment of the handlers (docs/contracts.md) with fake credentials, no endpoint."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "BUCKET_NAME": TEST_BUCKET,
        "TABLE_NAME": TEST_TABLE,
        "GLUE_DATABASE": TEST_GLUE_DATABASE,
        "POWERTOOLS_SERVICE_NAME": "transaction-etl",
        "POWERTOOLS_METRICS_NAMESPACE": "TransactionEtl",
        "POWERTOOLS_TRACE_DISABLED": "true",
        # DR2: the region role switch (absent parameter = the default, active).
        "REGION_ROLE_PARAMETER": "/transaction-etl/test/region-role",
        "DEFAULT_REGION_ROLE": "active",
        # SEC2: the test partners without a schema file, declared to use the default schema.
        "DEFAULT_SCHEMA_PARTNERS": ",".join(TEST_DEFAULT_SCHEMA_PARTNERS),
    }.items():
        monkeypatch.setenv(name, value)
    # mock_aws intercepts AWS endpoints only: an emulator URL would bypass it.
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def etl_aws(aws_env: None) -> Iterator[EtlAws]:
    """Mocked versioned bucket + status table (real key schema); clients reset around it."""
    import boto3
    from moto import mock_aws

    from etl.aws import clients, role

    with mock_aws():
        clients.reset_clients()
        role.clear_cache()
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=TEST_BUCKET)
        s3.put_bucket_versioning(Bucket=TEST_BUCKET, VersioningConfiguration={"Status": "Enabled"})
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName=TEST_TABLE,
            KeySchema=[
                {"AttributeName": "file_id", "KeyType": "HASH"},
                {"AttributeName": "chunk_id", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": name, "AttributeType": "S"}
                for name in ("file_id", "chunk_id", "open_state", "open_since", "partner", "created_at")
            ],
            # The two indexes of infra/status_table.py (OPS1 sweep, OPS3 freshness).
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "open-files",
                    "KeySchema": [
                        {"AttributeName": "open_state", "KeyType": "HASH"},
                        {"AttributeName": "open_since", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                },
                {
                    "IndexName": "partner-created",
                    "KeySchema": [
                        {"AttributeName": "partner", "KeyType": "HASH"},
                        {"AttributeName": "created_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                },
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        try:
            yield EtlAws(bucket=TEST_BUCKET, table_name=TEST_TABLE, s3=s3, dynamodb=ddb)
        finally:
            clients.reset_clients()


@pytest.fixture
def etl_dataset(etl_aws: EtlAws) -> EtlAws:
    """``etl_aws`` plus the dataset (SPEC DATA1): the Glue database and both Iceberg tables,
    created by the custom resource's code with real metadata in the mocked bucket (a few
    seconds: only the tests that publish use it). Skipped where pyiceberg cannot run (3.9)."""
    import boto3

    if not _HAS_PYICEBERG:
        pytest.skip("pyiceberg needs Python >= 3.10: publishing is not available on python3.9")
    from etl.aws import catalog

    boto3.client("glue", region_name="us-east-1").create_database(DatabaseInput={"Name": TEST_GLUE_DATABASE})
    catalog.ensure_tables(TEST_GLUE_DATABASE, f"s3://{TEST_BUCKET}/tables/")
    return etl_aws
