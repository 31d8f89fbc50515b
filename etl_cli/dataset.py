"""Reading the published dataset (SPEC DATA6): pyiceberg + DuckDB locally, Athena on AWS.

Locally any Iceberg client reads the tables while the emulator runs: a pyiceberg
``GlueCatalog`` with ``glue.endpoint``/``s3.endpoint`` set to the emulator (any credentials).
``etl query`` registers each table the SQL names as a DuckDB view of a pyiceberg scan
(``transactions``, ``transaction_rejects``), Athena's metadata tables (``"transactions$snapshots"``,
``$history``, ``$files``, ``$partitions``) from pyiceberg's inspection tables, and Athena's time
travel (``FOR VERSION AS OF <snapshot id>``, ``FOR TIMESTAMP AS OF TIMESTAMP '...'``) as a scan
of that snapshot (SPEC UX4): the same SQL runs locally and on Athena. Against a deployed stack
it runs the SQL in the stack's Athena workgroup (stack output ``AthenaWorkGroupName``).
"""

from __future__ import annotations

import contextlib
import datetime
import re
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


class QueryError(RuntimeError):
    """The SQL cannot run: the engine's message on one line (``etl query`` exits 2)."""


# Athena's metadata tables ("<table>$<kind>") and pyiceberg's inspection table behind each.
METADATA_TABLES = ("snapshots", "history", "files", "partitions")

# Athena (engine 3, Trino) time travel, and engine 2's SYSTEM_ spellings: a table name, then
# FOR VERSION AS OF <snapshot id> or FOR TIMESTAMP AS OF TIMESTAMP '<time>' (a literal).
_TIME_TRAVEL = re.compile(
    r"""(?P<table>"[A-Za-z_][A-Za-z0-9_]*"|\b[A-Za-z_][A-Za-z0-9_]*)\s+FOR\s+"""
    r"(?P<kind>VERSION|SYSTEM_VERSION|TIMESTAMP|SYSTEM_TIME)\s+AS\s+OF\s+"
    r"(?P<value>\d+|(?:TIMESTAMP\s*)?'[^']*'|\S+)",
    re.IGNORECASE,
)


def one_line(message: str) -> str:
    """An engine's message on one line: DuckDB's ``LINE 1: ...`` echo and caret dropped."""
    lines = [ln.strip() for ln in str(message).splitlines()]
    kept = [ln for ln in lines if ln and not ln.startswith("LINE ") and set(ln) != {"^"}]
    return " ".join(kept) or type(message).__name__


def parse_timestamp(text: str) -> datetime.datetime:
    """Athena's timestamp literal (``2026-12-07 10:00:00[.fff] [UTC|+hh:mm]``) as an aware UTC time
    (a time without a zone is UTC, Athena's session zone)."""
    raw = re.sub(r"^TIMESTAMP\s*", "", text.strip(), flags=re.IGNORECASE).strip("'").strip()
    raw = re.sub(r"\s*(UTC|Z)$", "+00:00", raw, flags=re.IGNORECASE)
    try:
        value = datetime.datetime.fromisoformat(raw)
    except ValueError as exc:
        raise QueryError(f"not a timestamp: {text!r} (use TIMESTAMP 'YYYY-MM-DD HH:MM:SS UTC')") from exc
    return value.replace(tzinfo=value.tzinfo or datetime.UTC)


def _snapshot_as_of(tbl: Any, name: str, kind: str, value: str) -> int:
    """The snapshot id a time-travel clause designates in table ``name``."""
    if kind.upper() in ("VERSION", "SYSTEM_VERSION"):
        if not value.isdigit() or tbl.snapshot_by_id(int(value)) is None:
            raise QueryError(f"table {name} has no snapshot {value}")
        return int(value)
    when = parse_timestamp(value)
    ms = int(when.timestamp() * 1000)
    # The snapshot current at that time: the last entry of the table's log at or before it.
    current = [e.snapshot_id for e in tbl.history() if e.timestamp_ms <= ms]
    if not current:
        raise QueryError(f"table {name} has no snapshot at or before {when.isoformat()}")
    return int(current[-1])


def _names_in(sql: str, name: str) -> bool:
    return re.search(rf"(?<![\w$]){re.escape(name)}(?![\w$])", sql, re.IGNORECASE) is not None


def _register(con: Any, catalog: Any, database: str, sql: str) -> str:
    """Register every table ``sql`` reads as a DuckDB view; returns the SQL with each
    time-travel clause replaced by the name of its snapshot's view."""
    tables: dict[str, Any] = {}

    def table(name: str) -> Any:
        if name not in tables:
            tables[name] = catalog.load_table(f"{database}.{name}")
        return tables[name]

    def travel(match: re.Match[str]) -> str:
        name = match.group("table").strip('"').lower()
        if name not in DATASET_TABLES:
            return match.group(0)
        tbl = table(name)
        snapshot_id = _snapshot_as_of(tbl, name, match.group("kind"), match.group("value"))
        view = f"{name}@{snapshot_id}"
        con.register(view, tbl.scan(snapshot_id=snapshot_id).to_arrow())
        return f'"{view}"'

    sql = _TIME_TRAVEL.sub(travel, sql)
    for name in DATASET_TABLES:
        for kind in METADATA_TABLES:
            if f"{name}${kind}" in sql.lower():
                con.register(f"{name}${kind}", getattr(table(name).inspect, kind)())
        if _names_in(sql, name):
            con.register(name, table(name).scan().to_arrow())
    return sql


def _whole_numbers(table: Any) -> Any:
    """DuckDB's sums of integers are HUGEINT (decimal(38,0) in Arrow): as int64 where they fit,
    so ``--format json`` prints numbers (Athena returns them as bigint)."""
    import pyarrow as pa

    for i, col in enumerate(table.schema):
        if pa.types.is_decimal(col.type) and col.type.scale == 0:
            with contextlib.suppress(pa.ArrowInvalid):  # beyond int64: stays an exact decimal
                table = table.set_column(i, col.name, table.column(i).cast(pa.int64()))
    return table


def query_local(sql: str, catalog: Any, database: str) -> Any:
    """Run ``sql`` in DuckDB over pyiceberg scans of the tables it names; returns an Arrow table.

    Raises :class:`QueryError` (one line) for any error in the SQL or an unknown snapshot."""
    import duckdb
    from pyiceberg.exceptions import NoSuchTableError

    con = duckdb.connect()
    try:
        sql = _register(con, catalog, database, sql)
        return _whole_numbers(con.sql(sql).to_arrow_table())
    except duckdb.Error as exc:
        raise QueryError(one_line(str(exc))) from exc
    except NoSuchTableError as exc:
        raise QueryError(one_line(str(exc))) from exc
    finally:
        con.close()


class AthenaError(RuntimeError):
    """The query failed or was cancelled in Athena."""


def query_athena(
    sql: str, session: Any, workgroup: str, database: str, timeout: float = 300.0
) -> tuple[list[str], list[list[str | None]]]:
    """Run ``sql`` in the workgroup (its enforced result location and limits apply)."""
    from botocore.exceptions import BotoCoreError, ClientError

    athena = session.client("athena")
    try:
        qid = athena.start_query_execution(
            QueryString=sql, WorkGroup=workgroup, QueryExecutionContext={"Database": database}
        )["QueryExecutionId"]
    except (BotoCoreError, ClientError) as exc:  # e.g. InvalidRequestException for bad SQL
        raise AthenaError(one_line(str(exc))) from exc
    deadline = time.monotonic() + timeout
    delay = 0.25
    while True:
        status = athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]
        state = status["State"]
        if state == "SUCCEEDED":
            break
        if state in ("FAILED", "CANCELLED"):
            raise AthenaError(f"query {qid} {state}: {one_line(status.get('StateChangeReason', ''))}")
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


# ---------------------------------------------------------------------------------------------
# The load audit trail (etl history)

HISTORY_COLUMNS = (
    "committed_at",
    "file_id",
    "partner",
    "source_key",
    "rows_added",
    "rows_removed",
    "snapshot_id",
    "operation",
    "execution_arn",
)


def load_history(
    catalog: Any, database: str, partner: str | None = None, since: datetime.datetime | None = None
) -> list[dict[str, Any]]:
    """Every load of the ``transactions`` table, oldest first: one row per commit that names a
    file (the snapshot summary's ``etl.*`` properties, etl/core/dataset.py summary_properties).

    The one place ``etl history`` reads the trail from: the ``transaction_loads`` table (SPEC
    TBL6) replaces the snapshot summaries here, so history survives snapshot expiry."""
    from etl.core.dataset import SUMMARY_PREFIX

    out = []
    for snap in snapshots(catalog, database, TRANSACTIONS_TABLE):
        summary = snap["summary"]
        file_id = summary.get(SUMMARY_PREFIX + "file_id")
        if not file_id:
            continue  # not a load (maintenance)
        when = datetime.datetime.fromtimestamp(snap["timestamp_ms"] / 1000, tz=datetime.UTC)
        if since is not None and when < since:
            continue
        if partner is not None and summary.get(SUMMARY_PREFIX + "partner") != partner:
            continue
        out.append(
            {
                "committed_at": when.isoformat(timespec="seconds"),
                "file_id": file_id,
                "partner": summary.get(SUMMARY_PREFIX + "partner"),
                "source_key": summary.get(SUMMARY_PREFIX + "source_key"),
                "rows_added": int(summary.get("added-records") or 0),
                "rows_removed": int(summary.get("deleted-records") or 0),
                "snapshot_id": snap["snapshot_id"],
                "operation": snap["operation"],
                "execution_arn": summary.get(SUMMARY_PREFIX + "execution_arn") or None,
            }
        )
    return out


def aws_catalog(session: Any) -> Any:
    """A pyiceberg GlueCatalog on the account's Glue and S3, with the CLI's session credentials."""
    from pyiceberg.catalog.glue import GlueCatalog

    creds = session.get_credentials().get_frozen_credentials()
    props = {"s3.region": session.region_name, "s3.access-key-id": creds.access_key}
    props["s3.secret-access-key"] = creds.secret_key
    if creds.token:
        props["s3.session-token"] = creds.token
    return GlueCatalog("glue", client=session.client("glue"), **props)
