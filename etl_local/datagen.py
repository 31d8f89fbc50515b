"""Seeded generator of realistic partner transaction CSV files (test data, demo, benchmarks).

Values are drawn with numpy and assembled column-wise with pyarrow compute (no per-row Python),
so 200 MB takes a few seconds. A known share of rows is made bad on purpose, exactly one defect
per bad row, and the returned :class:`GenStats` counts them by kind: the validator must reject
exactly ``stats.bad_rows`` rows, each for the column :data:`BAD_KIND_COLUMN` names.

Daily files (DATA3): a file is for one business day (Mon-Fri) ``D``; its transaction dates are
mostly the calendar days since the previous business day (a Monday file holds Friday to Sunday),
``late_share`` of the rows are late arrivals from 2-10 business days before that, and
``posted_at`` lies between the transaction date and the file's day. ``duplicate_id_share`` of the
rows repeat the transaction id of an earlier valid row (DATA4(c) test data).
:func:`generate_daily_files` writes N consecutive daily files.

CLI: ``python -m etl_local.datagen OUT --size-mb N --seed S --bad-share X [--crlf] [--gzip]
[--business-day YYYY-MM-DD] [--late-share X] [--duplicate-share X]``;
``python -m etl_local.datagen OUT_DIR --days 30 --rows N [--start 2026-01-05] [--partner P]``
"""

from __future__ import annotations

import argparse
import datetime
import gzip as gzip_mod
import io
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc

from etl.core.schema import Schema, load_schema

# pyarrow.compute's functions are generated at import time; its stubs do not list them.
pc: Any = _pc

# Each bad-row kind and the target column the validator blames ("*" = the whole record).
BAD_KIND_COLUMN = {
    "bad_id": "transaction_id",
    "missing_account": "account_id",
    "impossible_date": "transaction_date",
    "bad_timestamp": "posted_at",
    "bad_amount": "amount",
    "unknown_currency": "currency",
    "bad_enum": "transaction_type",
    "bad_mcc": "merchant_category_code",
    "ragged_row": "*",
}
BAD_KINDS = tuple(BAD_KIND_COLUMN)

_CURRENCIES = [
    "USD",
    "EUR",
    "GBP",
    "JPY",
    "CHF",
    "CAD",
    "AUD",
    "SEK",
    "NOK",
    "DKK",
    "PLN",
    "MXN",
    "SGD",
    "INR",
]
_CURRENCY_W = [0.42, 0.24, 0.1, 0.04, 0.03, 0.03, 0.03, 0.02, 0.02, 0.015, 0.015, 0.015, 0.01, 0.01]
_TYPES = ["DEBIT", "CREDIT", "FEE", "REFUND", "TRANSFER"]
_TYPE_W = [0.62, 0.18, 0.05, 0.05, 0.10]
_MCC = [
    "5411",
    "5812",
    "5814",
    "5912",
    "4111",
    "5541",
    "5999",
    "7011",
    "4814",
    "6011",
    "5311",
    "5732",
    "4121",
]
_MERCHANTS = [
    "Whole Foods Market",
    "Starbucks #1042",
    "Shell Oil 5541",
    "Amazon Marketplace",
    "Uber *Trip",
    "Lidl",
    "Tesco Stores, Ltd.",
    'Joe\'s "Best" Pizza',
    "Café Müller",
    "Łódź Market",
    "Smith, Jones & Co",
    "Hotel Zürich AG",
    "Netflix.com",
    "CVS/pharmacy",
    "Apple Store, 5th Ave",
    "Deutsche Bahn",
    'Ristorante "Da Mario", Roma',
    "7-Eleven",
    "IKEA",
    "Boulangerie Paul",
]
_DESCRIPTIONS = [
    "Card payment",
    "Groceries, weekly",
    'Refund for order "A-1182"',
    "Monthly fee",
    "Salary, March",
    "Transfer to savings",
    "Dinner with client, 4 people",
    "ATM withdrawal",
    "Subscription renewal",
    "Fuel",
    "Taxi ride; airport",
    "Paiement par carte, Paris",
    "Überweisung an Vermieter",
    'Invoice 2291, "urgent"',
    "Split bill\nsee attached note",
    "Line one\nline two, with comma",
    "",
]
_OFFSETS = ["Z", "Z", "Z", "+00:00", "+01:00", "+02:00", "-05:00", "-08:00", "+05:30"]

_BAD_VALUES = {
    "bad_id": ["txn 001", "txn#42", "x" * 65, "ÄBC-1", ""],
    "impossible_date": ["2024-02-30", "2023-02-29", "2024-04-31", "2024-13-01", "2024-00-10", "2024-1-05"],
    "bad_timestamp": ["2024-03-01T12:34:56", "2024-03-01 25:00:00Z", "yesterday", "2024-02-30T10:00:00Z"],
    "bad_amount": ["12.345", "1e5", "12,50", " 5", "1.234.56", "12345678901234567.00", "--3", "abc", "+7"],
    "unknown_currency": ["XYZ", "usd", "EURO", "US$", "ABC", "ZWL"],
    "bad_enum": ["PAYMENT", "debit", "WITHDRAWAL", "Credit"],
    "bad_mcc": ["54A1", "123", "12345", "MCC1"],
}


@dataclass
class GenStats:
    """What was written: exact counts (the validator's expected result)."""

    rows: int = 0
    bad_rows: int = 0
    bad_by_kind: dict[str, int] = field(default_factory=dict)
    bytes_written: int = 0  # uncompressed CSV bytes, header included
    lines: int = 0  # physical lines, header included
    header: str = ""
    seed: int = 0
    business_day: str = ""  # the file's day (YYYY-MM-DD)
    late_rows: int = 0  # rows dated before the previous business day
    duplicate_ids: int = 0  # valid rows whose transaction id repeats an earlier valid row's

    @property
    def valid_rows(self) -> int:
        return self.rows - self.bad_rows


def csv_escape(value: str, delimiter: str = ",") -> str:
    """RFC 4180 quoting: quote when needed, double embedded quotes."""
    if any(c in value for c in (delimiter, '"', "\n", "\r")) or value != value.strip(" "):
        return '"' + value.replace('"', '""') + '"'
    return value


def _pool(values: list[str], delimiter: str) -> pa.Array:
    return pa.array([csv_escape(v, delimiter) for v in values], pa.string())


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _uuids(rng: np.random.Generator, n: int) -> pa.Array:
    """n UUID-4-looking ids, built as one fixed-width byte matrix (no per-row Python)."""
    raw = rng.integers(0, 16, size=(n, 32), dtype=np.uint8)
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    cols = [i for i in range(36) if i not in (8, 13, 18, 23)]
    out[:, cols] = _HEX[raw]
    out[:, 14] = ord("4")
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(36), n, [None, pa.py_buffer(out.tobytes())])
    return fixed.cast(pa.binary()).cast(pa.string())


def _amounts(rng: np.random.Generator, types: np.ndarray) -> pa.Array:
    """Lognormal amounts with exactly 2 decimals; DEBIT and FEE negative. Built from integer cents."""
    cents = np.maximum(1, np.round(rng.lognormal(mean=7.8, sigma=1.3, size=len(types)))).astype(np.int64)
    cents = np.minimum(cents, 99_999_999_99)
    neg = (types == 0) | (types == 2)
    whole = pa.array(cents // 100).cast(pa.string())
    frac = pc.utf8_lpad(pa.array(cents % 100).cast(pa.string()), 2, "0")
    s = pc.binary_join_element_wise(whole, frac, ".")
    return pc.if_else(pa.array(neg), pc.binary_join_element_wise("-", s, ""), s)


DEFAULT_BUSINESS_DAY = datetime.date(2025, 6, 3)  # a Tuesday
DEFAULT_LATE_SHARE = 0.02


def previous_business_day(day: datetime.date) -> datetime.date:
    return datetime.date.fromisoformat(str(np.busday_offset(np.datetime64(day, "D"), -1, roll="backward")))


def business_days(start: datetime.date, count: int) -> list[datetime.date]:
    """``count`` consecutive business days (Mon-Fri) from ``start`` (rolled forward)."""
    first = np.busday_offset(np.datetime64(start, "D"), 0, roll="forward")
    return [datetime.date.fromisoformat(str(np.busday_offset(first, i))) for i in range(count)]


class _Gen:
    def __init__(
        self,
        schema: Schema,
        seed: int,
        bad_share: float,
        crlf: bool,
        business_day: datetime.date = DEFAULT_BUSINESS_DAY,
        late_share: float = DEFAULT_LATE_SHARE,
        duplicate_share: float = 0.0,
    ):
        self.schema = schema
        self.late_share = late_share
        self.duplicate_share = duplicate_share
        if np.is_busday(np.datetime64(business_day, "D")):
            self.day = np.datetime64(business_day, "D").astype(np.int64)
        else:
            raise ValueError(f"{business_day} is not a business day (Mon-Fri)")
        prev = np.datetime64(previous_business_day(business_day), "D").astype(np.int64)
        # The window a daily file covers: the previous business day up to the day before the file.
        self.window = np.arange(prev, self.day, dtype=np.int64)
        # Late rows: 2..10 business days before the previous business day.
        self.late_days = np.array(
            [np.busday_offset(np.datetime64(int(prev), "D"), -k).astype(np.int64) for k in range(1, 10)]
        )
        self.rng = np.random.default_rng(seed)
        self.bad_share = bad_share
        self.delim = schema.delimiter
        self.eol = "\r\n" if crlf else "\n"
        d = self.delim
        self.currency = _pool(_CURRENCIES, d)
        self.currency_w = np.array(_CURRENCY_W) / sum(_CURRENCY_W)
        self.types = _pool(_TYPES, d)
        self.mcc = _pool(_MCC, d)
        self.merchants = _pool(_MERCHANTS, d)
        self.descriptions = _pool(_DESCRIPTIONS, d)
        self.offsets = pa.array(_OFFSETS)
        self.bad = {k: _pool(v, d) for k, v in _BAD_VALUES.items()}
        self.accounts = pa.array(
            [f"ACC{n:010d}" for n in self.rng.integers(10**9, 10**10 - 1, size=4000)], pa.string()
        )
        self.late_rows = 0
        self.duplicate_ids = 0
        self.kind_idx = {k: i for i, k in enumerate(BAD_KINDS)}

    def batch(self, n: int) -> tuple[pa.Array, np.ndarray]:
        """n records as CSV lines (each with its terminator) and each row's bad kind (-1 = good)."""
        rng = self.rng
        types = rng.choice(len(_TYPES), size=n, p=_TYPE_W)
        cols: dict[str, pa.Array] = {}
        cols["transaction_id"] = _uuids(rng, n)
        acct = np.minimum(rng.zipf(1.3, size=n) - 1, len(self.accounts) - 1)
        cols["account_id"] = self.accounts.take(pa.array(acct))
        late = rng.random(n) < self.late_share
        days = np.where(
            late,
            self.late_days[rng.integers(0, len(self.late_days), size=n)],
            self.window[rng.integers(0, len(self.window), size=n)],
        )
        self.late_rows += int(late.sum())
        cols["transaction_date"] = pa.array(days.astype("datetime64[D]")).cast(pa.string())
        # Posted (local wall clock) between the transaction's day and the file's day, 06:00.
        span = (self.day - days) * 86400 + 6 * 3600
        secs = days * 86400 + (rng.random(n) * span).astype(np.int64)
        ts = pc.strftime(pa.array(secs.astype("datetime64[s]")), format="%Y-%m-%dT%H:%M:%S")
        off = self.offsets.take(pa.array(rng.integers(0, len(_OFFSETS), size=n)))
        posted = pc.binary_join_element_wise(ts, off, "")
        cols["posted_at"] = pc.if_else(pa.array(rng.random(n) < 0.06), "", posted)
        cols["amount"] = _amounts(rng, types)
        cols["currency"] = self.currency.take(
            pa.array(rng.choice(len(_CURRENCIES), size=n, p=self.currency_w))
        )
        cols["transaction_type"] = self.types.take(pa.array(types))
        has_merchant = (types == 0) | (types == 3)
        merch = self.merchants.take(pa.array(rng.integers(0, len(_MERCHANTS), size=n)))
        cols["merchant_name"] = pc.if_else(pa.array(has_merchant), merch, "")
        mcc = self.mcc.take(pa.array(rng.integers(0, len(_MCC), size=n)))
        cols["merchant_category_code"] = pc.if_else(pa.array(has_merchant), mcc, "")
        # Embedded newlines are rarer than the pool suggests: damp them to ~1% of rows.
        didx = rng.integers(0, len(_DESCRIPTIONS), size=n)
        nl = np.isin(didx, [i for i, v in enumerate(_DESCRIPTIONS) if "\n" in v])
        didx[nl & (rng.random(n) > 0.1)] = 0
        cols["description"] = self.descriptions.take(pa.array(didx))

        kinds = np.full(n, -1, dtype=np.int64)
        n_bad = round(n * self.bad_share)
        if n_bad:
            where = rng.choice(n, size=n_bad, replace=False)
            kinds[where] = rng.integers(0, len(BAD_KINDS), size=n_bad)
            for kind, values in self.bad.items():
                sel = kinds == self.kind_idx[kind]
                if not sel.any():
                    continue
                col = "account_id" if kind == "missing_account" else BAD_KIND_COLUMN[kind]
                bad_vals = values.take(pa.array(rng.integers(0, len(values), size=n)))
                cols[col] = pc.if_else(pa.array(sel), bad_vals, cols[col])
            sel = kinds == self.kind_idx["missing_account"]
            cols["account_id"] = pc.if_else(pa.array(sel), "", cols["account_id"])

        ordered = []
        for src in self.schema.source_columns:
            target = self.schema.column_mapping.get(src)
            if target is None:  # an extra partner column (e.g. acme_bank's BranchCode)
                ordered.append(pa.array(np.char.add("BR", rng.integers(100, 999, size=n).astype(str))))
            else:
                ordered.append(cols[target])
        ragged = kinds == self.kind_idx["ragged_row"]
        if ragged.any():
            # Half the ragged rows lose their last field, half get one more.
            short = ragged & (rng.random(n) < 0.5)
            ordered[-1] = pc.if_else(pa.array(short), pa.nulls(n, pa.string()), ordered[-1])
            extra = pc.binary_join_element_wise(ordered[-1], "EXTRA", self.delim)
            ordered[-1] = pc.if_else(pa.array(ragged & ~short), extra, ordered[-1])
        if self.duplicate_share > 0:
            self._repeat_ids(ordered, kinds, n)
        line = pc.binary_join_element_wise(*ordered, self.delim, null_handling="skip")
        return pc.binary_join_element_wise(line, "", self.eol), kinds

    def _repeat_ids(self, ordered: list[pa.Array], kinds: np.ndarray, n: int) -> None:
        """Give ``duplicate_share`` of the good rows the id of an earlier good row."""
        try:
            pos = [self.schema.column_mapping.get(c) for c in self.schema.source_columns].index(
                "transaction_id"
            )
        except ValueError:
            return
        good = np.flatnonzero(kinds == -1)
        n_dup = min(round(n * self.duplicate_share), max(0, len(good) - 1))
        if n_dup <= 0:
            return
        targets = np.sort(self.rng.choice(good[1:], size=n_dup, replace=False))
        # source: a good row before the target (index into ``good`` below the target's)
        rank = np.searchsorted(good, targets)
        sources = good[(self.rng.random(n_dup) * rank).astype(np.int64)]
        idx = np.arange(n)
        idx[targets] = sources
        # A source may itself be a target: follow it to the original (sources precede targets).
        idx = idx[idx]
        while not np.array_equal(idx, idx[idx]):
            idx = idx[idx]
        ordered[pos] = ordered[pos].take(pa.array(idx))
        self.duplicate_ids += n_dup


def _contiguous(lines: pa.Array) -> memoryview:
    """The bytes of a null-free string array's values, back to back (its data buffer)."""
    lines = lines.cast(pa.large_string()) if lines.type != pa.large_string() else lines
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
    return memoryview(lines.buffers()[2])[offsets[0] : offsets[-1]]


def generate_csv(
    out: str | os.PathLike[str] | BinaryIO,
    size_bytes: int | None = None,
    rows: int | None = None,
    seed: int = 0,
    bad_row_share: float = 0.005,
    schema: str | Schema = "default",
    crlf: bool = False,
    gzip: bool = False,
    batch_rows: int = 50_000,
    business_day: datetime.date = DEFAULT_BUSINESS_DAY,
    late_share: float = DEFAULT_LATE_SHARE,
    duplicate_id_share: float = 0.0,
) -> GenStats:
    """Write a CSV of ``rows`` records or of about ``size_bytes`` bytes (uncompressed, whole rows).

    ``out`` is a path or a binary stream. Same arguments -> byte-identical output (gzip with
    mtime 0). Returns exact counts, including bad rows by kind. The file is the daily file of
    ``business_day`` (see the module doc); ``duplicate_id_share`` of the rows repeat an earlier
    valid row's id (the validator rejects exactly ``bad_rows + duplicate_ids`` rows).
    """
    if (size_bytes is None) == (rows is None):
        raise ValueError("give exactly one of size_bytes or rows")
    if not 0 <= bad_row_share <= 1:
        raise ValueError("bad_row_share must be within [0, 1]")
    sch = load_schema(schema) if isinstance(schema, str) else schema
    if not 0 <= late_share <= 1 or not 0 <= duplicate_id_share < 1:
        raise ValueError("late_share must be within [0, 1] and duplicate_id_share within [0, 1)")
    gen = _Gen(sch, seed, bad_row_share, crlf, business_day, late_share, duplicate_id_share)
    header = sch.delimiter.join(csv_escape(c, sch.delimiter) for c in sch.source_columns)
    stats = GenStats(
        header=header, seed=seed, bad_by_kind=dict.fromkeys(BAD_KINDS, 0), business_day=str(business_day)
    )

    own = not hasattr(out, "write")
    raw: BinaryIO = open(out, "wb") if own else out  # type: ignore[arg-type, assignment]  # noqa: SIM115
    sink: BinaryIO = gzip_mod.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) if gzip else raw  # type: ignore[assignment]
    try:
        head = (header + gen.eol).encode("utf-8")
        sink.write(head)
        stats.bytes_written = len(head)
        stats.lines = 1
        while True:
            if rows is not None:
                n = min(batch_rows, rows - stats.rows)
            else:
                assert size_bytes is not None
                left = size_bytes - stats.bytes_written
                n = batch_rows if left > 0 else 0
            if n <= 0:
                break
            lines, kinds = gen.batch(n)
            if size_bytes is not None:
                lengths = pc.binary_length(lines).to_numpy()
                fit = int(np.searchsorted(np.cumsum(lengths), size_bytes - stats.bytes_written, side="right"))
                if fit < n:  # last batch: keep the rows that fit, at least one
                    fit = max(fit, 1) if stats.rows == 0 else fit
                    if fit == 0:
                        break
                    lines, kinds = lines.slice(0, fit), kinds[:fit]
                    n = fit
            buf = _contiguous(lines)
            sink.write(buf)
            stats.rows += n
            stats.bytes_written += len(buf)
            stats.lines += int(pc.sum(pc.count_substring(lines, "\n")).as_py() or 0)
            for i, kind in enumerate(BAD_KINDS):
                stats.bad_by_kind[kind] += int((kinds == i).sum())
            if size_bytes is not None and stats.bytes_written >= size_bytes:
                break
    finally:
        if gzip:
            sink.close()
        if own:
            raw.close()
    stats.bad_rows = sum(stats.bad_by_kind.values())
    stats.late_rows = gen.late_rows
    stats.duplicate_ids = gen.duplicate_ids
    return stats


def generate_daily_files(
    out_dir: str | os.PathLike[str],
    days: int,
    partner: str = "default",
    start_date: datetime.date = datetime.date(2026, 1, 5),
    seed: int = 0,
    rows: int = 20_000,
    bad_row_share: float = 0.005,
    late_share: float = DEFAULT_LATE_SHARE,
    duplicate_id_share: float = 0.0,
    gzip: bool = False,
    schema: str | Schema = "default",
) -> list[tuple[Path, GenStats]]:
    """``days`` consecutive daily files (business days from ``start_date``) named
    ``<partner>_<YYYY-MM-DD>.csv[.gz]`` in ``out_dir``; file ``i`` uses seed ``seed * 1000 + i``
    (deterministic, distinct files). Returns each path with its stats."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for i, day in enumerate(business_days(start_date, days)):
        path = out / f"{partner}_{day.isoformat()}.csv{'.gz' if gzip else ''}"
        stats = generate_csv(
            path,
            rows=rows,
            seed=seed * 1000 + i,
            bad_row_share=bad_row_share,
            schema=schema,
            gzip=gzip,
            business_day=day,
            late_share=late_share,
            duplicate_id_share=duplicate_id_share,
        )
        made.append((path, stats))
    return made


def generate_bytes(**kwargs) -> tuple[bytes, GenStats]:
    """:func:`generate_csv` into memory (tests)."""
    buf = io.BytesIO()
    stats = generate_csv(buf, **kwargs)
    return buf.getvalue(), stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m etl_local.datagen", description=__doc__.splitlines()[0])
    p.add_argument("out", help="output path (.csv, or .csv.gz with --gzip); a directory with --days")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--size-mb", type=float, help="approximate uncompressed size in MiB")
    g.add_argument("--rows", type=int, help="exact number of data rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bad-share", type=float, default=0.005, help="share of intentionally bad rows")
    p.add_argument("--schema", default="default", help="partner schema name (etl/schemas/<name>.json)")
    p.add_argument("--crlf", action="store_true", help="CRLF line terminators")
    p.add_argument("--gzip", action="store_true", help="gzip the output")
    p.add_argument("--business-day", type=datetime.date.fromisoformat, default=DEFAULT_BUSINESS_DAY)
    p.add_argument("--late-share", type=float, default=DEFAULT_LATE_SHARE, help="share of late rows")
    p.add_argument("--duplicate-share", type=float, default=0.0, help="share of repeated ids")
    p.add_argument("--days", type=int, help="write this many consecutive daily files into OUT")
    p.add_argument("--start", type=datetime.date.fromisoformat, default=datetime.date(2026, 1, 5))
    p.add_argument("--partner", default="default", help="partner (file names) for --days")
    a = p.parse_args(argv)
    if a.days:
        if a.rows is None:
            p.error("--days needs --rows")
        made = generate_daily_files(
            a.out,
            a.days,
            partner=a.partner,
            start_date=a.start,
            seed=a.seed,
            rows=a.rows,
            bad_row_share=a.bad_share,
            late_share=a.late_share,
            duplicate_id_share=a.duplicate_share,
            gzip=a.gzip,
            schema=a.schema,
        )
        json.dump([{"path": str(path), **asdict(st)} for path, st in made], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    stats = generate_csv(
        a.out,
        size_bytes=int(a.size_mb * 1024 * 1024) if a.size_mb is not None else None,
        rows=a.rows,
        seed=a.seed,
        bad_row_share=a.bad_share,
        schema=a.schema,
        crlf=a.crlf,
        gzip=a.gzip,
        business_day=a.business_day,
        late_share=a.late_share,
        duplicate_id_share=a.duplicate_share,
    )
    d = asdict(stats)
    d["valid_rows"] = stats.valid_rows
    json.dump(d, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
