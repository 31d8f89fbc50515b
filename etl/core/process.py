"""Chunk processing: parse a CSV chunk, validate every row, write typed Parquet and rejects.

``process_chunk(data, schema, first_line)`` is the public entry point (handlers, benchmarks).
Pipeline for one chunk (all vectorised; Python touches only rejected rows), one module each:

1. **Record scan** (:mod:`etl.core.records`, numpy): every record's byte range and physical
   line number by RFC 4180 quote parity; an unterminated quote fails before parsing.
2. **Header**: the chunk's first line is checked by :func:`etl.core.header.check_header_line`
   (the one header check, shared with ValidateHeader).
3. **Parse** (:mod:`etl.core.parse`, ``pyarrow.csv``), every column as ``string``; rows with the
   wrong number of fields become rejects (their record is located in the scan, so the line
   number is exact).
4. **Validate** (:mod:`etl.core.rules`, ``pyarrow.compute``): each rejected row reports its
   FIRST failing column in schema order; then repeated transaction ids (DATA4(c)).
5. **Write** (:mod:`etl.core.output`): valid rows as snappy Parquet (deterministic bytes),
   rejects as CSV ``line,column,reason,record``.

Conservation (``rows_in == rows_valid + rows_rejected``) is asserted before returning.
See docs/validation.md. Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import functools
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from etl.core import duplicates, rules, workers
from etl.core import rejects as rejects_mod
from etl.core.counts import check_conservation
from etl.core.header import check_header_line
from etl.core.output import (
    FORMULA_TRIGGERS,
    PARQUET_OPTIONS,
    REJECT_COLUMNS,
    neutralise_cell,
    rejects_table_to_csv,
    rejects_to_csv,
    table_to_parquet,
)
from etl.core.parse import parse_records, parse_strings
from etl.core.records import (
    MAX_ENCODING_ERRORS,
    Records,
    check_bare_cr,
    has_invalid_utf8,
    locate_rows,
    mask_invalid_utf8,
    parse_block_size,
    record_text,
    scan_records,
)
from etl.core.rules import (
    DATE_RE,
    RULES,
    TIMESTAMP_RE,
    arrow_schema,
    arrow_type,
    pc,
    rule_of,
    validate,
)
from etl.core.rules import reason as _reason
from etl.core.schema import Schema
from etl.errors import ConservationViolation, MalformedCsv

__all__ = [
    "BOM",
    "DATE_RE",
    "FORMULA_TRIGGERS",
    "MAX_ENCODING_ERRORS",
    "PARQUET_OPTIONS",
    "RECORD_COLUMN",
    "REJECT_COLUMNS",
    "RULES",
    "TIMESTAMP_RE",
    "ChunkResult",
    "arrow_type",
    "neutralise_cell",
    "process_chunk",
    "rejects_to_csv",
    "rule_of",
    "table_to_parquet",
]

BOM = b"\xef\xbb\xbf"
# The "column" of a reject that concerns the whole record (wrong field count, bad UTF-8).
RECORD_COLUMN = rejects_mod.RECORD_COLUMN
_Reject = rejects_mod.Reject


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
    # Physical line number of each row of valid_table (the dataset's ``line`` column).
    valid_lines: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # Every reject in line order, columnar (etl.core.rejects: line, column, rule, value, reason,
    # record): the rows of the transaction_rejects table (SPEC DATA5) and of the rejects CSV.
    rejects_table: pa.Table = field(default_factory=lambda: rejects_mod.to_table([]))

    @property
    def reject_entries(self) -> list[tuple[int, str, str, str | None, str]]:
        """(line, column, rule, value, reason) of every reject, in line order; ``rule`` is a
        stable code (see RULES). Built on demand (tests, small reports)."""
        return rejects_mod.entries(self.rejects_table)

    @property
    def reject_records(self) -> list[str]:
        """The raw record text of every reject, in line order (the rejects CSV's last column)."""
        return [str(r) for r in self.rejects_table.column("record").to_pylist()]

    @property
    def rejects(self) -> list[tuple[int, str, str, str]]:
        """(line, column, reason, record) of every reject, in line order (tests, small reports);
        built on demand, so a chunk of many rejects does not hold them twice (RUN12)."""
        return [(e[0], e[1], e[4], r) for e, r in zip(self.reject_entries, self.reject_records)]


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
    recs = scan_records(data, base, first_line)
    check_header_line(data[base : recs.header_end], schema)
    if len(recs.starts) == 0:
        return _finish(
            data,
            schema,
            first_line,
            0,
            _empty_table(schema),
            rejects_mod.Rejects(),
            np.zeros(0, dtype=np.int64),
        )

    rejects = rejects_mod.Rejects()
    text, table, ragged, bad_utf8_rows = _parse_chunk(data, base, schema, recs, first_line, rejects)
    row_records = _map_rows(text, base, schema, recs, first_line, table, ragged, bad_utf8_rows, rejects)
    del ragged, text  # the skipped rows' text (one Python string each) is not needed any more
    # Drop rows whose UTF-8 was repaired: they are rejected already.
    keep = np.ones(table.num_rows, dtype=bool)
    if bad_utf8_rows.size:
        keep &= ~np.isin(row_records, bad_utf8_rows)

    # Return the parser's block buffers to the OS before validation allocates (see below).
    pa.default_memory_pool().release_unused()
    # The ids' codes for DATA4(c) on a worker, side by side with the validation (both release
    # the GIL); only valid rows take part, selected afterwards.
    id_codes = _start_id_codes(table, schema)
    typed, ok_masks = validate(table, schema)
    valid = _rule_rejects(data, schema, recs, table, row_records, keep, ok_masks, rejects)
    del ok_masks
    # DATA4(c): a transaction id already seen on an earlier line of this chunk (valid rows only).
    rejects.extend(
        _reject_duplicates(typed, valid, recs.lines[row_records], data, recs, row_records, id_codes)
    )
    # Hand the string table over: while this frame held it, the column-by-column filter below
    # could free nothing (RUN12/PERF2: the unfiltered columns stayed alive until it returned).
    owned = [table]
    del table
    # The validation's temporaries (regex bitmaps, cast inputs, the id dictionary) are freed:
    # give their pages back before the filter allocates the output columns (peak, PERF2).
    pa.default_memory_pool().release_unused()
    out = _valid_table(schema, owned, typed, valid)
    valid_lines = np.asarray(recs.lines[row_records[valid]], dtype=np.int64)
    # mimalloc (pyarrow's default pool) keeps freed pages for a while; hand them back before
    # the Parquet writer allocates, so the parse/validate garbage does not add to the peak.
    pa.default_memory_pool().release_unused()
    return _finish(data, schema, first_line, len(recs.starts), out, rejects, valid_lines)


def _parse_chunk(
    data: bytes, base: int, schema: Schema, recs: Records, first_line: int, rejects: rejects_mod.Rejects
) -> tuple[bytes, pa.Table, list[tuple[str, int]], np.ndarray]:
    """(text parsed, string table, ragged rows, records rejected for invalid UTF-8)."""
    # RUN10: a NUL byte is valid UTF-8 but no text: its row is a reject, like invalid UTF-8
    # (the same outcome wherever it is in the file).
    if data.find(b"\0", base) < 0:
        try:
            table, ragged = parse_records(data, base, schema, recs, parse_block_size(recs))
            return data, table, ragged, np.zeros(0, dtype=np.int64)
        except pa.ArrowInvalid as exc:
            # pyarrow reports invalid UTF-8 as a conversion error, or, inside a row with a wrong
            # field count, as a parse error of that row (its handler cannot decode the text).
            if not has_invalid_utf8(data, base):
                raise MalformedCsv(f"CSV parse error near line {first_line}: {exc}") from None
    # Slow path, only for chunks holding invalid UTF-8 or NUL: blank the bad bytes to '?' (same
    # length, never a delimiter/quote/newline, so the record structure is unchanged), parse
    # that, and reject the affected records.
    text, bad_utf8_rows, positions = mask_invalid_utf8(data, base, recs)
    table, ragged = parse_strings(text, base, schema, parse_block_size(recs))
    for rec in np.unique(bad_utf8_rows):
        first_bad = int(positions[bad_utf8_rows == rec][0])
        record = record_text(data, recs, int(rec))
        offset = first_bad - int(recs.starts[rec])
        if data[first_bad] == 0:
            reason = f"NUL byte at offset {offset} of the record (a control character, not text)"
        else:
            reason = f"invalid UTF-8 (byte 0x{data[first_bad]:02x} at offset {offset} of the record)"
        rejects.append((int(recs.lines[rec]), RECORD_COLUMN, reason, record, "encoding", record))
    return text, table, ragged, np.unique(bad_utf8_rows)


def _map_rows(
    text: bytes,
    base: int,
    schema: Schema,
    recs: Records,
    first_line: int,
    table: pa.Table,
    ragged: list[tuple[str, int]],
    bad_utf8_rows: np.ndarray,
    rejects: rejects_mod.Rejects,
) -> np.ndarray:
    """Reject the rows pyarrow skipped (wrong field count) and return, per table row, the
    index of its record; the parser and the quote-parity scan must agree on every record."""
    try:
        ragged_idx = locate_rows(text, recs, [t for t, _ in ragged])
    except MalformedCsv:
        check_bare_cr(text, base, first_line)  # the usual cause; a clearer message
        raise
    # RUN12: these rows become columns (every row of the chunk may be ragged), never a tuple per
    # row, a slice at a time from the end of ``ragged`` so each slice's Python strings are let
    # go once copied. A row already rejected for its encoding is not rejected again. locate_rows
    # matched each row's UTF-8 bytes to exactly its record's bytes, so the parser's text IS the
    # record text (record_text would decode an equal second copy).
    keep = ~np.isin(ragged_idx, bad_utf8_rows) if bad_utf8_rows.size else np.ones(len(ragged), dtype=bool)
    expected = len(schema.source_columns)
    batches = []
    hi = len(ragged)
    while hi > 0:
        lo = max(0, hi - _RAGGED_BATCH)
        part, k = ragged[lo:hi], keep[lo:hi].tolist()
        del ragged[lo:hi]
        batches.append(
            rejects_mod.whole_records(
                recs.lines[ragged_idx[lo:hi][keep[lo:hi]]],
                [_fields_reason(expected, n) for (_, n), kk in zip(part, k) if kk],
                [t for (t, _), kk in zip(part, k) if kk],
                "fields",
            )
        )
        del part
        hi = lo
    for batch in reversed(batches):
        rejects.add_batch(batch)
    n_records = len(recs.starts)
    parsed_mask = np.ones(n_records, dtype=bool)
    if ragged_idx.size:
        parsed_mask[ragged_idx] = False
    if parsed_mask.sum() != table.num_rows:
        # Explain the usual cause first: pyarrow ends a line at a bare CR, the scan does not.
        check_bare_cr(text, base, first_line)
        raise MalformedCsv(
            f"CSV structure differs from RFC 4180 quoting near line {first_line}: {n_records} records "
            f"by quote parity, {table.num_rows} parsed + {ragged_idx.size} with a wrong field count "
            "(a quote inside an unquoted field?)"
        )
    return np.flatnonzero(parsed_mask)  # table row i is record row_records[i]


# Rows with a wrong field count turned into reject columns at a time (see _map_rows).
_RAGGED_BATCH = 20_000


@functools.lru_cache(maxsize=256)
def _fields_reason(expected: int, found: int) -> str:
    """One string per (expected, found): a chunk of many ragged rows shares it."""
    return f"expected {expected} fields, found {found}"


def _rule_rejects(
    data: bytes,
    schema: Schema,
    recs: Records,
    table: pa.Table,
    row_records: np.ndarray,
    keep: np.ndarray,
    ok_masks: list[np.ndarray],
    rejects: rejects_mod.Rejects,
) -> np.ndarray:
    """The rows passing every rule (among ``keep``); one reject per failing row, naming its
    first failing column in schema order."""
    valid = keep.copy()
    for ok in ok_masks:
        valid &= ok
    for i in np.flatnonzero(keep & ~valid):
        f, ok = next((f, ok) for f, ok in zip(schema.fields, ok_masks) if not ok[i])
        value = table.column(f.source_name)[int(i)].as_py()
        rec = int(row_records[i])
        rejects.append(
            (
                int(recs.lines[rec]),
                f.source_name,
                _reason(f, value),
                record_text(data, recs, rec),
                rule_of(f, value),
                value,
            )
        )
    return valid


def _valid_table(schema: Schema, owned: list[pa.Table], typed: dict[str, Any], valid: np.ndarray) -> pa.Table:
    """The typed valid rows. Filtered column by column, letting go of each unfiltered column
    (and its source strings) as soon as its filtered copy exists: the peak holds one column
    twice, not the table. ``owned`` holds the only reference to the string table (taken)."""
    table = owned.pop()
    keep_rows = None if valid.all() else pa.array(valid)
    if keep_rows is not None and table.num_rows >= rules.PARALLEL_MIN_ROWS and workers.parallel():
        # pc.filter releases the GIL: the columns on the pool, each unfiltered one let go as
        # soon as its copy exists (at most one column per worker held twice).
        names = [f.name for f in schema.fields]
        del table
        mask = keep_rows
        futures = [workers.pool().submit(_filter_taking, typed, name, mask) for name in names]
        out_cols = [f.result() for f in futures]
        return pa.Table.from_arrays(out_cols, schema=arrow_schema(schema))
    out_cols = []
    for f in schema.fields:
        col = typed.pop(f.name)
        table = table.drop_columns([f.source_name])
        out_cols.append(col if keep_rows is None else pc.filter(col, keep_rows))
        del col
    del table
    return pa.Table.from_arrays(out_cols, schema=arrow_schema(schema))


def _filter_taking(typed: dict[str, Any], name: str, mask: pa.Array) -> Any:
    """``typed[name]`` filtered by ``mask``; the unfiltered column leaves ``typed`` first."""
    return pc.filter(typed.pop(name), mask)


def _start_id_codes(table: pa.Table, schema: Schema) -> Future[np.ndarray] | None:
    """Codes of the raw id column (None: no id column): on a worker when the chunk is large and
    there is a second CPU, else here. Coding the raw column, not a copy of the valid rows' ids,
    costs the same time and ~16 MiB less at the peak of a 50 MiB chunk (PERF2)."""
    src = next((f.source_name for f in schema.fields if f.name == duplicates.ID_COLUMN), None)
    if src is None:
        return None
    if table.num_rows >= rules.PARALLEL_MIN_ROWS and workers.parallel():
        return workers.pool().submit(duplicates.codes_of, table.column(src))
    done: Future[np.ndarray] = Future()
    done.set_result(duplicates.codes_of(table.column(src)))
    return done


def _reject_duplicates(
    typed: dict[str, Any],
    valid: np.ndarray,
    row_lines: np.ndarray,
    data: bytes,
    recs: Records,
    row_records: np.ndarray,
    id_codes: Future[np.ndarray] | None = None,
) -> list[_Reject]:
    """Reject later occurrences of a transaction id among the valid rows (clears them in
    ``valid``); one vectorised pass, Python only per rejected row. ``id_codes``: the codes of
    every row's id, computed beforehand (:func:`_start_id_codes`)."""
    ids = typed.get(duplicates.ID_COLUMN)
    if ids is None or not valid.any():
        if id_codes is not None:
            id_codes.result()
        return []
    rows = np.flatnonzero(valid)
    if id_codes is not None:
        later, first_lines = duplicates.later_occurrences(id_codes.result()[rows], row_lines[rows])
    else:
        later, first_lines = duplicates.find_duplicates(pc.take(ids, pa.array(rows)), row_lines[rows])
    if later.size == 0:
        return []
    dup_rows = rows[later]
    valid[dup_rows] = False
    values = pc.take(ids, pa.array(dup_rows)).to_pylist()
    out: list[_Reject] = []
    for i, value, first in zip(dup_rows.tolist(), values, first_lines.tolist()):
        rec = int(row_records[i])
        out.append(
            (
                int(recs.lines[rec]),
                duplicates.ID_COLUMN,
                duplicates.duplicate_reason(str(value), int(first)),
                record_text(data, recs, rec),
                duplicates.DUPLICATE_RULE,
                str(value),
            )
        )
    return out


def _empty_table(schema: Schema) -> pa.Table:
    s = arrow_schema(schema)
    return pa.table({f.name: pa.array([], f.type) for f in s}, schema=s)


def _finish(
    data: bytes,
    schema: Schema,
    first_line: int,
    n_records: int,
    out: pa.Table,
    rejects: rejects_mod.Rejects,
    valid_lines: np.ndarray,
) -> ChunkResult:
    """Conservation check, then the output bytes."""
    rows_valid = out.num_rows
    check_conservation(f"chunk at line {first_line}", n_records, rows_valid, len(rejects))
    if len(valid_lines) != rows_valid:
        raise ConservationViolation(
            f"chunk at line {first_line}: {len(valid_lines)} line numbers for {rows_valid} rows"
        )
    # The Parquet writer (releases the GIL) on a worker while this thread words the rejects.
    parquet: Future[bytes] | None = None
    if rows_valid >= rules.PARALLEL_MIN_ROWS and workers.parallel():
        parquet = workers.pool().submit(table_to_parquet, out, schema)
    # RUN12: the rejects go columnar (the Python tuples are let go batch by batch), and the
    # CSV is written from the columns a slice at a time.
    table = rejects.to_table()
    rejects_csv = rejects_table_to_csv(table)
    return ChunkResult(
        rows_in=n_records,
        rows_valid=rows_valid,
        rows_rejected=table.num_rows,
        parquet=parquet.result() if parquet is not None else table_to_parquet(out, schema),
        rejects_csv=rejects_csv,
        valid_table=out,
        rejects_by_column=rejects_mod.counts_by_column(table),
        valid_lines=valid_lines,
        rejects_table=table,
    )
