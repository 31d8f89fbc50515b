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


# SPEC RUN11: dates and timestamps every reader can read (Python's datetime, pandas via
# to_pydatetime): 0001-01-01 .. 9999-12-31, timestamps after conversion to UTC. The calendar
# regex accepts year 0000 (proleptic Gregorian) and an offset can push a value past either end,
# so the range is checked on the cast values (rule ``range``).
RANGE_TEXT = "0001-01-01..9999-12-31"
_DATE_RANGE = (-719_162, 2_932_896)  # days since 1970-01-01 of 0001-01-01 and 9999-12-31
_TIMESTAMP_RANGE = (-62_135_596_800_000_000, 253_402_300_799_999_999)  # microseconds, UTC


def _in_range(values: Any, ftype: str) -> Any:
    """True where a cast date/timestamp lies in RANGE_TEXT (or is null: failed elsewhere)."""
    lo, hi = _DATE_RANGE if ftype == "date" else _TIMESTAMP_RANGE
    ints = pc.cast(values, pa.int32() if ftype == "date" else pa.int64())
    return pc.fill_null(pc.and_(pc.greater_equal(ints, lo), pc.less_equal(ints, hi)), True)


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
        # Longest first (LPT), so the two workers finish together instead of one of them
        # starting a timestamp column as the other runs out of work.
        order = sorted(range(len(cols)), key=lambda i: -_cost(schema.fields[i]))
        futures = {i: workers.pool().submit(_check_field, cols[i], schema.fields[i], n) for i in order}
        results = [futures[i].result() for i in range(len(cols))]
    else:
        results = [_check_field(c, f, n) for c, f in zip(cols, schema.fields)]
    typed = {f.name: values for f, (values, _) in zip(schema.fields, results)}
    return typed, [ok for _, ok in results]


def _cost(f: Field) -> float:
    """Relative CPU cost of checking one value of ``f`` (measured on the default schema:
    timestamp ~40 ms, decimal ~30, date ~28, patterned id ~40, enum ~14, free text ~1 per
    388k rows): only the order of the parallel work depends on it."""
    if f.type in ("datetime", "number", "integer", "date"):
        return 3.0 if f.type != "datetime" else 4.0
    cost = 0.1
    if f.pattern is not None:
        cost += 2.5
    if f.enum is not None:
        cost += 1.0
    if f.min_length is not None or f.max_length is not None:
        cost += 0.3
    return cost


def _string_checks(col: pa.ChunkedArray, f: Field) -> list[Any]:
    """Arrow boolean arrays (True = ok for non-empty values) of a string field's rules."""
    checks: list[Any] = []
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
    return checks


def _typed_checks(col: pa.ChunkedArray, f: Field, typ: pa.DataType) -> tuple[Any, list[Any]]:
    """(typed values, checks) of a number/integer/date/datetime field."""
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
    checks: list[Any] = [shape]
    values, failed = _cast_rows(pc.if_else(shape, col, pa.scalar(None, pa.string())), typ)
    if failed.any():
        checks.append(pa.array(~failed))
    if f.type in ("date", "datetime"):
        checks.append(_in_range(values, f.type))
    return values, checks


def _check_field(col: pa.ChunkedArray, f: Field, n: int) -> tuple[Any, np.ndarray]:
    """(typed values, ok mask) of one column. Values of failing rows are unspecified: those
    rows are filtered out."""
    typ = arrow_type(f)
    if n == 0:
        return pa.array([], typ), np.zeros(0, dtype=bool)
    empty = pc.equal(pc.binary_length(col), 0)
    present = pc.invert(empty)
    if f.type == "string":
        checks = _string_checks(col, f)
        values = col if f.required else null_if_empty(col, present)
    else:
        values, checks = _typed_checks(col, f, typ)
    if checks:
        ok_present = checks[0]
        for c in checks[1:]:
            ok_present = pc.and_(ok_present, c)
        # Empty: fine unless required. Non-empty: every check must pass.
        return values, _np(pc.if_else(empty, not f.required, ok_present))
    if f.required:
        return values, _np(present)
    return values, np.ones(n, dtype=bool)


def _shaped(f: Field, value: str) -> bool:
    """``value`` has the date/timestamp shape (so a reject of it is about the range)."""
    return re.fullmatch(DATE_RE if f.type == "date" else TIMESTAMP_RE, value) is not None


def rule_of(f: Field, value: str) -> str:
    """The stable rule code (RULES) of the first rule ``value`` breaks; mirrors _reason."""
    if value == "":
        return "required"
    if f.type == "number":
        m = re.fullmatch(r"-?([0-9]+)(?:\.([0-9]+))?", value)
        return "range" if m else "type"
    if f.type in ("date", "datetime"):
        return "range" if _shaped(f, value) else "type"
    if f.type == "integer":
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
    if f.type in ("date", "datetime") and _shaped(f, value):
        after = " after conversion to UTC" if f.type == "datetime" else ""
        return f"{f.source_name}: {v} is outside {RANGE_TEXT}{after}"
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
