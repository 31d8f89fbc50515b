"""The load audit table ``transaction_loads`` (SPEC TBL6) and counts by lineage columns.

- :func:`record_load` appends one row per committed file (file, partner, key, version,
  manifest, execution, snapshot ids, rows added/removed, rejects added, time, commit token),
  after the file's commits. Idempotent by ``commit_token``: a retried Finalize finds its row and
  writes nothing; two Finalize steps appending at once conflict in Glue and the loser reloads
  and retries (bounded, then ``TransientError``).
- :func:`rows_by_file` counts a table's rows per ``file_id`` from the data (the lineage
  column), not from snapshot summaries: a compaction that rewrites files mixing file_ids turns
  a later replace into a row-level delete whose snapshot "adds" the other files' rewritten rows,
  so summary counts would be wrong while these stay exact.

Why a table: snapshot summaries carry the same facts, but snapshots are expired on a schedule
(etl.aws.maintenance); a table row is kept until someone deletes it.

Shipped to Lambda: Python 3.9 compatible (pyiceberg itself needs Python >= 3.10).
"""

from __future__ import annotations

import datetime
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from etl.aws import catalog as catalog_mod
from etl.contracts import LOADS_TABLE, REJECTS_TABLE, TRANSACTIONS_TABLE
from etl.core import dataset
from etl.errors import TransientError

COMMIT_ATTEMPTS = 6
_FILE_ID = "file_id"


def _bound_value(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")


def _exact_file_id(task: Any, field_id: int) -> str | None:
    """The file_id of a data file when its statistics pin it to one value and no delete file
    applies (then its record count is exactly that file_id's rows in it)."""
    if task.delete_files:
        return None
    f = task.file
    lo = _bound_value((f.lower_bounds or {}).get(field_id))
    hi = _bound_value((f.upper_bounds or {}).get(field_id))
    # Truncated string bounds never compare equal (the upper one is incremented), so lo == hi
    # is the exact value.
    return lo if lo is not None and lo == hi and not (f.null_value_counts or {}).get(field_id) else None


def count_rows(table: Any, row_filter: Any, snapshot_id: int | None = None) -> dict[str, int]:
    """Rows matching ``row_filter`` per file_id in ``table`` (at ``snapshot_id``, default the
    current snapshot). Data files constant in file_id (every file the pipeline writes) are
    counted from the manifests; others (a compaction's output) are read, the file_id column
    only."""
    from pyiceberg.expressions.visitors import _StrictMetricsEvaluator
    from pyiceberg.io.pyarrow import ArrowScan

    if snapshot_id is None and table.current_snapshot() is None:
        return {}
    scan = table.scan(row_filter=row_filter, selected_fields=(_FILE_ID,), snapshot_id=snapshot_id)
    field_id = table.schema().find_field(_FILE_ID).field_id
    # "Every row of this file matches": decided on the file's statistics, exact for the columns
    # the pipeline filters by (constant per file, EXACT_METRICS_COLUMNS).
    every_row = _StrictMetricsEvaluator(table.schema(), row_filter, case_sensitive=True)
    counts: dict[str, int] = {}
    to_read = []
    for task in scan.plan_files():
        exact = _exact_file_id(task, field_id)
        if exact is not None and every_row.eval(task.file):
            counts[exact] = counts.get(exact, 0) + int(task.file.record_count)
        else:
            to_read.append(task)
    if to_read:
        arrow = ArrowScan(table.metadata, table.io, scan.projection(), row_filter).to_table(to_read)
        for entry in arrow.column(_FILE_ID).value_counts().to_pylist():
            counts[str(entry["values"])] = counts.get(str(entry["values"]), 0) + int(entry["counts"])
    return counts


def rows_by_file(table: Any, file_ids: Iterable[str], snapshot_id: int | None = None) -> dict[str, int]:
    """``{file_id: rows}`` of ``table`` (at ``snapshot_id``) for each of ``file_ids`` (0 when
    absent): the conservation check's count, right after any compaction."""
    from pyiceberg.expressions import In

    ids = sorted(set(file_ids))
    out = dict.fromkeys(ids, 0)
    if not ids:
        return out
    expr = dataset.equal_to(_FILE_ID, ids[0]) if len(ids) == 1 else In(_FILE_ID, ids)  # type: ignore[call-arg, arg-type]
    for fid, n in count_rows(table, expr, snapshot_id).items():
        if fid in out:
            out[fid] = n
    return out


@dataclass(frozen=True)
class LoadRecord:
    """One row of ``transaction_loads``."""

    file_id: str
    partner: str
    source_key: str
    source_version: str | None
    manifest_key: str | None
    execution_arn: str | None
    snapshot_id: int | None
    rejects_snapshot_id: int | None
    rows_added: int
    rows_removed: int
    rejects_added: int
    committed_at: datetime.datetime
    commit_token: str
    already_recorded: bool = False

    def arrow(self) -> Any:
        import pyarrow as pa

        schema = dataset.loads_arrow_schema()
        return pa.Table.from_pylist([{c: getattr(self, c) for c in dataset.LOADS_COLUMNS}], schema=schema)


def _snapshots_of(table: Any, token: str) -> list[Any]:
    key = dataset.SUMMARY_PREFIX + "commit_token"
    return [s for s in table.metadata.snapshots if s.summary is not None and s.summary.get(key) == token]


def _rows_removed(table: Any, lineage: dataset.Lineage, token: str, fallback: int) -> int:
    """Rows the file's commit replaced: the rows matching its replace filter just before the
    commit (its first snapshot's parent), counted by lineage columns. ``fallback`` (the
    summary's count) when that snapshot is no longer retained."""
    snaps = _snapshots_of(table, token)
    if not snaps:
        return fallback
    parent = snaps[0].parent_snapshot_id
    if parent is None:
        return 0
    if table.metadata.snapshot_by_id(parent) is None:
        return fallback
    return sum(count_rows(table, catalog_mod._replace_filter(lineage), parent).values())


def _committed_at(table: Any, snapshot_id: int | None) -> datetime.datetime:
    snap = table.metadata.snapshot_by_id(snapshot_id) if snapshot_id is not None else None
    if snap is None:
        return datetime.datetime.now(datetime.timezone.utc)
    return datetime.datetime.fromtimestamp(snap.timestamp_ms / 1000, datetime.timezone.utc)


def build_record(
    cat: Any,
    database: str,
    lineage: dataset.Lineage,
    data_keys: Iterable[str],
    manifest_key: str | None,
    execution_arn: str | None,
    rows: catalog_mod.Published,
    rejects: catalog_mod.Published | None,
) -> LoadRecord:
    """The row of a file whose commits (``rows`` on transactions, ``rejects``) landed, with
    its counts taken from the data at the committed snapshots."""
    token = catalog_mod.commit_token(TRANSACTIONS_TABLE, lineage, data_keys, execution_arn)
    tx_table = cat.load_table(f"{database}.{TRANSACTIONS_TABLE}")
    added = rows.added_rows
    if rows.snapshot_id is not None and tx_table.metadata.snapshot_by_id(rows.snapshot_id) is not None:
        added = rows_by_file(tx_table, [lineage.file_id], rows.snapshot_id)[lineage.file_id]
    removed = _rows_removed(tx_table, lineage, token, rows.deleted_rows)
    rejects_added = 0
    if rejects is not None:
        rejects_added = rejects.added_rows
        rj_table = cat.load_table(f"{database}.{REJECTS_TABLE}")
        if (
            rejects.snapshot_id is not None
            and rj_table.metadata.snapshot_by_id(rejects.snapshot_id) is not None
        ):
            rejects_added = rows_by_file(rj_table, [lineage.file_id], rejects.snapshot_id)[lineage.file_id]
    return LoadRecord(
        file_id=lineage.file_id,
        partner=lineage.partner,
        source_key=lineage.source_key,
        source_version=lineage.source_version,
        manifest_key=manifest_key,
        execution_arn=execution_arn,
        snapshot_id=rows.snapshot_id,
        rejects_snapshot_id=rejects.snapshot_id if rejects is not None else None,
        rows_added=added,
        rows_removed=removed,
        rejects_added=rejects_added,
        committed_at=_committed_at(tx_table, rows.snapshot_id),
        commit_token=token,
    )


def find_load(table: Any, partner: str, token: str) -> dict[str, Any] | None:
    """The ``transaction_loads`` row of ``token`` (None when not recorded)."""
    from pyiceberg.expressions import And

    if table.current_snapshot() is None:
        return None
    expr = And(dataset.equal_to("partner", partner), dataset.equal_to("commit_token", token))
    rows = table.scan(row_filter=expr).to_arrow().to_pylist()
    return rows[0] if rows else None


def record_load(
    database: str,
    lineage: dataset.Lineage,
    data_keys: Iterable[str],
    manifest_key: str | None,
    execution_arn: str | None,
    rows: catalog_mod.Published,
    rejects: catalog_mod.Published | None = None,
    catalog: Any = None,
    attempts: int = COMMIT_ATTEMPTS,
) -> LoadRecord:
    """Append the file's row to ``transaction_loads`` unless its commit token is there already.

    Call it after the file's commits (``rows`` = the transactions ``Published``, ``rejects``
    the rejects one); ``data_keys`` and ``execution_arn`` as given to ``publish`` (they make
    the token). Returns the row (``already_recorded`` on a retry)."""
    from pyiceberg.exceptions import CommitFailedException

    cat = catalog or catalog_mod.load_catalog()
    keys = list(data_keys)
    record = build_record(cat, database, lineage, keys, manifest_key, execution_arn, rows, rejects)
    ident = f"{database}.{LOADS_TABLE}"
    props = {dataset.SUMMARY_PREFIX + "commit_token": record.commit_token}
    for attempt in range(1, attempts + 1):
        table = cat.load_table(ident)
        if find_load(table, lineage.partner, record.commit_token) is not None:
            return LoadRecord(**{**record.__dict__, "already_recorded": True})
        tx = table.transaction()
        tx.append(record.arrow(), snapshot_properties=props)
        try:
            tx.commit_transaction()
        except CommitFailedException:
            if attempt < attempts:
                time.sleep(random.uniform(0, min(5.0, 0.2 * 2**attempt)))
            continue
        return record
    raise TransientError(f"recording the load of {lineage.file_id} conflicted {attempts} times")
