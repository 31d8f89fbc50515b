"""Validation rules (RUN4, RUN11): one typed column and one ``ok`` mask per schema field.

All vectorised ``pyarrow.compute``: ``is_in`` for enums (ISO 4217, types), anchored RE2 patterns,
a shape regex + cast for decimals (the regex rejects what a cast would silently accept or round:
``1e5``, ``1.234``), one RE2 encoding the Gregorian calendar for dates, shape regex + cast for
timestamps. Python touches only rejected rows (to word the reason and name the rule).
Columns are checked in parallel on a small thread pool (compute kernels release the GIL).

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc

from etl.core import workers
from etl.core.schema import Field, Schema

# pyarrow.compute's functions are generated at import time; its stubs do not list them.
pc: Any = _pc

# Stable rule codes of a reject (the ``rule`` column of transaction_rejects, docs/validation.md).
RULES = ("fields", "encoding", "required", "pattern", "enum", "length", "type", "range", "duplicate")


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


def arrow_schema(schema: Schema) -> pa.Schema:
    meta = {
        b"etl.schema_id": schema.schema_id.encode(),
        b"etl.schema_version": schema.version.encode(),
        b"etl.dataset": schema.dataset.encode(),
    }
    return pa.schema(
        [pa.field(f.name, arrow_type(f), nullable=not f.required) for f in schema.fields], metadata=meta
    )


def null_if_empty(col: pa.ChunkedArray, present: pa.ChunkedArray) -> pa.ChunkedArray:
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


# Below this many rows a chunk is validated on the calling thread (threads cost more than
# they save); above it the columns are checked in parallel: pyarrow.compute releases the GIL.
PARALLEL_MIN_ROWS = 20_000


def validate(table: pa.Table, schema: Schema) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Typed column per target field and, per field, a numpy ``ok`` mask (True = passes)."""
    n = table.num_rows
    cols = [table.column(f.source_name) for f in schema.fields]
    if n >= PARALLEL_MIN_ROWS and workers.parallel():
        results = list(workers.pool().map(_check_field, cols, schema.fields, [n] * len(cols)))
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
        values = col if f.required else null_if_empty(col, present)
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


def reason(f: Field, value: str) -> str:
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
