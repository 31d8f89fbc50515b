"""PERF2 peers: the chunk rules of ``etl.core.process`` written the way a competent user of each
tool would write them (DuckDB, Polars, pandas on its pyarrow engine). Benchmark-only code.

Every implementation gets the same chunk file and the same :func:`rules_of` dict (taken from the
schema by the parent process, so the peers do not import ``etl``), and writes the same two
outputs the project writes: the valid rows as typed snappy Parquet (same column types) and the
rejects as CSV. They return ``(rows_in, rows_valid, rows_rejected)``; the parent reads each
Parquet back to check that all agree row for row (same valid transaction ids and amounts).

The rules (etl/schemas/default.json): required/pattern/enum/length on strings; decimals by a
shape regex then a cast (no exponent, no rounding); dates YYYY-MM-DD that exist; timestamps ISO
8601 with a required offset, stored in UTC; a record with a wrong number of fields is one
reject; a transaction id already seen among the valid rows of the chunk is a reject.

Polars keeps a row with too FEW fields silently (it pads with nulls, which an empty optional
last field also gives), and pandas' pyarrow engine drops rows with a wrong count without saying
which: both count each record's fields themselves (:func:`field_counts`, numpy, quote-aware),
Polars on a second thread while it parses.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

# Shapes a value must have before the cast (the casts alone accept more: 2024-1-05, no offset,
# 1e5, rounding). The project uses the same shapes (etl.core.process).
DATE_SHAPE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
TS_SHAPE = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:?[0-9]{2})"
)
ID = "transaction_id"


def decimal_shape(precision: int, scale: int) -> str:
    whole = max(precision - scale, 1)
    return rf"-?[0-9]{{1,{whole}}}(\.[0-9]{{1,{scale}}})?" if scale else rf"-?[0-9]{{1,{whole}}}"


def rules_of(schema: Any) -> dict[str, Any]:
    """The schema's rules as plain data (JSON-able) for the peer workers."""
    return {
        "delimiter": schema.delimiter,
        "columns": list(schema.source_columns),
        "fields": [
            {
                "name": f.name,
                "source": f.source_name,
                "type": f.type,
                "required": f.required,
                "pattern": f.pattern,
                "enum": list(f.enum) if f.enum is not None else None,
                "min_length": f.min_length,
                "max_length": f.max_length,
                "precision": f.precision,
                "scale": f.scale,
            }
            for f in schema.fields
        ],
    }


def field_counts(data: bytes, delimiter: str = ",") -> np.ndarray:
    """Fields per record (header included) by RFC 4180 quote parity: a delimiter or ``\\n``
    after an even number of quotes is structural. Blank lines are dropped (as the parsers do)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(buf == 34)
    nl = np.flatnonzero(buf == 10)
    delim = np.flatnonzero(buf == ord(delimiter))
    terms = nl[(np.searchsorted(quotes, nl) & 1) == 0]
    delim = delim[(np.searchsorted(quotes, delim) & 1) == 0]
    if len(buf) and (terms.size == 0 or terms[-1] != len(buf) - 1):
        terms = np.append(terms, len(buf))  # a last record without a terminator
    starts = np.concatenate(([0], terms[:-1] + 1))
    nonblank = (terms - starts) > (buf[np.maximum(terms - 1, 0)] == 13)
    per = np.diff(np.concatenate(([0], np.searchsorted(delim, terms))))
    return (per + 1)[nonblank]


# ---------------------------------------------------------------------------------------------
# DuckDB


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _duck_checks(f: dict[str, Any]) -> tuple[str, str]:
    """(ok expression, typed value expression) for one field; NULL = empty in DuckDB's reader."""
    c = '"' + f["source"] + '"'
    empty = f"({c} IS NULL OR {c} = '')"
    conds: list[str] = []
    value = c
    if f["type"] == "string":
        if f["pattern"]:
            conds.append(f"regexp_full_match({c}, {_sql_str(f['pattern'])})")
        if f["enum"]:
            conds.append(f"{c} IN ({', '.join(_sql_str(v) for v in f['enum'])})")
        if f["min_length"] is not None:
            conds.append(f"length({c}) >= {f['min_length']}")
        if f["max_length"] is not None:
            conds.append(f"length({c}) <= {f['max_length']}")
        value = f"NULLIF({c}, '')"
    elif f["type"] == "number":
        conds.append(f"regexp_full_match({c}, {_sql_str(decimal_shape(f['precision'], f['scale']))})")
        value = f"TRY_CAST({c} AS DECIMAL({f['precision']},{f['scale']}))"
    elif f["type"] == "integer":
        conds.append(f"regexp_full_match({c}, '-?[0-9]{{1,18}}')")
        value = f"TRY_CAST({c} AS BIGINT)"
    elif f["type"] == "date":
        value = f"TRY_CAST({c} AS DATE)"
        conds += [f"regexp_full_match({c}, {_sql_str(DATE_SHAPE)})", f"{value} IS NOT NULL"]
    else:
        value = f"TRY_CAST({c} AS TIMESTAMPTZ)"
        conds += [f"regexp_full_match({c}, {_sql_str(TS_SHAPE)})", f"{value} IS NOT NULL"]
    ok = " AND ".join(conds) if conds else "TRUE"
    return f"(CASE WHEN {empty} THEN {'FALSE' if f['required'] else 'TRUE'} ELSE ({ok}) END)", value


def run_duckdb(path: str, rules: dict[str, Any], threads: int, out_dir: str) -> tuple[int, int, int]:
    import duckdb

    con = duckdb.connect(config={"threads": threads})
    cols = ", ".join(f"{_sql_str(c)}: 'VARCHAR'" for c in rules["columns"])
    con.execute(
        f"CREATE TEMP TABLE raw AS SELECT * FROM read_csv({_sql_str(path)}, header = true, "
        f"delim = {_sql_str(rules['delimiter'])}, quote = '\"', escape = '\"', auto_detect = false, "
        f"columns = {{{cols}}}, strict_mode = true, null_padding = false, store_rejects = true)"
    )
    fields = rules["fields"]
    checks = [_duck_checks(f) for f in fields]
    # First failing column (schema order) for the reject reason; '' = passes every rule.
    first = "CASE " + " ".join(
        f"WHEN NOT {ok} THEN {_sql_str(f['source'])}" for f, (ok, _) in zip(fields, checks, strict=True)
    )
    typed = ", ".join(f'{v} AS "{f["name"]}"' for f, (_, v) in zip(fields, checks, strict=True))
    src = ", ".join('"' + c + '"' for c in rules["columns"])
    con.execute(f"CREATE TEMP TABLE chk AS SELECT rowid AS rn, {first} ELSE '' END AS fail, {src} FROM raw")
    # A transaction id repeated among the passing rows: the first (file order) is kept.
    con.execute(
        "CREATE TEMP TABLE res AS SELECT rn, CASE WHEN fail = '' AND row_number() OVER "
        f"(PARTITION BY fail = '', \"{_src_of(rules, ID)}\" ORDER BY rn) > 1 THEN '{ID}' ELSE fail END "
        "AS fail FROM chk"
    )
    valid = con.execute(
        f"COPY (SELECT {typed} FROM chk JOIN res USING (rn) WHERE res.fail = '') TO "
        f"{_sql_str(os.path.join(out_dir, 'valid.parquet'))} (FORMAT parquet, COMPRESSION snappy)"
    ).fetchone()
    rec = " || ',' || ".join(f"coalesce(\"{c}\", '')" for c in rules["columns"])
    rejected = con.execute(
        f"COPY (SELECT rn + 2 AS line, res.fail AS column, res.fail || ' breaks a rule' AS reason, {rec} "
        "AS record FROM chk JOIN res USING (rn) WHERE res.fail <> '' UNION ALL SELECT line, '*', error_type, "
        "csv_line FROM (SELECT DISTINCT ON (line) line, error_type, csv_line FROM reject_errors)) TO "
        f"{_sql_str(os.path.join(out_dir, 'rejects.csv'))} (FORMAT csv, HEADER true)"
    ).fetchone()
    n_raw = con.execute("SELECT count(*) FROM raw").fetchone()
    ragged = con.execute("SELECT count(DISTINCT line) FROM reject_errors").fetchone()
    assert valid and rejected and n_raw and ragged
    con.close()
    return int(n_raw[0]) + int(ragged[0]), int(valid[0]), int(rejected[0])


def _src_of(rules: dict[str, Any], name: str) -> str:
    return next(f["source"] for f in rules["fields"] if f["name"] == name)


# ---------------------------------------------------------------------------------------------
# Polars


def run_polars(path: str, rules: dict[str, Any], threads: int, out_dir: str) -> tuple[int, int, int]:
    from concurrent.futures import ThreadPoolExecutor

    import polars as pl

    with open(path, "rb") as fh:
        data = fh.read()
    with ThreadPoolExecutor(1) as ex:
        counting = ex.submit(field_counts, data, rules["delimiter"])
        df = pl.read_csv(
            data,
            has_header=True,
            separator=rules["delimiter"],
            quote_char='"',
            infer_schema=False,  # every column a string
            truncate_ragged_lines=True,  # rows with too many fields: counted below, not fatal
        )
        counts = counting.result()[1:]  # without the header
    if len(counts) != df.height:
        raise RuntimeError(f"polars parsed {df.height} rows, the field count found {len(counts)} records")
    n_cols = len(rules["columns"])
    oks: list[tuple[str, Any]] = [("*", pl.Series(counts == n_cols))]
    typed: list[Any] = []
    for f in rules["fields"]:
        c = pl.col(f["source"])
        empty = c.is_null() | (c == "")
        conds: list[Any] = []
        value: Any = c
        if f["type"] == "string":
            if f["pattern"]:
                conds.append(c.str.contains(f"^(?:{f['pattern']})$"))
            if f["enum"]:
                conds.append(c.is_in(f["enum"]))
            if f["min_length"] is not None:
                conds.append(c.str.len_chars() >= f["min_length"])
            if f["max_length"] is not None:
                conds.append(c.str.len_chars() <= f["max_length"])
        elif f["type"] == "number":
            conds.append(c.str.contains(f"^{decimal_shape(f['precision'], f['scale'])}$"))
            value = c.cast(pl.Decimal(f["precision"], f["scale"]), strict=False)
        elif f["type"] == "integer":
            conds.append(c.str.contains("^-?[0-9]{1,18}$"))
            value = c.cast(pl.Int64, strict=False)
        elif f["type"] == "date":
            value = c.str.to_date("%Y-%m-%d", strict=False)
            conds += [c.str.contains(f"^{DATE_SHAPE}$"), value.is_not_null()]
        else:
            iso = c.str.replace(r"^([0-9]{4}-[0-9]{2}-[0-9]{2}) ", "${1}T").str.replace("Z$", "+00:00")
            value = iso.str.to_datetime(
                "%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_unit="us", time_zone="UTC"
            )
            conds += [c.str.contains(f"^{TS_SHAPE}$"), value.is_not_null()]
        ok = pl.all_horizontal(conds) if conds else pl.lit(True)
        oks.append((f["source"], pl.when(empty).then(pl.lit(not f["required"])).otherwise(ok)))
        typed.append(value.alias(f["name"]))
    ok_exprs = [(name, e if isinstance(e, pl.Expr) else pl.lit(e)) for name, e in oks]
    fail = pl.lit("")
    for name, e in reversed(ok_exprs):  # the first failing column wins
        fail = pl.when(~e.fill_null(False)).then(pl.lit(name)).otherwise(fail)
    df = df.with_columns(fail.alias("_fail"))
    id_src = _src_of(rules, ID)
    dup = (pl.col("_fail") == "") & ~pl.when(pl.col("_fail") == "").then(pl.col(id_src)).is_first_distinct()
    df = df.with_columns(pl.when(dup).then(pl.lit(id_src)).otherwise(pl.col("_fail")).alias("_fail"))
    valid = df.filter(pl.col("_fail") == "").select(typed)
    valid.write_parquet(os.path.join(out_dir, "valid.parquet"), compression="snappy")
    rej = df.with_row_index("line", offset=2).filter(pl.col("_fail") != "")
    rej.select(
        "line",
        pl.col("_fail").alias("column"),
        (pl.col("_fail") + " breaks a rule").alias("reason"),
        pl.concat_str([pl.col(c).fill_null("") for c in rules["columns"]], separator=",").alias("record"),
    ).write_csv(os.path.join(out_dir, "rejects.csv"))
    return df.height, valid.height, rej.height


# ---------------------------------------------------------------------------------------------
# pandas, written competently: the pyarrow engine and Arrow-backed columns, no Python per row.


def run_pandas_arrow(path: str, rules: dict[str, Any], threads: int, out_dir: str) -> tuple[int, int, int]:
    import pandas as pd
    import pyarrow as pa

    with open(path, "rb") as fh:
        data = fh.read()
    n_records = len(field_counts(data, rules["delimiter"])) - 1
    import io

    df = pd.read_csv(
        io.BytesIO(data),
        engine="pyarrow",
        sep=rules["delimiter"],
        dtype_backend="pyarrow",
        dtype="string[pyarrow]",
        keep_default_na=False,
        na_filter=False,
        on_bad_lines="skip",  # wrong field count: dropped; counted as n_records - len(df)
    )
    ragged = n_records - len(df)
    fail = pd.Series("", index=df.index, dtype="string[pyarrow]")
    out: dict[str, Any] = {}
    schema = []
    for f in rules["fields"]:
        s = df[f["source"]]
        empty = s == ""
        ok = pd.Series(True, index=df.index)
        if f["type"] == "string":
            if f["pattern"]:
                ok &= s.str.fullmatch(f["pattern"])
            if f["enum"]:
                ok &= s.isin(f["enum"])
            if f["min_length"] is not None:
                ok &= s.str.len() >= f["min_length"]
            if f["max_length"] is not None:
                ok &= s.str.len() <= f["max_length"]
            values = s.where(~empty, None)
            typ = pa.string()
        elif f["type"] == "number":
            shape = s.str.fullmatch(decimal_shape(f["precision"], f["scale"]))
            ok &= shape
            typ = pa.decimal128(f["precision"], f["scale"])
            values = s.where(shape & ~empty, None).astype(pd.ArrowDtype(typ))
        elif f["type"] == "integer":
            shape = s.str.fullmatch("-?[0-9]{1,18}")
            ok &= shape
            typ = pa.int64()
            values = s.where(shape & ~empty, None).astype("int64[pyarrow]")
        elif f["type"] == "date":
            parsed = pd.to_datetime(
                s.where(s.str.fullmatch(DATE_SHAPE), None), format="%Y-%m-%d", errors="coerce"
            )
            ok &= parsed.notna()
            typ = pa.date32()
            values = parsed.astype("date32[pyarrow]")
        else:
            shaped = s.where(s.str.fullmatch(TS_SHAPE), None)
            parsed = pd.to_datetime(shaped, format="ISO8601", utc=True, errors="coerce")
            ok &= parsed.notna()
            typ = pa.timestamp("us", tz="UTC")
            values = parsed
        ok = ok.fillna(False).astype(bool)
        ok = ok | empty if not f["required"] else ok & ~empty
        fail = fail.mask((fail == "") & ~ok, f["source"])
        out[f["name"]] = values
        schema.append(pa.field(f["name"], typ))
    passing = fail == ""
    id_src = _src_of(rules, ID)
    dup = df[id_src].where(passing, None).duplicated(keep="first") & passing
    fail = fail.mask(dup, id_src)
    valid = (fail == "").to_numpy(dtype=bool)
    typed = pd.DataFrame({k: v[valid] for k, v in out.items()})
    typed.to_parquet(
        os.path.join(out_dir, "valid.parquet"),
        engine="pyarrow",
        compression="snappy",
        index=False,
        schema=pa.schema(schema),
    )
    bad = ~valid
    rej = pd.DataFrame(
        {"line": df.index[bad] + 2, "column": fail[bad], "reason": fail[bad] + " breaks a rule"}
    )
    rej["record"] = df[bad].agg(rules["delimiter"].join, axis=1) if bad.any() else ""
    rej.to_csv(os.path.join(out_dir, "rejects.csv"), index=False)
    n_valid = int(valid.sum())
    return len(df) + ragged, n_valid, int(bad.sum()) + ragged


PEERS = {"duckdb": run_duckdb, "polars": run_polars, "pandas-arrow": run_pandas_arrow}
