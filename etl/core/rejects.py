"""A chunk's rejects in columnar (Arrow) form (RUN12, DATA5).

Only rejected rows ever reach Python, but a chunk where every row is a reject (ragged rows, a
wrong delimiter) has hundreds of thousands of them: as one Python tuple each that is ~400
bytes of objects per reject. :class:`Rejects` collects a chunk's rejects in two forms: rows with
a wrong field count arrive as whole batches of columns (:func:`whole_records`, built a slice at
a time by ``etl.core.process``), and the few other rejects (rule failures, repeated ids, bad
encoding) as tuples, which :func:`to_table` turns into columns a batch at a time, letting go of
the tuples as it goes. The result is one table in line order, which the chunk's result holds
and from which the rejects CSV is written a slice at a time.

Columns: ``line`` (int64), ``column``, ``rule``, ``value``, ``reason``, ``record`` (strings).
``value`` is null for a whole-record reject (``column == "*"``) whose value is the record
itself: it is stored once, and :func:`entries` and :func:`values` give it back.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc

pc: Any = _pc

# (line, column, reason, record, rule, value) of one reject while a chunk is processed.
Reject = tuple[int, str, str, str, str, "str | None"]
# The column of a reject that concerns the whole record (wrong field count, bad encoding).
RECORD_COLUMN = "*"
SCHEMA = pa.schema(
    [
        pa.field("line", pa.int64(), nullable=False),
        pa.field("column", pa.string(), nullable=False),
        pa.field("rule", pa.string(), nullable=False),
        pa.field("value", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("record", pa.string(), nullable=False),
    ]
)
_BATCH = 20_000


def to_table(rejects: list[Reject]) -> pa.Table:
    """The rejects as a table in line order. Consumes ``rejects`` (empty on return): batches
    are cut from the end of the list, so each batch's tuples are freed once it is converted."""
    rejects.sort(key=lambda r: r[0], reverse=True)
    batches = []
    while rejects:
        part = rejects[-_BATCH:]
        del rejects[-_BATCH:]
        part.reverse()
        lines = [r[0] for r in part]
        columns = [r[1] for r in part]
        reasons = [r[2] for r in part]
        records = [r[3] for r in part]
        rules = [r[4] for r in part]
        values = [None if r[1] == RECORD_COLUMN and r[5] is r[3] else r[5] for r in part]
        del part
        batches.append(_batch(lines, columns, rules, pa.array(values, pa.string()), reasons, records))
    return pa.Table.from_batches(batches, schema=SCHEMA)


def _batch(
    lines: Any, columns: list[str], rules: list[str], values: pa.Array, reasons: list[str], records: list[str]
) -> pa.RecordBatch:
    """One batch of reject columns in :data:`SCHEMA` order."""
    return pa.record_batch(
        [
            pa.array(lines, pa.int64()),
            pa.array(columns, pa.string()),
            pa.array(rules, pa.string()),
            values,
            pa.array(reasons, pa.string()),
            pa.array(records, pa.string()),
        ],
        schema=SCHEMA,
    )


class Rejects:
    """A chunk's rejects while it is processed: single tuples (rule failures, repeated ids,
    encoding: Python touches each anyway) and whole batches (rows with a wrong field count,
    possibly every row of the chunk: added as columns at once, never as one tuple each)."""

    def __init__(self) -> None:
        self._rows: list[Reject] = []
        self._batches: list[pa.RecordBatch] = []

    def append(self, reject: Reject) -> None:
        self._rows.append(reject)

    def extend(self, rejects: Iterable[Reject]) -> None:
        self._rows.extend(rejects)

    def add_batch(self, batch: pa.RecordBatch) -> None:
        """Rejects already in columns (:func:`whole_records`)."""
        if batch.num_rows:
            self._batches.append(batch)

    def __len__(self) -> int:
        return len(self._rows) + int(sum(b.num_rows for b in self._batches))

    def to_table(self) -> pa.Table:
        """Every reject in line order (the single ones consumed as in :func:`to_table`)."""
        table = to_table(self._rows)
        if not self._batches:
            return table
        batches, self._batches = self._batches, []
        if table.num_rows:
            batches = [*table.to_batches(), *batches]
        out = pa.Table.from_batches(batches, schema=SCHEMA)
        lines = out.column("line").to_numpy()
        if not bool(np.all(lines[1:] > lines[:-1])):
            out = out.take(pc.sort_indices(out.column("line")))
        return out


def whole_records(lines: Any, reasons: list[str], records: list[str], rule: str) -> pa.RecordBatch:
    """Whole-record rejects (column ``*``, value = the record) as one batch of columns."""
    n = len(records)
    return _batch(lines, [RECORD_COLUMN] * n, [rule] * n, pa.nulls(n, pa.string()), reasons, records)


def values(table: pa.Table) -> pa.ChunkedArray:
    """The ``value`` column with each whole-record reject's record filled back in."""
    whole = pc.and_(pc.equal(table.column("column"), RECORD_COLUMN), pc.is_null(table.column("value")))
    return pc.if_else(whole, table.column("record"), table.column("value"))


def entries(table: pa.Table) -> list[tuple[int, str, str, str | None, str]]:
    """``(line, column, rule, value, reason)`` per reject (tests and small reports)."""
    return list(
        zip(
            table.column("line").to_pylist(),
            table.column("column").to_pylist(),
            table.column("rule").to_pylist(),
            values(table).to_pylist(),
            table.column("reason").to_pylist(),
        )
    )


def counts_by_column(table: pa.Table) -> dict[str, int]:
    """Rejects per column name (``*`` for whole records), for the chunk's metrics."""
    if table.num_rows == 0:
        return {}
    counts = pc.value_counts(table.column("column"))
    return {
        str(k): int(n) for k, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())
    }
