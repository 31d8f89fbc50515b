"""etl_local.datagen: seeded, exact counts, realistic shapes, CLI."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.csv as pacsv

from etl.core.process import ChunkResult
from etl.core.process import process_chunk as _process_chunk
from etl.core.schema import load_schema
from etl_local.datagen import BAD_KINDS, generate_bytes, generate_csv


def process_chunk(data: bytes, schema, first_line: int) -> ChunkResult:
    """process_chunk plus the conservation invariant, checked on every result here."""
    r = _process_chunk(data, schema, first_line)
    assert r.rows_in == r.rows_valid + r.rows_rejected == r.valid_table.num_rows + len(r.rejects)
    return r


def test_same_seed_same_bytes_other_seed_other_bytes():
    a, sa = generate_bytes(rows=500, seed=1)
    b, _ = generate_bytes(rows=500, seed=1)
    c, _ = generate_bytes(rows=500, seed=2)
    assert a == b and a != c
    assert sa.rows == 500 and sa.bytes_written == len(a) and sa.lines == a.count(b"\n")


def test_exact_bad_rows_by_kind_and_all_kinds_present():
    data, stats = generate_bytes(rows=20000, seed=4, bad_row_share=0.01)
    assert stats.bad_rows == 200 == sum(stats.bad_by_kind.values())
    assert set(stats.bad_by_kind) == set(BAD_KINDS) and all(stats.bad_by_kind.values())
    r = process_chunk(data, load_schema("default"), 2)
    assert (r.rows_in, r.rows_rejected) == (stats.rows, stats.bad_rows)


def test_clean_file_has_no_rejects_and_realistic_values():
    data, stats = generate_bytes(rows=5000, seed=8, bad_row_share=0.0)
    assert stats.bad_rows == 0
    r = process_chunk(data, load_schema("default"), 2)
    assert r.rows_rejected == 0 and r.rows_valid == 5000
    t = r.valid_table
    types = t.column("transaction_type").to_pylist()
    amounts = t.column("amount").to_pylist()
    assert len(amounts) == len(types)
    assert all(a < 0 for a, ty in zip(amounts, types) if ty in ("DEBIT", "FEE"))
    assert all(a > 0 for a, ty in zip(amounts, types) if ty == "CREDIT")
    cur = t.column("currency").to_pylist()
    assert cur.count("USD") > cur.count("EUR") > cur.count("GBP") > 0
    desc = t.column("description").to_pylist()
    assert any("\n" in (d or "") for d in desc) and any("," in (d or "") for d in desc)
    assert any('"' in (d or "") for d in desc)
    assert stats.lines > stats.rows + 1  # embedded newlines


def test_size_mode_crlf_gzip_and_partner_schema(tmp_path):
    out = tmp_path / "f.csv.gz"
    stats = generate_csv(str(out), size_bytes=300_000, seed=3, crlf=True, gzip=True, schema="acme_bank")
    raw = gzip.decompress(out.read_bytes())
    assert len(raw) == stats.bytes_written and abs(len(raw) - 300_000) < 2000  # whole rows
    assert raw.startswith(b"TxnRef;AccountNo;") and b"\r\n" in raw
    r = process_chunk(raw, load_schema("acme_bank"), 2)
    assert (r.rows_in, r.rows_rejected) == (stats.rows, stats.bad_rows)
    # gzip output is deterministic too (mtime 0)
    again = tmp_path / "g.csv.gz"
    generate_csv(str(again), size_bytes=300_000, seed=3, crlf=True, gzip=True, schema="acme_bank")
    assert again.read_bytes() == out.read_bytes()


def test_output_is_rfc4180_for_pyarrow():
    data, stats = generate_bytes(rows=2000, seed=6, bad_row_share=0.0)
    t = pacsv.read_csv(
        io.BytesIO(data),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types={"amount": pa.string()}),
    )
    assert t.num_rows == stats.rows


def test_cli(tmp_path):
    out = tmp_path / "c.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "etl_local.datagen",
            str(out),
            "--rows",
            "300",
            "--seed",
            "2",
            "--bad-share",
            "0.1",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    stats = json.loads(proc.stdout)
    assert stats["rows"] == 300 and stats["bad_rows"] == 30 and out.stat().st_size == stats["bytes_written"]
