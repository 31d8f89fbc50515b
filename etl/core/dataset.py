"""The published dataset (SPEC DATA1-DATA5): the two Iceberg tables' schemas, partitioning and
sort order, and the pure Arrow transformations that turn a chunk's output into their data files.

One definition for everything that must agree: ProcessChunk writes Parquet files with
:func:`transactions_arrow_schema` / :func:`rejects_arrow_schema` columns; the catalog adapter
(``etl.aws.catalog``) creates the tables from :func:`iceberg_schemas` with the same names,
order and types; Athena named queries (infra) use the column names below.

Layout (SPEC DATA3, docs/dataset.md): ``transactions`` is partitioned by ``identity(partner)``
and ``identity(transaction_date)`` and every data file holds exactly one (partner,
transaction_date): pyiceberg's ``add_files`` infers a file's partition from its column
statistics (lower == upper), and identity partitions need no ``pyiceberg-core``. Within a file
rows are sorted by ``(account_id, transaction_id)``: an analyst's account look-up in a
partner-day prunes row groups by the account_id min/max, and the order is deterministic, so
a re-run writes byte-identical objects. ``transaction_rejects`` is partitioned by partner.

pyarrow only at import time: ProcessChunk imports this module and must not pay for pyiceberg
(PERF4); :func:`iceberg_schemas` and friends import pyiceberg when called (Finalize, deploy).

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc
import pyarrow.parquet as pq

from etl.contracts import LOADS_TABLE, REJECTS_TABLE, TABLES_PREFIX, TRANSACTIONS_TABLE
from etl.core import rejects as rejects_mod
from etl.core import workers

pc: Any = _pc

# Lineage columns appended to the schema's typed columns (names are a contract: the Athena
# named queries and docs/dataset.md use them).
LINEAGE_COLUMNS = ("file_id", "partner", "source_key", "source_version", "line")
REJECT_COLUMNS = (
    "file_id",
    "partner",
    "source_key",
    "source_version",
    "line",
    "column_name",
    "rule",
    "value",
    "reason",
)
PARTITION_COLUMNS = ("partner", "transaction_date")
SORT_COLUMNS = ("account_id", "transaction_id")
DATE_COLUMN = "transaction_date"
# Columns constant within a data file that commits delete by: their statistics must be exact
# (Iceberg's default metrics mode truncates strings to 16 characters, which would turn the
# metadata-only delete of a file's rows into a rewrite).
EXACT_METRICS_COLUMNS = ("file_id", "partner", "source_key", "source_version")
# The load audit trail (SPEC TBL6): one row per committed file, written by etl.aws.loads after
# the file's commits. Counts are taken from the data by lineage columns (not from snapshot
# summaries), so they stay right after a compaction that mixes files.
LOADS_COLUMNS = (
    "file_id",
    "partner",
    "source_key",
    "source_version",
    "manifest_key",
    "execution_arn",
    "snapshot_id",
    "rejects_snapshot_id",
    "rows_added",
    "rows_removed",
    "rejects_added",
    "committed_at",
    "commit_token",
)
# Properties every table is created with; ensure_tables sets them on an existing table whose
# values differ (a deploy upgrades the tables it finds).
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "snappy",
    # Conflicts are retried by etl.aws.catalog (reload, redo the whole transaction, bounded),
    # not inside pyiceberg: one explicit policy, the same on every pyiceberg version.
    "commit.retry.num-retries": "0",
    **{f"write.metadata.metrics.column.{c}": "full" for c in EXACT_METRICS_COLUMNS},
    # SPEC TBL6: bounded metadata. Every commit writes a metadata.json; keep the last 20 (the
    # metadata log) and let the committer delete older ones (pyiceberg honours both on commit).
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
    # Every add_files goes through pyiceberg's merge-append when this is on: once a spec has
    # min-count manifests they are merged into manifests of up to target-size bytes, so the
    # manifest list of a table with 1,000 loads does not hold 1,000 manifests
    # (docs/benchmarks.md, "1,000 commits").
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "20",
    "commit.manifest.target-size-bytes": str(8 * 1024 * 1024),
}
# Properties a deploy may change on an existing table (the rest are fixed at creation:
# format-version cannot go down, the name mapping follows the schema).
MUTABLE_PROPERTIES = tuple(k for k in TABLE_PROPERTIES if k != "format-version")
# Snapshot summary keys every commit sets (the load audit trail, SPEC DATA2).
SUMMARY_PREFIX = "etl."

_DATA_PARQUET_OPTIONS: dict[str, Any] = {"compression": "snappy", "version": "2.6"}


@dataclass(frozen=True)
class Lineage:
    """Where a file's rows came from (constant for every row of a file)."""

    file_id: str
    partner: str
    source_key: str
    source_version: str | None


# ---------------------------------------------------------------------------------------------
# Names and locations


def table_location(bucket: str, table: str) -> str:
    """``s3://<bucket>/tables/<table>``."""
    return f"s3://{bucket}/{TABLES_PREFIX}{table}"


def warehouse(bucket: str) -> str:
    """``s3://<bucket>/tables/``."""
    return f"s3://{bucket}/{TABLES_PREFIX}"


def data_prefix(table: str, file_id: str) -> str:
    """Key prefix of one file's (not yet or already) published data files of ``table``:
    ``tables/<table>/data/file_id=<file_id>/``. MarkFailed deletes it for a never-published
    file."""
    return f"{TABLES_PREFIX}{table}/data/file_id={file_id}/"


def content_tag(body: bytes) -> str:
    """The name suffix of a data file with these bytes (16 hex digits of their SHA-256)."""
    return hashlib.sha256(body).hexdigest()[:16]


def transactions_data_key(file_id: str, index: int, day: str, body: bytes | None = None) -> str:
    """``tables/transactions/data/file_id=<id>/part-00001-2024-03-15-<content>.parquet``.

    Named by content (SPEC TBL3 I3): a key is only ever written with the same bytes, so no
    published object is rewritten, whatever re-runs, re-plans or de-duplicates the file."""
    tag = f"-{content_tag(body)}" if body is not None else ""
    return f"{data_prefix(TRANSACTIONS_TABLE, file_id)}part-{index:05d}-{day}{tag}.parquet"


def rejects_data_key(file_id: str, index: int, body: bytes | None = None) -> str:
    """``tables/transaction_rejects/data/file_id=<id>/part-00001-<content>.parquet``."""
    tag = f"-{content_tag(body)}" if body is not None else ""
    return f"{data_prefix(REJECTS_TABLE, file_id)}part-{index:05d}{tag}.parquet"


# ---------------------------------------------------------------------------------------------
# Arrow schemas


def _typed_fields() -> list[pa.Field]:
    """The default schema's typed columns (every partner schema maps onto them)."""
    from etl.core.process import arrow_type
    from etl.core.schema import DEFAULT_SCHEMA, load_schema

    schema = load_schema(DEFAULT_SCHEMA)
    return [pa.field(f.name, arrow_type(f), nullable=not f.required) for f in schema.fields]


def transactions_arrow_schema() -> pa.Schema:
    """Typed columns, then the lineage columns (``source_version`` nullable: unversioned
    buckets have none)."""
    return pa.schema(
        [
            *_typed_fields(),
            pa.field("file_id", pa.string(), nullable=False),
            pa.field("partner", pa.string(), nullable=False),
            pa.field("source_key", pa.string(), nullable=False),
            pa.field("source_version", pa.string(), nullable=True),
            pa.field("line", pa.int64(), nullable=False),
        ]
    )


def rejects_arrow_schema() -> pa.Schema:
    return pa.schema(
        [
            pa.field("file_id", pa.string(), nullable=False),
            pa.field("partner", pa.string(), nullable=False),
            pa.field("source_key", pa.string(), nullable=False),
            pa.field("source_version", pa.string(), nullable=True),
            pa.field("line", pa.int64(), nullable=False),
            pa.field("column_name", pa.string(), nullable=False),
            pa.field("rule", pa.string(), nullable=False),
            pa.field("value", pa.string(), nullable=True),
            pa.field("reason", pa.string(), nullable=False),
        ]
    )


def loads_arrow_schema() -> pa.Schema:
    """``transaction_loads``: one row per committed file (SPEC TBL6). ``snapshot_id`` is null
    for a file whose commit changed nothing (no valid rows, nothing to replace)."""
    return pa.schema(
        [
            pa.field("file_id", pa.string(), nullable=False),
            pa.field("partner", pa.string(), nullable=False),
            pa.field("source_key", pa.string(), nullable=False),
            pa.field("source_version", pa.string(), nullable=True),
            pa.field("manifest_key", pa.string(), nullable=True),
            pa.field("execution_arn", pa.string(), nullable=True),
            pa.field("snapshot_id", pa.int64(), nullable=True),
            pa.field("rejects_snapshot_id", pa.int64(), nullable=True),
            pa.field("rows_added", pa.int64(), nullable=False),
            pa.field("rows_removed", pa.int64(), nullable=False),
            pa.field("rejects_added", pa.int64(), nullable=False),
            pa.field("committed_at", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("commit_token", pa.string(), nullable=False),
        ]
    )


# ---------------------------------------------------------------------------------------------
# Chunk output -> data files


def _constant(value: str | None, n: int) -> pa.Array:
    if value is None:
        return pa.nulls(n, pa.string())
    # A one-entry dictionary decoded once: cheap for 100k+ rows, no Python loop.
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value])).cast(
        pa.string()
    )


def transactions_table(valid: pa.Table, lines: np.ndarray, lineage: Lineage) -> pa.Table:
    """The chunk's valid rows in the ``transactions`` column order and types, with lineage.

    ``valid`` holds the partner schema's target columns (a partner may omit optional ones:
    they become nulls); ``lines`` the physical line number of each row.
    """
    target = transactions_arrow_schema()
    n = valid.num_rows
    if len(lines) != n:
        raise ValueError(f"{len(lines)} line numbers for {n} rows")
    cols = []
    for fld in target:
        if fld.name in LINEAGE_COLUMNS:
            if fld.name == "line":
                cols.append(pa.array(np.asarray(lines, dtype=np.int64), pa.int64()))
            else:
                cols.append(_constant(getattr(lineage, fld.name), n))
        elif fld.name in valid.column_names:
            col = valid.column(fld.name)
            cols.append(col if col.type == fld.type else col.cast(fld.type))
        elif fld.nullable:
            cols.append(pa.nulls(n, fld.type))
        else:
            raise ValueError(f"the chunk has no values for the required column {fld.name}")
    return pa.Table.from_arrays(cols, schema=target)


def split_by_date(table: pa.Table | list[pa.Table]) -> list[tuple[str, pa.Table]]:
    """``[(YYYY-MM-DD, rows of that transaction_date sorted by account_id, transaction_id)]``
    in date order: one table per data file (one partition value per file).

    Given as a one-element list, the table is taken out of it (the list is emptied) and its
    columns are let go one by one as their reordered copies are made: with no other reference
    to the rows, the step holds one copy of them plus a column or two, not two copies (RUN12:
    the chunk function's peak)."""
    return _split_sorted(_take_in_order(table if isinstance(table, list) else [table]))


def _split_sorted(ordered: pa.Table) -> list[tuple[str, pa.Table]]:
    """Rows already in :func:`row_order`, cut into one table per transaction date."""
    if ordered.num_rows == 0:
        return []
    dates = ordered.column(DATE_COLUMN).combine_chunks()
    runs = pc.run_end_encode(dates)
    ends = runs.run_ends.to_numpy()
    values = runs.values
    out = []
    start = 0
    for i, end in enumerate(ends):
        day = values[i].as_py()
        out.append((day.isoformat(), ordered.slice(start, int(end) - start)))
        start = int(end)
    return out


def row_order(table: pa.Table) -> Any:
    """Row order by (transaction_date, account_id, transaction_id), ascending and stable: the
    order of ``pc.sort_indices`` on those keys, computed faster (PERF2: Arrow's multi-key sort
    compares strings row by row, ~0.28 s for 385k rows). Each key becomes an integer rank that
    orders as the key does (dates as days; account ids by their sorted dictionary: few distinct;
    transaction ids by one single-key sort), then one stable ``np.lexsort`` of the integers.
    Falls back to Arrow's sort when a key has nulls (Arrow puts them last)."""
    keys = [DATE_COLUMN, *SORT_COLUMNS]
    if any(table.column(k).null_count for k in keys) or table.schema.field(DATE_COLUMN).type != pa.date32():
        return pc.sort_indices(table, sort_keys=[(k, "ascending") for k in keys])
    days = _np(table.column(DATE_COLUMN).cast(pa.int32()))
    accounts = _dictionary_rank(table.column(SORT_COLUMNS[0]))
    ids = _sort_rank(table.column(SORT_COLUMNS[1]))
    return np.lexsort((ids, accounts, days))  # last key is the primary one


def _np(col: pa.ChunkedArray) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return np.asarray(arr.to_numpy(zero_copy_only=False))


def _dictionary_rank(col: pa.ChunkedArray) -> np.ndarray:
    """Dense rank of each value (equal values, equal rank) via its sorted dictionary."""
    enc = pc.dictionary_encode(col.combine_chunks())
    out: np.ndarray = _sort_rank(enc.dictionary)[_np(enc.indices)]
    return out


def _sort_rank(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Position of each value in the stable sort of the column (equal values keep their order,
    so a stable sort by this rank is a stable sort by the value)."""
    order = _np(pc.sort_indices(col))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    return rank


def _take_in_order(holder: list[pa.Table]) -> pa.Table:
    """The table taken out of ``holder``, its rows in :func:`row_order`: column by column on the
    worker threads (take releases the GIL), each unsorted column let go once copied."""
    table = holder.pop()
    if table.num_rows == 0:
        return table
    idx = pa.array(np.asarray(row_order(table), dtype=np.int64))
    schema = table.schema
    cols: list[Any] = list(table.columns)
    del table

    def one(i: int) -> Any:
        col, cols[i] = cols[i], None  # the list held the last reference to the unsorted column
        return col.take(idx)

    n = len(cols)
    if len(idx) >= 20_000 and workers.parallel():
        out = list(workers.pool().map(one, range(n)))
    else:
        out = [one(i) for i in range(n)]
    return pa.Table.from_arrays(out, schema=schema)


def data_files(parts: list[tuple[str, pa.Table]]) -> list[bytes]:
    """:func:`data_file_bytes` of each part, on the worker threads (the Parquet writer releases
    the GIL; one file per transaction date, independent of each other)."""
    if len(parts) < 2 or not workers.parallel():
        return [data_file_bytes(t) for _, t in parts]
    return list(workers.pool().map(lambda p: data_file_bytes(p[1]), parts))


def data_file_bytes(table: pa.Table) -> bytes:
    """Snappy Parquet with statistics on every column (Iceberg metrics, partition inference,
    row-group pruning), dictionary encoding except for the unique ids; deterministic bytes."""
    sink = pa.BufferOutputStream()
    no_dict = {"transaction_id", "line", "description"}
    dict_cols = [f.name for f in table.schema if pa.types.is_string(f.type) and f.name not in no_dict]
    pq.write_table(table, sink, use_dictionary=dict_cols, write_statistics=True, **_DATA_PARQUET_OPTIONS)
    return cast(bytes, sink.getvalue().to_pybytes())


def rejects_table(
    entries: list[tuple[int, str, str, str | None, str]] | pa.Table, lineage: Lineage
) -> pa.Table:
    """``transaction_rejects`` rows from ``(line, column_name, rule, value, reason)`` tuples or
    from a chunk's columnar rejects (``ChunkResult.rejects_table``, taken without a Python
    round trip: RUN12)."""
    if isinstance(entries, pa.Table):
        n = entries.num_rows
        cols = [
            entries.column("line"),
            entries.column("column"),
            entries.column("rule"),
            rejects_mod.values(entries),
            entries.column("reason"),
        ]
    else:
        n = len(entries)
        lines, names, rules, values, reasons = (list(x) for x in zip(*entries)) if n else ([], [], [], [], [])
        cols = [
            pa.array(lines, pa.int64()),
            pa.array(names, pa.string()),
            pa.array(rules, pa.string()),
            pa.array(values, pa.string()),
            pa.array(reasons, pa.string()),
        ]
    return pa.Table.from_arrays(
        [
            _constant(lineage.file_id, n),
            _constant(lineage.partner, n),
            _constant(lineage.source_key, n),
            _constant(lineage.source_version, n),
            *cols,
        ],
        schema=rejects_arrow_schema(),
    )


def lineage_of(file: Mapping[str, Any]) -> Lineage:
    """The lineage of a file item / the state's ``file`` object."""
    return Lineage(
        file_id=str(file["file_id"]),
        partner=str(file["partner"]),
        source_key=str(file.get("original_key") or file["key"]),
        source_version=(str(file["version_id"]) if file.get("version_id") else None),
    )


def summary_properties(
    lineage: Lineage, manifest_key: str | None, execution_arn: str | None, token: str
) -> dict[str, str]:
    """The snapshot summary of a file's commit (the audit trail of a load, SPEC DATA2)."""
    props = {
        "file_id": lineage.file_id,
        "partner": lineage.partner,
        "source_key": lineage.source_key,
        "source_version": lineage.source_version or "",
        "manifest_key": manifest_key or "",
        "execution_arn": execution_arn or "",
        "commit_token": token,
    }
    return {SUMMARY_PREFIX + k: v for k, v in props.items()}


# ---------------------------------------------------------------------------------------------
# Iceberg (pyiceberg imported on call)


def equal_to(column: str, value: Any) -> Any:
    """pyiceberg's ``EqualTo(column, value)`` (its pydantic signature confuses type checkers)."""
    from pyiceberg.expressions import EqualTo

    return EqualTo(column, value)  # type: ignore[call-arg, arg-type]


def iceberg_schemas() -> dict[str, Any]:
    """``{table name: pyiceberg Schema}`` with stable field ids (1..n in column order)."""
    from pyiceberg.io.pyarrow import pyarrow_to_schema
    from pyiceberg.schema import Schema as IcebergSchema
    from pyiceberg.table.name_mapping import MappedField, NameMapping

    out = {}
    for name, arrow in (
        (TRANSACTIONS_TABLE, transactions_arrow_schema()),
        (REJECTS_TABLE, rejects_arrow_schema()),
        (LOADS_TABLE, loads_arrow_schema()),
    ):
        mapping = NameMapping(
            [
                MappedField(field_id=i + 1, names=[f.name])  # type: ignore[call-arg]
                for i, f in enumerate(arrow)
            ]
        )
        schema = pyarrow_to_schema(arrow, name_mapping=mapping)
        out[name] = IcebergSchema(*schema.fields, schema_id=0)
    return out


def partition_spec(table: str, schema: Any) -> Any:
    """identity(partner), identity(transaction_date) for transactions; identity(partner) for
    the rejects and the loads (a partner's load history reads one partition)."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import IdentityTransform

    columns = PARTITION_COLUMNS if table == TRANSACTIONS_TABLE else ("partner",)
    fields = [
        PartitionField(
            source_id=schema.find_field(c).field_id,
            field_id=1000 + i,
            transform=IdentityTransform(),
            name=c,
        )
        for i, c in enumerate(columns)
    ]
    return PartitionSpec(*fields, spec_id=0)


def sort_order(table: str, schema: Any) -> Any:
    """(account_id, transaction_id) for transactions; (line) for the rejects; (committed_at)
    for the loads ("partner P since T" prunes by the time's min/max)."""
    from pyiceberg.table.sorting import SortField, SortOrder
    from pyiceberg.transforms import IdentityTransform

    columns = {TRANSACTIONS_TABLE: SORT_COLUMNS, REJECTS_TABLE: ("line",), LOADS_TABLE: ("committed_at",)}[
        table
    ]
    return SortOrder(
        *[SortField(source_id=schema.find_field(c).field_id, transform=IdentityTransform()) for c in columns],
        order_id=1,
    )


def table_properties(schema: Any) -> dict[str, str]:
    """TABLE_PROPERTIES plus the name mapping (data files carry no field ids): set at creation
    so that no commit has to change table properties."""
    return {**TABLE_PROPERTIES, "schema.name-mapping.default": schema.name_mapping.model_dump_json()}
