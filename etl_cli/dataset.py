"""Reading the published dataset (SPEC DATA6): pyiceberg + DuckDB locally, Athena on AWS.

Locally any Iceberg client reads the tables while the emulator runs: a pyiceberg
``GlueCatalog`` with ``glue.endpoint``/``s3.endpoint`` set to the emulator (any credentials).
``etl query`` registers each table as a DuckDB view of a pyiceberg scan, by its name
(``transactions``, ``transaction_rejects``). Against a deployed stack it runs the SQL in the
stack's Athena workgroup (stack output ``AthenaWorkGroupName``).
"""

from __future__ import annotations

import time
from typing import Any

from etl.contracts import DATASET_TABLES, TRANSACTIONS_TABLE

# The emulator's catalog lives with the emulator (etl_local imports nothing from etl_cli).
from etl_local.catalog import LOCAL_CREDENTIALS, emulator_catalog  # noqa: F401


def scan(catalog: Any, database: str, table: str = TRANSACTIONS_TABLE, row_filter: Any = None) -> Any:
    """The table's current rows as an Arrow table (optionally filtered)."""
    tbl = catalog.load_table(f"{database}.{table}")
    return (tbl.scan(row_filter=row_filter) if row_filter is not None else tbl.scan()).to_arrow()


def rows_of_file(catalog: Any, database: str, file_id: str, table: str = TRANSACTIONS_TABLE) -> Any:
    """The published rows of one file."""
    from etl.core.dataset import equal_to

    return scan(catalog, database, table, equal_to("file_id", file_id))


def snapshots(catalog: Any, database: str, table: str = TRANSACTIONS_TABLE) -> list[dict[str, Any]]:
    """The table's snapshot history, oldest first: id, time, operation and summary."""
    tbl = catalog.load_table(f"{database}.{table}")
    out = []
    for s in tbl.metadata.snapshots:
        summary = s.summary
        out.append(
            {
                "snapshot_id": s.snapshot_id,
                "parent_id": s.parent_snapshot_id,
                "timestamp_ms": s.timestamp_ms,
                "operation": str(summary.operation.value) if summary else None,
                "summary": dict(summary.additional_properties) if summary else {},
            }
        )
    return out


def query_local(sql: str, catalog: Any, database: str) -> Any:
    """Run ``sql`` in DuckDB over pyiceberg scans of both tables; returns an Arrow table."""
    import duckdb

    con = duckdb.connect()
    try:
        for name in DATASET_TABLES:
            con.register(name, scan(catalog, database, name))
        return con.sql(sql).fetch_arrow_table()
    finally:
        con.close()


class AthenaError(RuntimeError):
    """The query failed or was cancelled in Athena."""


def query_athena(
    sql: str, session: Any, workgroup: str, database: str, timeout: float = 300.0
) -> tuple[list[str], list[list[str | None]]]:
    """Run ``sql`` in the workgroup (its enforced result location and limits apply)."""
    athena = session.client("athena")
    qid = athena.start_query_execution(
        QueryString=sql, WorkGroup=workgroup, QueryExecutionContext={"Database": database}
    )["QueryExecutionId"]
    deadline = time.monotonic() + timeout
    delay = 0.25
    while True:
        status = athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]
        state = status["State"]
        if state == "SUCCEEDED":
            break
        if state in ("FAILED", "CANCELLED"):
            raise AthenaError(f"query {qid} {state}: {status.get('StateChangeReason', '')}")
        if time.monotonic() > deadline:
            raise AthenaError(f"query {qid} still {state} after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
    columns: list[str] = []
    rows: list[list[str | None]] = []
    for i, page in enumerate(athena.get_paginator("get_query_results").paginate(QueryExecutionId=qid)):
        result = page["ResultSet"]
        if not columns:
            columns = [c["Name"] for c in result["ResultSetMetadata"]["ColumnInfo"]]
        data = result["Rows"][1:] if i == 0 else result["Rows"]  # the first row is the header
        rows.extend([d.get("VarCharValue") for d in r["Data"]] for r in data)
    return columns, rows
