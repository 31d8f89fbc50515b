"""Parse a chunk with ``pyarrow.csv`` into all-string columns (RUN4).

Rows with the wrong number of fields go to ``invalid_row_handler`` and are collected (their
record is located in the scan by :func:`etl.core.records.locate_rows`, so the line number of
the reject is exact).

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from etl.core import workers
from etl.core.records import Records
from etl.core.schema import Schema


def parse_strings(
    text: bytes, base: int, schema: Schema, block_size: int, end: int | None = None, header: bool = True
) -> tuple[pa.Table, list[tuple[str, int]]]:
    """All columns as strings; rows with a wrong field count are collected, not fatal.

    Parses ``text[base:end]``; with ``header=False`` the piece starts with a record (a later
    piece of a chunk parsed in parallel, :func:`parse_records`)."""
    ragged: list[tuple[str, int]] = []

    def on_invalid(row: Any) -> str:
        ragged.append((row.text, row.actual_columns))
        return "skip"

    buf = pa.py_buffer(text)
    stop = len(text) if end is None else end
    if base or stop != len(text):
        buf = buf.slice(base, stop - base)
    read = pacsv.ReadOptions(
        column_names=None if header else list(schema.source_columns),
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


# Chunks with at least this many records are parsed in pieces on the worker threads.
PARALLEL_MIN_RECORDS = 50_000


def parse_records(
    text: bytes, base: int, schema: Schema, recs: Records, block_size: int
) -> tuple[pa.Table, list[tuple[str, int]]]:
    """:func:`parse_strings` of the whole chunk, in pieces on the worker threads when it pays.

    The pieces are cut at record starts found by the quote-parity scan, one per CPU; the
    reader releases the GIL, so they parse side by side (the invalid-row handler runs on the
    piece's own Python thread). The pieces' tables are concatenated in order (zero-copy) and
    their ragged rows listed in order, so the result equals one parse of the whole text. Only
    when every quote of the chunk stands where RFC 4180 allows it (:func:`quotes_follow_rfc4180`):
    otherwise the parser and the scan may disagree on where records start, and the whole
    chunk is parsed in one piece so that the disagreement is found as before.
    """
    n = len(recs.starts)
    k = min(workers.cpus(), workers.MAX_WORKERS) if n >= PARALLEL_MIN_RECORDS else 1
    if k < 2 or not quotes_follow_rfc4180(text, base, schema.delimiter, recs.quotes):
        return parse_strings(text, base, schema, block_size)
    cuts = [int(recs.starts[n * i // k]) for i in range(1, k)]
    bounds = list(zip([base, *cuts], [*cuts, len(text)]))
    pending = [
        workers.pool().submit(parse_strings, text, lo, schema, block_size, hi, False) for lo, hi in bounds[1:]
    ]
    try:
        first = parse_strings(text, base, schema, block_size, bounds[0][1], True)
        parts = [first] + [f.result() for f in pending]
    finally:
        for f in pending:  # on an error, let the other pieces finish before the caller retries
            f.exception()
    table = pa.concat_tables([t for t, _ in parts])
    return table, [row for _, rows in parts for row in rows]


def quotes_follow_rfc4180(text: bytes, base: int, delimiter: str, quotes: np.ndarray | None) -> bool:
    """True when every quote opens a field (after a delimiter, a line feed or the start), closes
    one (before a delimiter, CR, LF or the end) or is half of a doubled quote inside one.
    ``quotes``: the positions of every ``"`` (from the scan); vectorised over them (sparse)."""
    if quotes is None:
        return False
    if quotes.size == 0:
        return True
    buf = np.frombuffer(text, dtype=np.uint8)
    n = len(buf)
    opening, closing = quotes[0::2], quotes[1::2]
    seps = np.array([ord(delimiter), 10], dtype=np.uint8)
    before = buf[np.maximum(opening - 1, 0)]
    ok_open = (opening == base) | np.isin(before, seps)
    # An opening quote right after a closing one is the second half of a doubled quote.
    prev_close = np.zeros(opening.size, dtype=np.int64) - 2
    prev_close[1:] = closing[: opening.size - 1]
    ok_open |= opening - 1 == prev_close
    after = buf[np.minimum(closing + 1, n - 1)]
    ok_close = (closing == n - 1) | np.isin(after, np.array([ord(delimiter), 10, 13, 34], dtype=np.uint8))
    # ... and a closing quote followed by a quote must be followed by that opening quote.
    doubled = (after == 34) & (closing < n - 1)
    nxt = np.full(closing.size, -1, dtype=np.int64)
    nxt[: opening.size - 1] = opening[1:]
    ok_close &= ~doubled | (nxt == closing + 1)
    return bool(ok_open.all() and ok_close.all())
