"""Seeded generator of realistic partner transaction CSV files (test data, demo, benchmarks).

Values are drawn with numpy and assembled column-wise with pyarrow compute (no per-row Python),
so 200 MB takes a few seconds. A known share of rows is made bad on purpose, exactly one defect
per bad row, and the returned :class:`GenStats` counts them by kind: the validator must reject
exactly ``stats.bad_rows`` rows, each for the column :data:`BAD_KIND_COLUMN` names.

CLI: ``python -m etl_local.datagen OUT --size-mb N --seed S --bad-share X [--crlf] [--gzip]``
"""

from __future__ import annotations

import argparse
import gzip as gzip_mod
import io
import json
import os
import sys
from dataclasses import asdict, dataclass, field
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


class _Gen:
    def __init__(self, schema: Schema, seed: int, bad_share: float, crlf: bool):
        self.schema = schema
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
        self.day0 = np.datetime64("2025-01-01", "D").astype(np.int64)
        self.kind_idx = {k: i for i, k in enumerate(BAD_KINDS)}

    def batch(self, n: int) -> tuple[pa.Array, np.ndarray]:
        """n records as CSV lines (each with its terminator) and each row's bad kind (-1 = good)."""
        rng = self.rng
        types = rng.choice(len(_TYPES), size=n, p=_TYPE_W)
        cols: dict[str, pa.Array] = {}
        cols["transaction_id"] = _uuids(rng, n)
        acct = np.minimum(rng.zipf(1.3, size=n) - 1, len(self.accounts) - 1)
        cols["account_id"] = self.accounts.take(pa.array(acct))
        days = self.day0 + rng.integers(0, 365, size=n)
        cols["transaction_date"] = pa.array(days.astype("datetime64[D]")).cast(pa.string())
        secs = days * 86400 + rng.integers(0, 3 * 86400, size=n)
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
        line = pc.binary_join_element_wise(*ordered, self.delim, null_handling="skip")
        return pc.binary_join_element_wise(line, "", self.eol), kinds


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
) -> GenStats:
    """Write a CSV of ``rows`` records or of about ``size_bytes`` bytes (uncompressed, whole rows).

    ``out`` is a path or a binary stream. Same arguments -> byte-identical output (gzip with
    mtime 0). Returns exact counts, including bad rows by kind.
    """
    if (size_bytes is None) == (rows is None):
        raise ValueError("give exactly one of size_bytes or rows")
    if not 0 <= bad_row_share <= 1:
        raise ValueError("bad_row_share must be within [0, 1]")
    sch = load_schema(schema) if isinstance(schema, str) else schema
    gen = _Gen(sch, seed, bad_row_share, crlf)
    header = sch.delimiter.join(csv_escape(c, sch.delimiter) for c in sch.source_columns)
    stats = GenStats(header=header, seed=seed, bad_by_kind=dict.fromkeys(BAD_KINDS, 0))

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
    return stats


def generate_bytes(**kwargs) -> tuple[bytes, GenStats]:
    """:func:`generate_csv` into memory (tests)."""
    buf = io.BytesIO()
    stats = generate_csv(buf, **kwargs)
    return buf.getvalue(), stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m etl_local.datagen", description=__doc__.splitlines()[0])
    p.add_argument("out", help="output path (.csv, or .csv.gz with --gzip)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--size-mb", type=float, help="approximate uncompressed size in MiB")
    g.add_argument("--rows", type=int, help="exact number of data rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bad-share", type=float, default=0.005, help="share of intentionally bad rows")
    p.add_argument("--schema", default="default", help="partner schema name (etl/schemas/<name>.json)")
    p.add_argument("--crlf", action="store_true", help="CRLF line terminators")
    p.add_argument("--gzip", action="store_true", help="gzip the output")
    a = p.parse_args(argv)
    stats = generate_csv(
        a.out,
        size_bytes=int(a.size_mb * 1024 * 1024) if a.size_mb is not None else None,
        rows=a.rows,
        seed=a.seed,
        bad_row_share=a.bad_share,
        schema=a.schema,
        crlf=a.crlf,
        gzip=a.gzip,
    )
    d = asdict(stats)
    d["valid_rows"] = stats.valid_rows
    json.dump(d, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
