"""The straightforward pandas implementation of the same chunk rules (PERF2 baseline).

This is what one would write first: ``read_csv(dtype=str)``, per-column regex / ``to_datetime``
checks, ``Decimal`` via ``apply``, ``to_parquet``. It applies the rules of
:mod:`etl.core.process` (same schema file) and must agree with it on the valid / rejected
counts (tests/unit/test_process.py checks that on generated data); it is not shipped.

Simplifications a first version would have and that do not change the counts: reject line
numbers are row positions (pandas does not know physical lines when quoted fields hold
newlines) and the reject ``record`` is the row re-joined from its fields.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa

from etl.core.arrow_init import restore_pandas
from etl.core.process import arrow_type  # the same target types, not the same checks
from etl.core.schema import Schema

# Loading a schema keeps pandas out of pyarrow's view (PERF4); this module does use pandas.
restore_pandas()

DATE_RE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
TS_RE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:?[0-9]{2})"


@dataclass
class BaselineResult:
    rows_in: int
    rows_valid: int
    rows_rejected: int
    parquet: bytes
    rejects_csv: bytes


def process_chunk_pandas(data: bytes, schema: Schema, first_line: int) -> BaselineResult:
    """Parse, validate every row, write Parquet + rejects: the pandas way."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = pd.read_csv(
            io.BytesIO(data),
            sep=schema.delimiter,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8-sig",
            on_bad_lines="warn",
            skip_blank_lines=True,
        )
    ragged = []
    for w in caught:
        for m in re.finditer(r"Skipping line (\d+): (.*)", str(w.message)):
            ragged.append((int(m.group(1)), "*", m.group(2), ""))
    if list(df.columns) != schema.source_columns:
        raise ValueError("header mismatch")

    n = len(df)
    first_fail = pd.Series([""] * n, index=df.index, dtype=object)
    reasons = pd.Series([""] * n, index=df.index, dtype=object)
    # The C parser silently pads rows with too FEW fields with "" (only too many are "bad
    # lines"), which would accept them: count each record's fields with the csv module.
    counts = np.array(
        [len(r) for r in csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=schema.delimiter)][1:]
    )
    counts = counts[(counts > 0) & (counts <= len(schema.source_columns))]
    short = pd.Series(counts < len(schema.source_columns), index=df.index)
    first_fail[short] = "*"
    reasons[short] = "too few fields"
    df = df.fillna("")
    out = {}
    for f in schema.fields:
        s = df[f.source_name]
        empty = s == ""
        ok = pd.Series(True, index=df.index)
        if f.required:
            ok &= ~empty
        if f.type == "string":
            if f.pattern:
                ok &= empty | s.str.fullmatch(f.pattern)
            if f.enum:
                ok &= empty | s.isin(set(f.enum))
            if f.min_length is not None:
                ok &= empty | (s.str.len() >= f.min_length)
            if f.max_length is not None:
                ok &= empty | (s.str.len() <= f.max_length)
            values = s.where(~empty, None)
        elif f.type == "number":
            assert f.precision is not None and f.scale is not None  # the schema loader sets both
            whole = f.precision - f.scale
            shape = s.str.fullmatch(rf"-?[0-9]{{1,{whole}}}(\.[0-9]{{1,{f.scale}}})?")
            ok &= empty | shape
            values = s.where(shape & ok, None).apply(lambda v: Decimal(v) if v is not None else None)
        elif f.type == "integer":
            shape = s.str.fullmatch(r"-?[0-9]{1,18}")
            ok &= empty | shape
            values = pd.to_numeric(s.where(shape, None), errors="coerce").astype("Int64")
        elif f.type == "date":
            shaped = s.where(s.str.fullmatch(DATE_RE), None)
            parsed = pd.to_datetime(shaped, format="%Y-%m-%d", errors="coerce")
            ok &= empty | parsed.notna()
            values = parsed.dt.date
        else:
            shape = s.str.fullmatch(TS_RE)
            parsed = pd.to_datetime(s.where(shape, None), format="ISO8601", utc=True, errors="coerce")
            ok &= empty | parsed.notna()
            values = parsed
        newly = ~ok & (first_fail == "")
        first_fail[newly] = f.source_name
        reasons[newly] = f.source_name + ": " + s[newly].astype(str) + " is not valid"
        out[f.name] = values
    valid = first_fail == ""
    # DATA4(c): a transaction id seen on an earlier valid row of the chunk is a reject.
    if "transaction_id" in schema.target_columns:
        src = schema.get_field("transaction_id").source_name
        dup = valid & df[src].where(valid, None).duplicated(keep="first")
        first_fail[dup] = src
        reasons[dup] = src + ": duplicate transaction id"
        valid = first_fail == ""
    typed = pd.DataFrame({k: v[valid] for k, v in out.items()})
    arrow_schema = pa.schema([pa.field(f.name, arrow_type(f)) for f in schema.fields])
    buf = io.BytesIO()
    typed.to_parquet(buf, engine="pyarrow", compression="snappy", index=False, schema=arrow_schema)
    bad = ~valid
    rej = pd.DataFrame(
        {
            "line": df.index[bad] + first_line,
            "column": first_fail[bad],
            "reason": reasons[bad],
            "record": df[bad].apply(lambda r: schema.delimiter.join(r), axis=1) if bad.any() else [],
        }
    )
    rej = pd.concat([rej, pd.DataFrame(ragged, columns=["line", "column", "reason", "record"])])
    rejects_csv = rej.to_csv(index=False).encode("utf-8")
    return BaselineResult(
        rows_in=n + len(ragged),
        rows_valid=int(valid.sum()),
        rows_rejected=int(bad.sum()) + len(ragged),
        parquet=buf.getvalue(),
        rejects_csv=rejects_csv,
    )
