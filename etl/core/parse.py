"""Parse a chunk with ``pyarrow.csv`` into all-string columns (RUN4).

Rows with the wrong number of fields go to ``invalid_row_handler`` and are collected (their
record is located in the scan by :func:`etl.core.records.locate_rows`, so the line number of
the reject is exact).

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from etl.core.schema import Schema


def parse_strings(
    text: bytes, base: int, schema: Schema, block_size: int
) -> tuple[pa.Table, list[tuple[str, int]]]:
    """All columns as strings; rows with a wrong field count are collected, not fatal."""
    ragged: list[tuple[str, int]] = []

    def on_invalid(row: Any) -> str:
        ragged.append((row.text, row.actual_columns))
        return "skip"

    buf = pa.py_buffer(text)
    if base:
        buf = buf.slice(base)
    read = pacsv.ReadOptions(
        # Single-threaded on purpose: a Python invalid_row_handler called from pyarrow's
        # thread pool intermittently aborts the interpreter at exit (pyarrow 24), and the
        # threaded reader is barely faster on 2 vCPUs.
        use_threads=False,
        block_size=block_size,
    )
    parse = pacsv.ParseOptions(
        delimiter=schema.delimiter,
        quote_char='"',
        double_quote=True,
        escape_char=False,
        newlines_in_values=True,
        ignore_empty_lines=True,
        invalid_row_handler=on_invalid,
    )
    convert = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in schema.source_columns},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
        check_utf8=True,
    )
    table = pacsv.read_csv(
        pa.BufferReader(buf), read_options=read, parse_options=parse, convert_options=convert
    )
    return table, ragged
