"""EnsureTables: the CloudFormation custom resource that creates the dataset's Iceberg tables.

Called by the CDK Provider framework (``custom_resources.Provider``, ``on_event_handler``) with
``ResourceProperties`` ``{"Database": <Glue database>, "Warehouse": "s3://<bucket>/tables/"}``:

- ``Create``/``Update``: :func:`etl.aws.catalog.ensure_tables` creates the tables that are
  missing (idempotent; an existing table keeps its schema and data, its mutable properties are
  brought up to date: SPEC TBL6).
- ``Delete``: nothing. The Glue database (its own CloudFormation resource) removes its tables
  when it is deleted; the data under ``tables/`` follows the bucket's removal policy.

Returns ``{"PhysicalResourceId": "<database>/tables", "Data": {"TransactionsTable": ...,
"RejectsTable": ..., "LoadsTable": ...}}``. Glue calls: GetTable (exists?), CreateTable,
UpdateTable (properties of an existing table); S3: PutObject of a metadata JSON under
``tables/<table>/metadata/``, GetObject of an existing table's.

Shipped to Lambda: Python 3.9 compatible (pyiceberg needs Python >= 3.10).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from etl.aws import catalog
from etl.contracts import DATASET_TABLES, LOADS_TABLE, REJECTS_TABLE, TRANSACTIONS_TABLE
from etl.errors import InvalidEvent


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Create/Update: ensure the tables; Delete: nothing (see the module docstring)."""
    if not isinstance(event, Mapping):
        raise InvalidEvent("a CloudFormation custom-resource event is a JSON object")
    props = event.get("ResourceProperties") or {}
    database, warehouse = props.get("Database"), props.get("Warehouse")
    if not database or not warehouse:
        raise InvalidEvent("ResourceProperties needs Database and Warehouse")
    physical_id = f"{database}/tables"
    request = event.get("RequestType")
    if request in ("Create", "Update"):
        tables = catalog.ensure_tables(str(database), str(warehouse))
    elif request == "Delete":
        tables = {name: f"{database}.{name}" for name in DATASET_TABLES}
        physical_id = str(event.get("PhysicalResourceId") or physical_id)
    else:
        raise InvalidEvent(f"unknown RequestType {request!r}")
    return {
        "PhysicalResourceId": physical_id,
        "Data": {
            "TransactionsTable": tables[TRANSACTIONS_TABLE],
            "RejectsTable": tables[REJECTS_TABLE],
            "LoadsTable": tables[LOADS_TABLE],
        },
    }
