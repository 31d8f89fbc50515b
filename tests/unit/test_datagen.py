"""etl_local.datagen: seeded, exact counts, realistic shapes, CLI."""

from __future__ import annotations

import csv
import datetime
import gzip
import io
import json
import re
import subprocess
import sys
from collections import Counter

import pyarrow as pa
import pyarrow.csv as pacsv

from etl.core.process import ChunkResult
from etl.core.process import process_chunk as _process_chunk
from etl.core.schema import load_schema
from etl_local.datagen import BAD_KINDS, generate_bytes, generate_csv, generate_daily_files


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


# ---- DATA3: realistic daily files (the csv module is the oracle) ---------------------------


def _records(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def _posted_local_date(value: str) -> datetime.date:
    return datetime.date.fromisoformat(value[:10])


def test_DATA3_daily_file_dates_mostly_previous_business_days_few_late():
    monday = datetime.date(2026, 3, 2)
    data, stats = generate_bytes(rows=20000, seed=5, bad_row_share=0.0, business_day=monday, late_share=0.03)
    rows = _records(data)
    dates = Counter(datetime.date.fromisoformat(r["transaction_date"]) for r in rows)
    window = {datetime.date(2026, 2, 27), datetime.date(2026, 2, 28), datetime.date(2026, 3, 1)}  # Fri-Sun
    in_window = sum(n for d, n in dates.items() if d in window)
    late = sum(n for d, n in dates.items() if d < datetime.date(2026, 2, 27))
    assert in_window + late == len(rows) == 20000  # nothing on or after the file's day
    assert all(dates[d] > 5000 for d in window)  # every day of the window is well represented
    assert 0.02 < late / len(rows) < 0.04 and late == stats.late_rows
    # late rows are business days, at most 10 business days back
    assert all(d.weekday() < 5 and d >= datetime.date(2026, 2, 13) for d in dates if d not in window)
    # posted_at lies between the transaction date and the file's day
    for r in rows:
        if r["posted_at"]:
            posted = _posted_local_date(r["posted_at"])
            assert datetime.date.fromisoformat(r["transaction_date"]) <= posted <= monday, r


def test_DATA3_midweek_file_covers_one_day_and_is_valid():
    wednesday = datetime.date(2026, 3, 4)
    data, stats = generate_bytes(rows=5000, seed=6, bad_row_share=0.0, business_day=wednesday)
    dates = Counter(r["transaction_date"] for r in _records(data))
    assert dates.most_common(1)[0] == ("2026-03-03", 5000 - stats.late_rows)
    assert process_chunk(data, load_schema("default"), 2).rows_rejected == 0


def test_DATA3_weekend_day_is_refused():
    import pytest

    with pytest.raises(ValueError, match="not a business day"):
        generate_bytes(rows=10, business_day=datetime.date(2026, 3, 7))


def test_DATA3_bad_rows_kept_and_duplicate_ids_exact():
    data, stats = generate_bytes(rows=10000, seed=9, bad_row_share=0.01, duplicate_id_share=0.02)
    assert stats.bad_rows == 100 and stats.duplicate_ids == 200 and all(stats.bad_by_kind.values())
    rows = _records(data)
    # oracle: later occurrences of a well-formed id (bad_id rows reuse a few malformed values)
    ids = [r["transaction_id"] for r in rows if re.fullmatch(r"[0-9a-f-]{36}", r["transaction_id"])]
    seen, repeats = set(), 0
    for i in ids:
        repeats += i in seen
        seen.add(i)
    assert repeats == 200
    r = process_chunk(data, load_schema("default"), 2)
    assert r.rows_rejected == stats.bad_rows + stats.duplicate_ids
    assert sum(1 for x in r.rejects if "(duplicate)" in x[2]) == 200


def test_DATA3_consecutive_daily_files_are_deterministic(tmp_path):
    made = generate_daily_files(
        tmp_path / "a", days=7, partner="acme", start_date=datetime.date(2026, 3, 6), seed=3, rows=300
    )
    again = generate_daily_files(
        tmp_path / "b", days=7, partner="acme", start_date=datetime.date(2026, 3, 6), seed=3, rows=300
    )
    names = [p.name for p, _ in made]
    assert names[:3] == ["acme_2026-03-06.csv", "acme_2026-03-09.csv", "acme_2026-03-10.csv"]
    assert len(set(names)) == 7
    assert [p.read_bytes() for p, _ in made] == [p.read_bytes() for p, _ in again]
    assert len({p.read_bytes() for p, _ in made}) == 7
    for path, st in made:
        day = datetime.date.fromisoformat(path.stem.split("_")[1])
        assert st.business_day == day.isoformat()
        dates = {datetime.date.fromisoformat(r["transaction_date"]) for r in _records(path.read_bytes())}
        assert max(dates) == day - datetime.timedelta(days=1)  # the file is for the day before


def test_DATA3_cli_days(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "etl_local.datagen",
            str(tmp_path),
            "--days",
            "3",
            "--rows",
            "50",
            "--seed",
            "1",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    listed = json.loads(out.stdout)
    assert [e["business_day"] for e in listed] == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "default_2026-01-05.csv",
        "default_2026-01-06.csv",
        "default_2026-01-07.csv",
    ]
