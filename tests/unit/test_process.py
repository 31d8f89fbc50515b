"""etl.core.process.process_chunk: every rule, line numbers, outputs, conservation."""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import sys
from datetime import date
from decimal import Decimal, InvalidOperation

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.core.process import RECORD_COLUMN, ChunkResult, process_chunk
from etl.core.schema import load_schema
from etl.errors import MalformedCsv, SchemaMismatch
from etl_local.datagen import BAD_KIND_COLUMN, csv_escape, generate_bytes

SCHEMA = load_schema("default")
HEADER = ",".join(SCHEMA.source_columns)
GOOD = {
    "transaction_id": "tx-0001",
    "account_id": "ACC1",
    "transaction_date": "2024-02-29",
    "posted_at": "2024-03-01T12:34:56Z",
    "amount": "-12.50",
    "currency": "EUR",
    "transaction_type": "DEBIT",
    "merchant_name": 'Café, "Bar"',
    "merchant_category_code": "5812",
    "description": "line one\nline two",
}


def row(**over: str) -> str:
    vals = dict(GOOD, **over)
    return ",".join(csv_escape(vals[c]) for c in SCHEMA.source_columns)


def chunk(*rows: str, header: str = HEADER, eol: str = "\n", bom: bool = False) -> bytes:
    text = eol.join([header, *rows]) + eol
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


def assert_conserved(r: ChunkResult) -> ChunkResult:
    """The invariant every result must meet, checked from the outputs themselves."""
    assert r.rows_in == r.rows_valid + r.rows_rejected
    assert r.valid_table.num_rows == r.rows_valid
    assert pq.read_table(io.BytesIO(r.parquet)).num_rows == r.rows_valid
    rej = list(csv.reader(io.StringIO(r.rejects_csv.decode("utf-8"))))
    assert rej[0] == ["line", "column", "reason", "record", "rule"]
    assert [row[4] for row in rej[1:]] == [e[2] for e in r.reject_entries]  # UX8: the stable code
    assert len(rej) - 1 == r.rows_rejected == len(r.rejects)
    assert sum(r.rejects_by_column.values()) == r.rows_rejected
    return r


def run(data: bytes, first_line: int = 2, schema=SCHEMA) -> ChunkResult:
    return assert_conserved(process_chunk(data, schema, first_line))


def only_reject(r: ChunkResult) -> tuple[int, str, str, str]:
    assert r.rows_rejected == 1, r.rejects
    return r.rejects[0]


# ---------------------------------------------------------------- happy path and types


def test_valid_rows_typed_output():
    r = run(chunk(row(), row(transaction_id="tx-2", amount="7", posted_at="", merchant_name="")))
    assert (r.rows_in, r.rows_valid, r.rows_rejected) == (2, 2, 0)
    t = r.valid_table
    assert t.schema.field("transaction_date").type == pa.date32()
    assert t.schema.field("posted_at").type == pa.timestamp("us", tz="UTC")
    assert t.schema.field("amount").type == pa.decimal128(18, 2)
    rows = t.to_pylist()
    assert rows[0]["amount"] == Decimal("-12.50")
    assert rows[1]["amount"] == Decimal("7.00")
    assert rows[0]["description"] == "line one\nline two"
    assert rows[0]["merchant_name"] == 'Café, "Bar"'
    assert rows[1]["posted_at"] is None and rows[1]["merchant_name"] is None  # empty optional -> null
    assert r.rejects_csv == b"line,column,reason,record,rule\n"


def test_parquet_round_trip_decimals_exact():
    amounts = [
        "0.01",
        "-0.01",
        "12345678901234.56",
        "-9999999999999999.99",
        "9999999999999999.99",
        "42",
        "1.5",
    ]
    r = run(chunk(*[row(transaction_id=f"t{i}", amount=a) for i, a in enumerate(amounts)]))
    back = pq.read_table(io.BytesIO(r.parquet))
    assert back.schema.field("amount").type == pa.decimal128(18, 2)
    assert back.column("amount").to_pylist() == [Decimal(a).quantize(Decimal("0.01")) for a in amounts]
    assert back.schema.metadata[b"etl.schema_id"] == b"transactions_v1"


def test_parquet_is_snappy_and_deterministic():
    data, _ = generate_bytes(rows=3000, seed=11, bad_row_share=0.01)
    a, b = run(data), run(data)
    assert a.parquet == b.parquet and a.rejects_csv == b.rejects_csv
    meta = pq.ParquetFile(io.BytesIO(a.parquet)).metadata
    # snappy except where it buys nothing (the unique ids and enums: tests/unit/test_output.py)
    codecs = {
        meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i).compression
        for i in range(meta.num_columns)
    }
    assert codecs["amount"] == codecs["account_id"] == "SNAPPY"


def test_timestamps_normalised_to_utc():
    r = run(
        chunk(
            row(transaction_id="a", posted_at="2024-03-01T12:34:56+02:00"),
            row(transaction_id="b", posted_at="2024-03-01 12:34:56.123456-0500"),
            row(transaction_id="c", posted_at="2024-02-29T00:00:00Z"),
        )
    )
    got = [v.isoformat() for v in r.valid_table.column("posted_at").to_pylist()]
    assert got == [
        "2024-03-01T10:34:56+00:00",
        "2024-03-01T17:34:56.123456+00:00",
        "2024-02-29T00:00:00+00:00",
    ]


# ---------------------------------------------------------------- every rule rejects


@pytest.mark.parametrize(
    "column,value,reason_part",
    [
        ("transaction_id", "", "required value is missing"),
        ("transaction_id", "tx 1", "does not match the pattern"),
        ("transaction_id", "x" * 65, "does not match the pattern"),
        ("transaction_id", "Äb", "does not match the pattern"),
        ("account_id", "", "required value is missing"),
        ("transaction_date", "", "required value is missing"),
        ("transaction_date", "2024-02-30", "not a real calendar date"),
        ("transaction_date", "2023-02-29", "not a real calendar date"),
        ("transaction_date", "2100-02-29", "not a real calendar date"),
        ("transaction_date", "2024-04-31", "not a real calendar date"),
        ("transaction_date", "2024-13-01", "not a real calendar date"),
        ("transaction_date", "2024-1-05", "YYYY-MM-DD"),
        ("transaction_date", "05/01/2024", "YYYY-MM-DD"),
        ("transaction_date", " 2024-01-05", "YYYY-MM-DD"),
        ("posted_at", "2024-03-01T12:34:56", "UTC offset"),
        ("posted_at", "2024-03-01T24:00:00Z", "UTC offset"),
        ("posted_at", "2024-02-30T10:00:00Z", "UTC offset"),
        ("posted_at", "2024-03-01T12:34:56.1234567Z", "UTC offset"),
        ("posted_at", "2024-03-01", "UTC offset"),
        ("amount", "", "required value is missing"),
        ("amount", "1e5", "not a decimal number"),
        ("amount", "1.234", "more than 2 decimals"),
        ("amount", "12,50", "not a decimal number"),
        ("amount", " 5", "not a decimal number"),
        ("amount", "+5", "not a decimal number"),
        ("amount", "5.", "not a decimal number"),
        ("amount", ".5", "not a decimal number"),
        ("amount", "NaN", "not a decimal number"),
        ("amount", "12345678901234567", "more than 16 digits before the decimal point"),
        ("amount", "12345678901234567.00", "more than 16 digits before the decimal point"),
        ("currency", "", "required value is missing"),
        ("currency", "usd", "does not match the pattern"),
        ("currency", "XYZ", "not an allowed value"),
        ("currency", "ZWL", "not an allowed value"),  # withdrawn in 2024
        ("currency", "EURO", "does not match the pattern"),
        ("transaction_type", "debit", "is not one of DEBIT, CREDIT, FEE, REFUND, TRANSFER"),
        ("transaction_type", "", "required value is missing"),
        ("merchant_category_code", "581", "does not match the pattern"),
        ("merchant_category_code", "58121", "does not match the pattern"),
        ("merchant_category_code", "５８１２", "does not match the pattern"),  # full-width digits
    ],
)
def test_rule_rejects(column, value, reason_part):
    r = run(chunk(row(), row(**{column: value}), row(transaction_id="tx-3")))
    line, col, reason, record = only_reject(r)
    assert (line, col) == (4, column)  # header 1, first row 2-3 (embedded newline), this row 4
    assert reason.startswith(column + ": ") and reason_part in reason, reason
    assert record == row(**{column: value})
    assert r.rows_valid == 2


@pytest.mark.parametrize(
    "column,value",
    [
        ("amount", "-0.01"),
        ("amount", "0"),
        ("amount", "-9999999999999999.99"),
        ("transaction_date", "2000-02-29"),
        ("transaction_date", "1999-12-31"),
        ("posted_at", ""),
        ("posted_at", "2024-03-01T12:34:56.5+05:30"),
        ("merchant_name", ""),
        ("merchant_category_code", ""),
        ("description", ""),
        ("transaction_id", "A_b-9" * 12 + "abcd"),  # 64 characters
        ("currency", "JPY"),
        ("transaction_type", "TRANSFER"),
    ],
)
def test_rule_accepts(column, value):
    r = run(chunk(row(**{column: value})))
    assert r.rows_valid == 1, r.rejects


def test_first_failing_column_is_reported():
    r = run(chunk(row(amount="abc", currency="XYZ", transaction_date="2024-02-30")))
    assert only_reject(r)[1] == "transaction_date"  # schema order: the date comes first


# ---------------------------------------------------------------- structure, line numbers


def test_ragged_rows_with_line_numbers():
    short = row(transaction_id="short").rsplit(",", 1)[0]
    data = chunk(row(), short, row(transaction_id="ok2"), row(transaction_id="long") + ",extra")
    r = run(data, first_line=10)
    # row() spans 2 lines (its description holds a newline): 10-11, short 12, ok2 13-14, long 15-16
    assert [(x[0], x[1]) for x in r.rejects] == [(12, RECORD_COLUMN), (15, RECORD_COLUMN)]
    assert r.rejects[0][2] == "expected 10 fields, found 9"
    assert r.rejects[1][2] == "expected 10 fields, found 11"
    assert r.rejects[1][3].endswith(",extra")
    assert r.rows_valid == 2


def test_line_numbers_with_quoted_newlines_and_crlf():
    multi = row(transaction_id="m", description="a\nb\nc")
    multi2 = row(transaction_id="m2", description="a\nb\nc")
    rows = [multi, row(transaction_id="bad", amount="x"), multi2, row(transaction_id="bad2", currency="ABC")]
    for eol in ("\n", "\r\n"):
        r = run(chunk(*rows, eol=eol), first_line=100)
        # multi spans 3 lines (100-102), bad 103-104 (default description has a newline),
        # multi 105-107, bad2 at 108
        assert [x[0] for x in r.rejects] == [103, 108]
        assert r.rejects[0][3] == row(transaction_id="bad", amount="x")  # no \r kept
        assert r.valid_table.column("description").to_pylist() == ["a\nb\nc", "a\nb\nc"]


def test_bom_is_skipped():
    r = run(chunk(row(), bom=True))
    assert r.rows_valid == 1


def test_blank_lines_are_not_rows():
    data = (HEADER + "\n" + row() + "\n\n" + row(transaction_id="x", amount="bad") + "\n\n").encode()
    r = run(data)
    assert r.rows_in == 2
    assert only_reject(r)[0] == 5  # row() spans lines 2-3; the blank line 4 still counts


def test_last_record_without_newline():
    data = (HEADER + "\n" + row() + "\n" + row(transaction_id="x", amount="1.999")).encode()
    r = run(data)
    assert r.rows_in == 2 and only_reject(r)[0] == 4


def test_record_larger_than_the_default_parse_block():
    # Records up to MAX_RECORD_BYTES (16 MiB) are legal; pyarrow needs each inside one block.
    big = "x\n" * (17_000_000 // 2)
    r = run(
        chunk(row(transaction_id="a"), row(transaction_id="big", description=big), row(transaction_id="c"))
    )
    assert r.rows_valid == 3
    assert len(r.valid_table.column("description")[1].as_py()) == len(big)


def test_header_only_and_empty_chunk():
    r = run(chunk())
    assert (r.rows_in, r.rows_valid) == (0, 0)
    assert pq.read_table(io.BytesIO(r.parquet)).num_rows == 0
    r = run(HEADER.encode())
    assert r.rows_in == 0


def test_unterminated_quote_is_malformed():
    data = chunk(row(), row(transaction_id="x", description="open"))
    data = data.replace(b"open", b'"open')  # the field is now unterminated
    with pytest.raises(MalformedCsv, match="unterminated quoted field"):
        process_chunk(data, SCHEMA, 2)


def test_stray_quote_inside_field_is_malformed():
    # pyarrow reads a"b as a literal quote; by RFC 4180 parity it opens a quoted region that
    # swallows the next line end: the two views of the records disagree -> MalformedCsv.
    plain = {"merchant_name": "m", "description": "d"}
    rows = [row(transaction_id=f"t{i}", **plain) for i in range(4)]
    data = chunk(*rows).replace(b",m,", b',a"b,', 1)
    data = data[::-1].replace(b",m,"[::-1], b',c"d,'[::-1], 1)[::-1]
    with pytest.raises(MalformedCsv):
        process_chunk(data, SCHEMA, 2)


def test_bare_cr_is_malformed():
    data = chunk(row(), row(transaction_id="x", merchant_name="ab")).replace(b",ab,", b",a\rb,")
    with pytest.raises(MalformedCsv, match="bare CR"):
        process_chunk(data, SCHEMA, 2)


def test_header_mismatch():
    with pytest.raises(SchemaMismatch, match="missing columns: 'amount'"):
        process_chunk(chunk(row(), header=HEADER.replace("amount", "amt")), SCHEMA, 2)
    swapped = HEADER.replace("account_id,transaction_date", "transaction_date,account_id")
    with pytest.raises(SchemaMismatch, match="out of order"):
        process_chunk(chunk(row(), header=swapped), SCHEMA, 2)


def test_invalid_utf8_rows_are_rejected_not_fatal():
    data = chunk(row(), row(transaction_id="x", merchant_name="MARK"), row(transaction_id="y"))
    data = data.replace(b"MARK", b"M\xffRK")
    r = run(data, first_line=5)
    line, col, reason, record = only_reject(r)
    assert (line, col) == (7, RECORD_COLUMN)
    assert "invalid UTF-8" in reason and "0xff" in reason
    assert "M\\xffRK" in record
    assert r.rows_valid == 2


# pyarrow cannot decode a ragged row's text for its handler and reports that as "ignored".
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_binary_garbage_fails_the_chunk():
    garbage = bytes(range(128, 256)) * 200
    data = (HEADER + "\n").encode() + garbage.replace(b'"', b"") + b"\n"
    with pytest.raises(Exception) as exc:
        process_chunk(data, SCHEMA, 2)
    assert type(exc.value).__name__ in ("InvalidEncoding", "MalformedCsv")


# ---------------------------------------------------------------- partner schema


def test_partner_schema_mapping_delimiter_and_ignored_column():
    acme = load_schema("acme_bank")
    header = ";".join(acme.source_columns)
    vals = dict(GOOD, description="x; y")
    line = ";".join(
        csv_escape(vals[acme.column_mapping[c]], ";") if c in acme.column_mapping else "BR1"
        for c in acme.source_columns
    )
    bad = line.replace("EUR", "EURO")
    r = assert_conserved(process_chunk((header + "\n" + line + "\n" + bad + "\n").encode(), acme, 2))
    assert r.valid_table.column_names == SCHEMA.target_columns  # BranchCode dropped, names mapped
    assert r.valid_table.column("description").to_pylist() == ["x; y"]
    assert only_reject(r)[1] == "Ccy"  # rejects name the partner's column


# ---------------------------------------------------------------- generated data


@pytest.mark.parametrize("crlf", [False, True])
def test_generated_file_rejects_exactly_the_bad_rows(crlf):
    data, stats = generate_bytes(rows=5000, seed=5, bad_row_share=0.02, crlf=crlf)
    r = run(data)
    assert r.rows_in == stats.rows
    assert r.rows_rejected == stats.bad_rows
    expected: dict[str, int] = {}
    for kind, n in stats.bad_by_kind.items():
        if n:
            expected[BAD_KIND_COLUMN[kind]] = expected.get(BAD_KIND_COLUMN[kind], 0) + n
    assert r.rejects_by_column == expected


def test_line_numbers_point_at_the_physical_lines():
    data, _ = generate_bytes(rows=3000, seed=9, bad_row_share=0.03)
    lines = data.decode("utf-8").split("\n")
    r = run(data)
    for line, _col, _reason, record in r.rejects:
        assert lines[line - 1] == record.split("\n")[0]


def test_chunks_of_one_file_sum_to_the_whole():
    data, stats = generate_bytes(rows=4000, seed=3, bad_row_share=0.02)
    text = data.decode("utf-8")
    header, body = text.split("\n", 1)
    cut = body.index("\n", len(body) // 2) + 1
    while body[:cut].count('"') % 2:  # move the cut past a quoted newline
        cut = body.index("\n", cut) + 1
    first = run((header + "\n" + body[:cut]).encode())
    second = run((header + "\n" + body[cut:]).encode(), first_line=2 + body[:cut].count("\n"))
    assert first.rows_in + second.rows_in == stats.rows
    assert (
        first.rows_rejected
        + second.rejects_by_column.get("*", 0)
        + sum(v for k, v in second.rejects_by_column.items() if k != "*")
        == stats.bad_rows
    )
    whole = run(data)
    assert [x[0] for x in whole.rejects] == [x[0] for x in first.rejects + second.rejects]


def _baseline():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "pandas_baseline.py")
    spec = importlib.util.spec_from_file_location("pandas_baseline", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_pandas_baseline_agrees_on_counts():
    data, stats = generate_bytes(rows=4000, seed=21, bad_row_share=0.02)
    ours = run(data)
    theirs = _baseline().process_chunk_pandas(data, SCHEMA, 2)
    assert (theirs.rows_in, theirs.rows_valid, theirs.rows_rejected) == (
        ours.rows_in,
        ours.rows_valid,
        ours.rows_rejected,
    )
    assert ours.rows_rejected == stats.bad_rows


# ---------------------------------------------------------------- properties against a Python oracle


def _oracle_amount(v: str) -> Decimal | None:
    """Python's reading of the amount rule: plain decimal, <= 16 integer digits, <= 2 decimals."""
    if not v or v.strip() != v or not all(c in "0123456789-." for c in v) or v.count("-") > 1:
        return None
    if "-" in v and not v.startswith("-"):
        return None
    whole, _, frac = v.lstrip("-").partition(".")
    if not whole or len(whole) > 16 or ("." in v and not 1 <= len(frac) <= 2):
        return None
    try:
        return Decimal(v).quantize(Decimal("0.01"))
    except InvalidOperation:
        return None


def _oracle_date(v: str) -> date | None:
    if len(v) != 10 or v[4] != "-" or v[7] != "-" or not (v[:4] + v[5:7] + v[8:]).isdigit():
        return None
    try:
        return date(int(v[:4]), int(v[5:7]), int(v[8:]))
    except ValueError:
        return None


amounts = st.one_of(
    st.decimals(min_value=-(10**16) + 1, max_value=10**16 - 1, places=2, allow_nan=False).map(str),
    st.from_regex(r"-?[0-9]{1,18}(\.[0-9]{0,4})?", fullmatch=True),
    st.text(alphabet="0123456789-.e+ ,", max_size=8),
)
dates = st.one_of(
    st.dates(min_value=date(1000, 1, 1)).map(str),
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", fullmatch=True),
    st.text(alphabet="0123456789-/ ", max_size=11),
)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(amounts, dates), min_size=1, max_size=40))
def test_amounts_and_dates_match_python_oracle(values):
    rows = [row(transaction_id=f"t{i}", amount=a, transaction_date=d) for i, (a, d) in enumerate(values)]
    r = run(chunk(*rows))
    expect_ok = [(_oracle_amount(a), _oracle_date(d)) for a, d in values]
    want = [(a, d) for a, d in expect_ok if a is not None and d is not None]
    t = r.valid_table
    got = list(zip(t.column("amount").to_pylist(), t.column("transaction_date").to_pylist()))
    assert got == want


def test_concurrent_calls_give_the_serial_results():
    # The local harness runs Map iterations on threads: no shared state may leak between calls.
    from concurrent.futures import ThreadPoolExecutor

    inputs = [generate_bytes(rows=1500, seed=s, bad_row_share=0.03)[0] for s in range(6)]
    serial = [run(d) for d in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(run, inputs))
    assert len(serial) == len(parallel)
    for a, b in zip(serial, parallel):
        assert (a.parquet, a.rejects_csv) == (b.parquet, b.rejects_csv)


def test_parallel_and_serial_validation_agree(monkeypatch):
    from etl.core import rules

    data, _ = generate_bytes(rows=3000, seed=17, bad_row_share=0.03)
    monkeypatch.setattr(rules, "PARALLEL_MIN_ROWS", 10**12)
    serial = run(data)
    monkeypatch.setattr(rules, "PARALLEL_MIN_ROWS", 0)
    parallel = run(data)
    assert (serial.parquet, serial.rejects_csv) == (parallel.parquet, parallel.rejects_csv)
