"""Chunk processing: parse a CSV chunk, validate every row, write typed Parquet and rejects.

Pipeline for one chunk (all vectorised; Python touches only rejected rows):

1. **Record scan** (numpy): positions of ``"`` and ``\\n``; a ``\\n`` preceded by an even number
   of quotes ends a record (RFC 4180 quote parity). This gives every record's byte range and
   its *physical* line number even when quoted fields hold newlines, and detects an
   unterminated quote (odd number of quotes) before parsing.
2. **Parse** with ``pyarrow.csv``, every column as ``string``; rows with the wrong number of
   fields go to ``invalid_row_handler`` and become rejects (their record is located in the
   scan, so the line number is exact).
3. **Validate** each column with ``pyarrow.compute``: ``is_in`` for enums (ISO 4217, types),
   anchored RE2 patterns, a shape regex + cast for decimals (the regex rejects what a cast
   would silently accept or round: ``1e5``, ``1.234``), strptime + round trip for dates (a
   plain strptime normalises ``2024-02-30`` to March 1st), shape regex + cast for timestamps.
   Each rejected row reports its FIRST failing column in schema order.
4. **Write** the valid rows as snappy Parquet (deterministic bytes) and the rejects as CSV
   ``line,column,reason,record``.

Conservation (``rows_in == rows_valid + rows_rejected``) is asserted before returning.
See docs/validation.md. Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import csv
import io
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from etl.core import duplicates
from etl.core.counts import check_conservation
from etl.core.schema import Field, Schema
from etl.errors import ConservationViolation, InvalidEncoding, MalformedCsv, SchemaMismatch

# pyarrow.compute's functions are generated at import time; its stubs do not list them.
pc: Any = _pc

BOM = b"\xef\xbb\xbf"
REJECT_COLUMNS = ("line", "column", "reason", "record")
# Stable rule codes of a reject (the ``rule`` column of transaction_rejects, docs/validation.md).
RULES = ("fields", "encoding", "required", "pattern", "enum", "length", "type", "range", "duplicate")
# The "column" of a reject that concerns the whole record (wrong field count, bad UTF-8).
RECORD_COLUMN = "*"
# More invalid UTF-8 sequences than this in one chunk: it is not text, fail the chunk.
MAX_ENCODING_ERRORS = 10_000
# Parquet writer settings: snappy because the AWS SDK for pandas layer's pyarrow has no zstd;
# statistics on (readers prune on dates/amounts); no wall-clock anywhere, so bytes are stable.
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "snappy",
    "version": "2.6",
}
_QUOTE, _LF, _CR = 34, 10, 13


@dataclass
class ChunkResult:
    """What one chunk produced. ``parquet``/``rejects_csv`` are the bytes to upload."""

    rows_in: int
    rows_valid: int
    rows_rejected: int
    parquet: bytes
    rejects_csv: bytes
    valid_table: pa.Table
    # Rejected rows by (source) column name, "*" for whole-record problems: for metrics.
    rejects_by_column: dict[str, int] = field(default_factory=dict)
    # (line, column, reason, record) of every reject, in line order (tests, small reports).
    rejects: list[tuple[int, str, str, str]] = field(default_factory=list)
    # Physical line number of each row of valid_table (the dataset's ``line`` column).
    valid_lines: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # (line, column, rule, value, reason) of every reject, in line order: the rows of the
    # transaction_rejects table (SPEC DATA5). ``rule`` is a stable code (see RULES).
    reject_entries: list[tuple[int, str, str, str | None, str]] = field(default_factory=list)


@dataclass
class _Records:
    """Byte ranges and line numbers of the data records of a chunk (header excluded)."""

    starts: np.ndarray  # offsets into the chunk bytes
    ends: np.ndarray  # exclusive, before the line terminator (\r\n or \n)
    lines: np.ndarray  # 1-based physical line number of each record's first line
    header_end: int  # offset just past the header's terminator


def process_chunk(data: bytes, schema: Schema, first_line: int) -> ChunkResult:
    """Validate every row of ``data`` (the header line + records) and build the outputs.

    ``first_line`` is the 1-based physical line number of the first record after the header.
    Raises :class:`MalformedCsv` (unterminated quote, stray quotes, bare CR line ends),
    :class:`SchemaMismatch` (the header is not the schema's), :class:`InvalidEncoding` (the
    chunk is not text at all), :class:`ConservationViolation` (a bug: never publish that).
    Rows with invalid UTF-8, a wrong number of fields or a value breaking a rule are rejects.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    base = len(BOM) if data.startswith(BOM) else 0
    recs = _scan_records(data, base, first_line)
    _check_header(data[base : recs.header_end], schema)
    n_records = len(recs.starts)

    rejects: list[tuple[int, str, str, str, str, str | None]] = []
    text = data
    bad_utf8_rows = np.zeros(0, dtype=np.int64)
    if n_records == 0:
        return _finish(data, schema, first_line, 0, _empty_table(schema), [], np.zeros(0, dtype=np.int64))
    try:
        table, ragged = _parse(text, base, schema, _block_size(recs))
    except pa.ArrowInvalid as exc:
        # pyarrow reports invalid UTF-8 as a conversion error, or, inside a row with a wrong
        # field count, as a parse error of that row (its handler cannot decode the text).
        if not _has_invalid_utf8(data, base):
            raise MalformedCsv(f"CSV parse error near line {first_line}: {exc}") from None
        # Slow path, only for chunks holding invalid UTF-8: blank the bad bytes to '?' (same
        # length, never a delimiter/quote/newline, so the record structure is unchanged),
        # parse that, and reject the affected records.
        text, bad_utf8_rows, positions = _mask_invalid_utf8(data, base, recs)
        table, ragged = _parse(text, base, schema, _block_size(recs))
        for rec in np.unique(bad_utf8_rows):
            off = int(positions[bad_utf8_rows == rec][0] - recs.starts[rec])
            byte = data[int(positions[bad_utf8_rows == rec][0])]
            record = _record_text(data, recs, int(rec))
            rejects.append(
                (
                    int(recs.lines[rec]),
                    RECORD_COLUMN,
                    f"invalid UTF-8 (byte 0x{byte:02x} at offset {off} of the record)",
                    record,
                    "encoding",
                    record,
                )
            )
        bad_utf8_rows = np.unique(bad_utf8_rows)

    # Map the rows pyarrow skipped (wrong field count) back to their records.
    try:
        ragged_idx = _locate_rows(text, recs, [t for t, _ in ragged])
    except MalformedCsv:
        _check_bare_cr(text, base, first_line)  # the usual cause; a clearer message
        raise
    for (_, n_fields), rec in zip(ragged, ragged_idx):
        if bad_utf8_rows.size and np.any(bad_utf8_rows == rec):
            continue  # already rejected for its encoding; one reject per row
        record = _record_text(data, recs, int(rec))
        rejects.append(
            (
                int(recs.lines[rec]),
                RECORD_COLUMN,
                f"expected {len(schema.source_columns)} fields, found {n_fields}",
                record,
                "fields",
                record,
            )
        )
    parsed_mask = np.ones(n_records, dtype=bool)
    if ragged_idx.size:
        parsed_mask[ragged_idx] = False
    if parsed_mask.sum() != table.num_rows:
        # Explain the usual cause first: pyarrow ends a line at a bare CR, the scan does not.
        _check_bare_cr(text, base, first_line)
        raise MalformedCsv(
            f"CSV structure differs from RFC 4180 quoting near line {first_line}: {n_records} records "
            f"by quote parity, {table.num_rows} parsed + {ragged_idx.size} with a wrong field count "
            "(a quote inside an unquoted field?)"
        )
    row_records = np.flatnonzero(parsed_mask)  # table row i is record row_records[i]

    # Drop rows whose UTF-8 was repaired: they are rejected already.
    keep = np.ones(table.num_rows, dtype=bool)
    if bad_utf8_rows.size:
        keep &= ~np.isin(row_records, bad_utf8_rows)

    # Return the parser's block buffers to the OS before validation allocates (see below).
    pa.default_memory_pool().release_unused()
    typed, ok_masks = _validate(table, schema)
    valid = keep.copy()
    for ok in ok_masks:
        valid &= ok
    failing = np.flatnonzero(keep & ~valid)
    if failing.size:
        for i in failing:
            for f, ok in zip(schema.fields, ok_masks):
                if not ok[i]:
                    value = table.column(f.source_name)[int(i)].as_py()
                    rec = int(row_records[i])
                    rejects.append(
                        (
                            int(recs.lines[rec]),
                            f.source_name,
                            _reason(f, value),
                            _record_text(data, recs, rec),
                            rule_of(f, value),
                            value,
                        )
                    )
                    break
    del ok_masks
    # DATA4(c): a transaction id already seen on an earlier line of this chunk (valid rows only).
    rejects.extend(_reject_duplicates(typed, valid, recs.lines[row_records], data, recs, row_records))
    # Filter column by column, letting go of each unfiltered column (and its source strings)
    # as soon as its filtered copy exists: the peak holds one column twice, not the table.
    keep_rows = None if valid.all() else pa.array(valid)
    out_cols = []
    for f in schema.fields:
        col = typed.pop(f.name)
        table = table.drop_columns([f.source_name])
        out_cols.append(col if keep_rows is None else pc.filter(col, keep_rows))
        del col
    del table
    out = pa.Table.from_arrays(out_cols, schema=_arrow_schema(schema))
    del out_cols
    valid_lines = np.asarray(recs.lines[row_records[valid]], dtype=np.int64)
    # mimalloc (pyarrow's default pool) keeps freed pages for a while; hand them back before
    # the Parquet writer allocates, so the parse/validate garbage does not add to the peak.
    pa.default_memory_pool().release_unused()
    return _finish(data, schema, first_line, n_records, out, rejects, valid_lines)


def _reject_duplicates(
    typed: dict[str, Any],
    valid: np.ndarray,
    row_lines: np.ndarray,
    data: bytes,
    recs: _Records,
    row_records: np.ndarray,
) -> list[tuple[int, str, str, str, str, str | None]]:
    """Reject later occurrences of a transaction id among the valid rows (clears them in
    ``valid``); one vectorised pass, Python only per rejected row."""
    ids = typed.get(duplicates.ID_COLUMN)
    if ids is None or not valid.any():
        return []
    rows = np.flatnonzero(valid)
    later, first_lines = duplicates.find_duplicates(pc.take(ids, pa.array(rows)), row_lines[rows])
    if later.size == 0:
        return []
    dup_rows = rows[later]
    valid[dup_rows] = False
    values = pc.take(ids, pa.array(dup_rows)).to_pylist()
    out: list[tuple[int, str, str, str, str, str | None]] = []
    for i, value, first in zip(dup_rows.tolist(), values, first_lines.tolist()):
        rec = int(row_records[i])
        out.append(
            (
                int(recs.lines[rec]),
                duplicates.ID_COLUMN,
                duplicates.duplicate_reason(str(value), int(first)),
                _record_text(data, recs, rec),
                duplicates.DUPLICATE_RULE,
                str(value),
            )
        )
    return out


def _empty_table(schema: Schema) -> pa.Table:
    s = _arrow_schema(schema)
    return pa.table({f.name: pa.array([], f.type) for f in s}, schema=s)


def _has_invalid_utf8(data: bytes, base: int) -> bool:
    try:
        data[base:].decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _finish(
    data: bytes,
    schema: Schema,
    first_line: int,
    n_records: int,
    out: pa.Table,
    rejects: list[tuple[int, str, str, str, str, str | None]],
    valid_lines: np.ndarray,
) -> ChunkResult:
    """Conservation check, then the output bytes."""
    rejects.sort(key=lambda r: r[0])
    rows_valid = out.num_rows
    check_conservation(f"chunk at line {first_line}", n_records, rows_valid, len(rejects))
    if len(valid_lines) != rows_valid:
        raise ConservationViolation(
            f"chunk at line {first_line}: {len(valid_lines)} line numbers for {rows_valid} rows"
        )
    by_col: dict[str, int] = {}
    for r in rejects:
        by_col[r[1]] = by_col.get(r[1], 0) + 1
    plain = [(r[0], r[1], r[2], r[3]) for r in rejects]
    return ChunkResult(
        rows_in=n_records,
        rows_valid=rows_valid,
        rows_rejected=len(rejects),
        parquet=table_to_parquet(out),
        rejects_csv=rejects_to_csv(plain),
        valid_table=out,
        rejects_by_column=by_col,
        rejects=plain,
        valid_lines=valid_lines,
        reject_entries=[(r[0], r[1], r[4], r[5], r[2]) for r in rejects],
    )


# ---------------------------------------------------------------------------------------------
# Record scan


def _scan_records(data: bytes, base: int, first_line: int) -> _Records:
    """Record byte ranges and physical line numbers by RFC 4180 quote parity (numpy, no loop)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    quotes = _positions(buf, _QUOTE)
    newlines = _positions(buf, _LF)
    if quotes.size % 2:
        # The last quote opens a field that never closes: report the line it starts on
        # (the header is one line; records start at first_line).
        k = int(np.searchsorted(newlines, quotes[-1]))
        raise MalformedCsv(f"unterminated quoted field starting on line {first_line + k - 1}")
    # A \n is a record terminator when an even number of quotes precede it.
    term_idx = np.flatnonzero((np.searchsorted(quotes, newlines) & 1) == 0)
    terms = newlines[term_idx]
    n = len(data)
    if terms.size == 0:
        # Header without a terminator (or an empty chunk): no records.
        empty = np.zeros(0, dtype=np.int64)
        return _Records(empty, empty, empty, n)
    header_end = int(terms[0]) + 1
    starts = terms + 1  # a record starts after each terminator ...
    ends = np.empty_like(starts)
    ends[:-1] = terms[1:]
    ends[-1] = n
    # ... and record k's line = first_line + newlines between the header's end and its start.
    lines = first_line + (term_idx - term_idx[0])
    # Strip the \r of CRLF terminators (and of a final unterminated record).
    if ends.size:
        cr = np.zeros(ends.size, dtype=bool)
        nz = ends > starts
        cr[nz] = buf[ends[nz] - 1] == _CR
        ends = ends - cr
    # Drop empty records (blank lines, the nothing after the final newline): pyarrow skips
    # blank lines too, and they carry no data.
    nonempty = ends > starts
    return _Records(starts[nonempty], ends[nonempty], lines[nonempty], header_end)


_SCAN_BLOCK = 4 << 20


def _positions(buf: np.ndarray, byte: int) -> np.ndarray:
    """Offsets of ``byte`` in ``buf``, scanned in blocks so the temporary mask stays small."""
    parts = []
    for lo in range(0, len(buf), _SCAN_BLOCK):
        hits = np.flatnonzero(buf[lo : lo + _SCAN_BLOCK] == byte)
        parts.append(hits + lo if lo else hits)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _check_bare_cr(data: bytes, base: int, first_line: int) -> None:
    """A CR not followed by LF outside quotes ends a line for pyarrow but not for the scan."""
    n_cr = data.count(b"\r")
    if n_cr == 0 or n_cr == data.count(b"\r\n"):
        return
    buf = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(buf == _QUOTE)
    newlines = np.flatnonzero(buf == _LF)
    crs = np.flatnonzero(buf == _CR)
    crs = crs[crs < len(data) - 1]  # a final CR ends the last record: fine for both
    bare = crs[buf[crs + 1] != _LF]
    outside = bare[(np.searchsorted(quotes, bare) & 1) == 0]
    if outside.size:
        line = int(np.searchsorted(newlines, outside[0])) + 1
        raise MalformedCsv(
            f"bare CR line terminator outside quotes on line {line} of the chunk "
            f"(file line ~{first_line + line - 2}); only LF or CRLF are supported"
        )


def _record_text(data: bytes, recs: _Records, i: int) -> str:
    return data[int(recs.starts[i]) : int(recs.ends[i])].decode("utf-8", errors="backslashreplace")


def _locate_rows(text: bytes, recs: _Records, row_texts: list[str]) -> np.ndarray:
    """Record index of each row pyarrow handed to the invalid-row handler, by its raw text.

    Rows arrive in file order, so a cursor makes this one forward pass; a candidate must start
    exactly at a record start and span the whole record (so substrings of other rows never match).
    """
    out = np.empty(len(row_texts), dtype=np.int64)
    cursor = 0
    used = set()
    for j, t in enumerate(row_texts):
        needle = t.encode("utf-8")
        pos = text.find(needle, cursor)
        wrapped = False
        while True:
            if pos < 0:
                if wrapped:
                    raise MalformedCsv(f"cannot locate a row with a wrong field count: {t[:80]!r}")
                wrapped = True
                pos = text.find(needle, 0)
                continue
            k = int(np.searchsorted(recs.starts, pos))
            if (
                k < len(recs.starts)
                and recs.starts[k] == pos
                and recs.ends[k] - pos == len(needle)
                and k not in used
            ):
                break
            pos = text.find(needle, pos + 1)
        used.add(k)
        out[j] = k
        cursor = pos + len(needle)
    return out


def _mask_invalid_utf8(data: bytes, base: int, recs: _Records) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Replace invalid UTF-8 bytes by '?'; return the text, the record of each, their offsets."""
    fixed = bytearray(data)
    positions: list[int] = []
    pos = base
    n = len(data)
    while pos < n:
        try:
            data[pos:].decode("utf-8")
            break
        except UnicodeDecodeError as exc:
            start, end = pos + exc.start, pos + exc.end
            for p in range(start, end):
                fixed[p] = 0x3F
                positions.append(p)
            if len(positions) > MAX_ENCODING_ERRORS:
                raise InvalidEncoding(
                    f"more than {MAX_ENCODING_ERRORS} invalid UTF-8 sequences in the chunk: not UTF-8 text"
                ) from None
            pos = end
    pos_arr = np.asarray(positions, dtype=np.int64)
    if pos_arr.size and pos_arr[0] < recs.header_end:
        raise InvalidEncoding("the header line is not valid UTF-8")
    rec_of = np.searchsorted(recs.starts, pos_arr, side="right") - 1
    return bytes(fixed), rec_of, pos_arr


# ---------------------------------------------------------------------------------------------
# Header and parse


def _check_header(header: bytes, schema: Schema) -> None:
    try:
        line = header.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise InvalidEncoding("the header line is not valid UTF-8") from None
    got = next(csv.reader([line], delimiter=schema.delimiter, quotechar='"'), [])
    want = schema.source_columns
    if got == want:
        return
    missing = [c for c in want if c not in got]
    extra = [c for c in got if c not in want]
    parts = []
    if missing:
        parts.append("missing " + ", ".join(missing))
    if extra:
        parts.append("unexpected " + ", ".join(extra))
    if not parts:
        parts.append("columns out of order: expected " + ",".join(want))
    raise SchemaMismatch(f"header does not match schema {schema.schema_id}: " + "; ".join(parts))


def _block_size(recs: _Records) -> int:
    """pyarrow's reader needs every record inside one block: room for the longest, twice."""
    longest = int((recs.ends - recs.starts).max()) if len(recs.starts) else 0
    return max(8 << 20, 2 * longest + (1 << 20), recs.header_end + (1 << 20))


def _parse(text: bytes, base: int, schema: Schema, block_size: int) -> tuple[pa.Table, list[tuple[str, int]]]:
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


# ---------------------------------------------------------------------------------------------
# Validation


def arrow_type(f: Field) -> pa.DataType:
    """The Parquet column type of a schema field (also used by the pandas baseline)."""
    if f.type == "number":
        assert f.precision is not None and f.scale is not None
        return pa.decimal128(f.precision, f.scale)
    if f.type == "integer":
        return pa.int64()
    if f.type == "date":
        return pa.date32()
    if f.type == "datetime":
        return pa.timestamp("us", tz="UTC")
    return pa.string()


def _arrow_schema(schema: Schema) -> pa.Schema:
    meta = {
        b"etl.schema_id": schema.schema_id.encode(),
        b"etl.schema_version": schema.version.encode(),
        b"etl.dataset": schema.dataset.encode(),
    }
    return pa.schema(
        [pa.field(f.name, arrow_type(f), nullable=not f.required) for f in schema.fields], metadata=meta
    )


def _null_if_empty(col: pa.ChunkedArray, present: pa.ChunkedArray) -> pa.ChunkedArray:
    """``col`` with empty strings turned into nulls, zero-copy.

    An arrow boolean array is a bitmap, exactly the layout of a validity bitmap, so the
    ``present`` mask becomes the validity buffer of a new array over the same offsets and
    bytes (``if_else`` would copy every string).
    """
    chunks = []
    masks = present.chunks if isinstance(present, pa.ChunkedArray) else [present]
    if [len(m) for m in masks] != [len(c) for c in col.chunks]:
        return pc.if_else(present, col, pa.scalar(None, col.type))
    for c, m in zip(col.chunks, masks):
        if c.offset or m.offset or c.null_count or m.null_count:
            chunks.append(pc.if_else(m, c, pa.scalar(None, c.type)))
            continue
        bufs = c.buffers()
        chunks.append(pa.Array.from_buffers(c.type, len(c), [m.buffers()[1], bufs[1], bufs[2]]))
    return pa.chunked_array(chunks, col.type)


def _np(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A null-free boolean arrow array as a numpy bool array."""
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks() if mask.num_chunks != 1 else mask.chunk(0)
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)


def _decimal_regex(f: Field) -> str:
    assert f.precision is not None and f.scale is not None
    whole = f.precision - f.scale
    if f.scale == 0:
        return f"^-?[0-9]{{1,{whole}}}$"
    return f"^-?[0-9]{{1,{max(whole, 1)}}}(\\.[0-9]{{1,{f.scale}}})?$"


_INT_RE = "^-?[0-9]{1,18}$"
# A real Gregorian calendar date as one RE2 (a DFA: one pass, no backtracking): days 29-31
# only in months that have them, Feb 29 only in leap years (divisible by 4, centuries by 400).
# A cast alone would fail the whole column on the first impossible date, and strptime
# silently normalises 2024-02-30 to 2024-03-01.
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)"
DATE_RE = (
    "(?:[0-9]{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
    "|(?:0[13578]|1[02])-31)|" + _LEAP_YEAR + "-02-29)"
)
# ISO 8601 timestamp with a required offset (Z, +hh:mm or +hhmm), up to microseconds.
TIMESTAMP_RE = (
    DATE_RE
    + "[T ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,6})?"
    + "(?:Z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])"
)


def _cast_rows(values: pa.ChunkedArray, typ: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Cast ``values`` (nulls = skip); rows that still fail become null and are reported.

    The shape regexes make failures here rare (impossible dates inside timestamps), so the
    whole-array cast is tried first and only a failing array is bisected.
    """
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    try:
        return pc.cast(arr, typ), np.zeros(len(arr), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    failed = np.zeros(len(arr), dtype=bool)
    pieces: list[pa.Array] = []

    def go(lo: int, hi: int) -> None:
        part = arr.slice(lo, hi - lo)
        try:
            pieces.append(pc.cast(part, typ))
            return
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        if hi - lo == 1:
            failed[lo] = True
            pieces.append(pa.nulls(1, typ))
            return
        mid = (lo + hi) // 2
        go(lo, mid)
        go(mid, hi)

    go(0, len(arr))
    return pa.concat_arrays(pieces), failed


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
# Below this many rows a chunk is validated on the calling thread (threads cost more than
# they save); above it the columns are checked in parallel: pyarrow.compute releases the GIL.
PARALLEL_MIN_ROWS = 20_000


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(
                max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="etl-validate"
            )
        return _POOL


def _validate(table: pa.Table, schema: Schema) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Typed column per target field and, per field, a numpy ``ok`` mask (True = passes)."""
    n = table.num_rows
    cols = [table.column(f.source_name) for f in schema.fields]
    if n >= PARALLEL_MIN_ROWS and (os.cpu_count() or 1) > 1:
        results = list(_pool().map(_check_field, cols, schema.fields, [n] * len(cols)))
    else:
        results = [_check_field(c, f, n) for c, f in zip(cols, schema.fields)]
    typed = {f.name: values for f, (values, _) in zip(schema.fields, results)}
    return typed, [ok for _, ok in results]


def _check_field(col: pa.ChunkedArray, f: Field, n: int) -> tuple[Any, np.ndarray]:
    """(typed values, ok mask) of one column. Values of failing rows are unspecified: those
    rows are filtered out."""
    typ = arrow_type(f)
    if n == 0:
        return pa.array([], typ), np.zeros(0, dtype=bool)
    empty = pc.equal(pc.binary_length(col), 0)
    present = pc.invert(empty)
    checks: list[Any] = []  # arrow boolean arrays: True = ok for non-empty values
    if f.type == "string":
        if f.pattern is not None:
            checks.append(pc.match_substring_regex(col, f.anchored_pattern))
        if f.enum is not None:
            checks.append(pc.is_in(col, value_set=pa.array(f.enum, pa.string())))
        if f.min_length is not None or f.max_length is not None:
            length = pc.utf8_length(col)
            if f.min_length is not None:
                checks.append(pc.greater_equal(length, f.min_length))
            if f.max_length is not None:
                checks.append(pc.less_equal(length, f.max_length))
        values = col if f.required else _null_if_empty(col, present)
    else:
        if f.type == "number":
            regex = _decimal_regex(f)
        elif f.type == "integer":
            regex = _INT_RE
        elif f.type == "date":
            regex = "^" + DATE_RE + "$"
        else:  # datetime
            regex = "^" + TIMESTAMP_RE + "$"
        # The shape regex leaves only values the cast accepts exactly (no rounding, no
        # exponent, no impossible dates); a value it still refuses (e.g. 5.12 in
        # decimal(2,2)) is caught by _cast_rows and rejected, never fails the chunk.
        shape = pc.match_substring_regex(col, regex)
        checks.append(shape)
        values, failed = _cast_rows(pc.if_else(shape, col, pa.scalar(None, pa.string())), typ)
        if failed.any():
            checks.append(pa.array(~failed))
    if checks:
        ok_present = checks[0]
        for c in checks[1:]:
            ok_present = pc.and_(ok_present, c)
        # Empty: fine unless required. Non-empty: every check must pass.
        return values, _np(pc.if_else(empty, not f.required, ok_present))
    if f.required:
        return values, _np(present)
    return values, np.ones(n, dtype=bool)


def rule_of(f: Field, value: str) -> str:
    """The stable rule code (RULES) of the first rule ``value`` breaks; mirrors _reason."""
    if value == "":
        return "required"
    if f.type == "number":
        m = re.fullmatch(r"-?([0-9]+)(?:\.([0-9]+))?", value)
        return "range" if m else "type"
    if f.type in ("integer", "date", "datetime"):
        return "type"
    if f.pattern is not None and not re.fullmatch(f.pattern, value):
        return "pattern"
    if f.enum is not None and value not in f.enum:
        return "enum"
    if (f.min_length is not None and len(value) < f.min_length) or (
        f.max_length is not None and len(value) > f.max_length
    ):
        return "length"
    return "type"


def _reason(f: Field, value: str) -> str:
    """A specific message for the first rule ``value`` breaks (only called for rejects)."""
    v = repr(value)
    if value == "":
        return f"{f.source_name}: required value is missing"
    if f.type == "number":
        assert f.precision is not None and f.scale is not None
        m = re.fullmatch(r"-?([0-9]+)(?:\.([0-9]+))?", value)
        if not m:
            return (
                f"{f.source_name}: {v} is not a decimal number "
                "(digits, optional '-' and '.'; no exponent, spaces or grouping)"
            )
        if m.group(2) is not None and len(m.group(2)) > f.scale:
            return f"{f.source_name}: {v} has more than {f.scale} decimals"
        return (
            f"{f.source_name}: {v} has more than {f.precision - f.scale} digits before the decimal point "
            f"(decimal({f.precision},{f.scale}))"
        )
    if f.type == "integer":
        return f"{f.source_name}: {v} is not an integer of at most 18 digits"
    if f.type == "date":
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            return f"{f.source_name}: {v} is not a real calendar date"
        return f"{f.source_name}: {v} is not a date in YYYY-MM-DD form"
    if f.type == "datetime":
        return (
            f"{f.source_name}: {v} is not an ISO 8601 timestamp with a UTC offset or Z "
            "(e.g. 2024-03-01T12:34:56Z)"
        )
    # string
    if f.pattern is not None and not re.fullmatch(f.pattern, value):
        return f"{f.source_name}: {v} does not match the pattern {f.pattern}"
    if f.enum is not None and value not in f.enum:
        if len(f.enum) <= 10:
            return f"{f.source_name}: {v} is not one of {', '.join(f.enum)}"
        examples = ", ".join(f.enum[:3])
        return f"{f.source_name}: {v} is not an allowed value ({len(f.enum)} codes, e.g. {examples})"
    length = len(value)
    if f.min_length is not None and length < f.min_length:
        return f"{f.source_name}: {v} is shorter than {f.min_length} characters"
    if f.max_length is not None and length > f.max_length:
        return f"{f.source_name}: {v} is {length} characters long, more than {f.max_length}"
    return f"{f.source_name}: {v} is not valid"


# ---------------------------------------------------------------------------------------------
# Outputs


def table_to_parquet(table: pa.Table) -> bytes:
    """Snappy Parquet bytes; same table -> same bytes (no timestamps in the metadata)."""
    sink = pa.BufferOutputStream()
    # Dictionary encoding pays off on repeated values (accounts, currencies, merchants), not
    # on unique ids; min/max statistics are kept for the columns readers filter on (dates,
    # timestamps, amounts, enums), not for free text where they only cost time.
    dict_cols, stat_cols = [], []
    for fld in table.schema:
        unique_ish = fld.name.endswith("_id") and fld.name != "account_id"
        if pa.types.is_string(fld.type) and not unique_ish:
            dict_cols.append(fld.name)
        if not pa.types.is_string(fld.type) or fld.name in ("currency", "transaction_type"):
            stat_cols.append(fld.name)
    pq.write_table(table, sink, use_dictionary=dict_cols, write_statistics=stat_cols, **PARQUET_OPTIONS)
    return cast(bytes, sink.getvalue().to_pybytes())


# A cell a spreadsheet would evaluate as a formula (CSV/formula injection): it starts with one
# of these. The rejects CSV goes back to partners, who open it in a spreadsheet.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: str) -> str:
    """Prefix ``'`` to a cell starting with = + - @ TAB or CR, so a spreadsheet shows it as
    text instead of executing it (OWASP's CSV-injection rule); anything else is unchanged."""
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def rejects_to_csv(rejects: list[tuple[int, str, str, str]]) -> bytes:
    """RFC 4180 CSV with header ``line,column,reason,record`` (records keep their newlines).

    Text cells are neutralised (:func:`neutralise_cell`) and always quoted (with ``\n`` as the
    line terminator, minimal quoting would leave a bare CR unquoted, which readers take for a
    line end); the line number is an unquoted integer."""
    out = io.StringIO()
    out.write(",".join(REJECT_COLUMNS) + "\n")
    w = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    w.writerows(
        (line, neutralise_cell(col), neutralise_cell(reason), neutralise_cell(record))
        for line, col, reason, record in rejects
    )
    return out.getvalue().encode("utf-8")
