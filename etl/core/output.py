"""Chunk outputs (RUN4, DATA5): typed Parquet bytes and the rejects CSV.

Parquet: snappy (the AWS SDK for pandas layer's pyarrow has no zstd), deterministic bytes (no
clock in the metadata), dictionary encoding and statistics chosen per column from the schema
(:func:`parquet_column_options`). Rejects: RFC 4180 CSV ``line,column,reason,record`` with
spreadsheet-safe cells.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any, cast

import pyarrow as pa
import pyarrow.parquet as pq

from etl.core.schema import Schema

# ``rule`` (the stable code of etl.core.rules.RULES, as in the rejects table) was added last so
# readers of the first four columns by position are unaffected (SPEC UX8).
REJECT_COLUMNS = ("line", "column", "reason", "record", "rule")
_CSV_BATCH = 10_000
# Parquet writer settings: snappy because the AWS SDK for pandas layer's pyarrow has no zstd;
# statistics on (readers prune on dates/amounts); no wall-clock anywhere, so bytes are stable.
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "snappy",
    "version": "2.6",
}


def parquet_column_options(schema: Schema) -> tuple[list[str], list[str]]:
    """(columns to dictionary-encode, columns to keep min/max statistics for), from the schema.

    Dictionary encoding pays off on repeated values (accounts, currencies, merchants), not on
    the unique identifiers of the schema's ``primaryKey``; statistics are kept for the columns
    readers filter on (every typed column: dates, timestamps, amounts; and enum strings), not
    for free text where they only cost time."""
    unique = set(schema.primary_key)
    dictionary = [f.name for f in schema.fields if f.type == "string" and f.name not in unique]
    stats = [f.name for f in schema.fields if f.type != "string" or f.enum is not None]
    return dictionary, stats


def parquet_compression(schema: Schema) -> dict[str, str]:
    """Codec per column: none where snappy buys nothing, snappy elsewhere (PERF2).

    Enum columns are dictionary-encoded with a handful of values: their pages are bit-packed
    indices that snappy does not shrink (same size within 1 %), so they are written as they are.
    The ``primaryKey`` (random transaction ids) stays snappy although compressing it is ~40 ms
    of a 50 MiB chunk: it saves 10 % of the column, and by the cost model (PERF3,
    docs/benchmarks.md) the storage that saves outweighs the one-off compute within weeks."""
    return {f.name: "none" if f.type == "string" and f.enum is not None else "snappy" for f in schema.fields}


def table_to_parquet(table: pa.Table, schema: Schema) -> bytes:
    """Snappy Parquet bytes of ``table`` (columns of ``schema``); same table -> same bytes (no
    timestamps in the metadata)."""
    sink = pa.BufferOutputStream()
    dictionary, stats = parquet_column_options(schema)
    present = set(table.column_names)
    pq.write_table(
        table,
        sink,
        use_dictionary=[c for c in dictionary if c in present],
        write_statistics=[c for c in stats if c in present],
        **{
            **PARQUET_OPTIONS,
            "compression": {c: v for c, v in parquet_compression(schema).items() if c in present},
        },
    )
    return cast(bytes, sink.getvalue().to_pybytes())


# A cell a spreadsheet would evaluate as a formula (CSV/formula injection): it starts with one
# of these. The rejects CSV goes back to partners, who open it in a spreadsheet.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: str) -> str:
    """Prefix ``'`` to a cell starting with = + - @ TAB or CR, so a spreadsheet shows it as
    text instead of executing it (OWASP's CSV-injection rule); anything else is unchanged."""
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def rejects_to_csv(rejects: Sequence[tuple[Any, ...]]) -> bytes:
    """RFC 4180 CSV with header ``line,column,reason,record,rule`` (records keep their newlines)
    from tuples ``(line, column, reason, record[, rule, ...])`` (no rule: an empty cell).

    Text cells are neutralised (:func:`neutralise_cell`) and always quoted (with ``\n`` as the
    line terminator, minimal quoting would leave a bare CR unquoted, which readers take for a
    line end); the line number is an unquoted integer."""
    out = io.BytesIO(_CSV_HEADER)
    out.seek(0, io.SEEK_END)
    # Encoded in batches into one buffer: the text of one batch at a time, and no list of parts
    # joined at the end (RUN12: a chunk of many short rejected rows must not hold its rejects
    # CSV twice or three times; BytesIO grows in place and getvalue() does not copy).
    for lo in range(0, len(rejects), _CSV_BATCH):
        out.write(
            _csv_rows(
                (r[0], r[1], r[2], r[3], r[4] if len(r) > 4 else "") for r in rejects[lo : lo + _CSV_BATCH]
            )
        )
    return out.getvalue()


def rejects_table_to_csv(table: pa.Table) -> bytes:
    """:func:`rejects_to_csv` of a columnar reject set (``etl.core.rejects``): the same bytes,
    converted to Python a slice at a time (RUN12)."""
    out = io.BytesIO(_CSV_HEADER)
    out.seek(0, io.SEEK_END)
    for lo in range(0, table.num_rows, _CSV_BATCH):
        part = table.slice(lo, _CSV_BATCH)
        out.write(
            _csv_rows(
                zip(
                    part.column("line").to_pylist(),
                    part.column("column").to_pylist(),
                    part.column("reason").to_pylist(),
                    part.column("record").to_pylist(),
                    part.column("rule").to_pylist(),
                )
            )
        )
    return out.getvalue()


_CSV_HEADER = (",".join(REJECT_COLUMNS) + "\n").encode("utf-8")


def _csv_rows(rows: Iterable[tuple[Any, str, str, str, str]]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    w.writerows(
        (line, neutralise_cell(c), neutralise_cell(reason), neutralise_cell(rec), rule)
        for line, c, reason, rec, rule in rows
    )
    return out.getvalue().encode("utf-8")
