"""PERF2: the chunk path on several threads gives exactly the serial result (scan, parse in
pieces, validation), and pieces are only cut when every quote stands where RFC 4180 allows."""

from __future__ import annotations

import numpy as np
import pytest

from etl.core import parse, process, records, rules, workers
from etl.core.schema import load_schema
from etl_local.datagen import generate_bytes

SCHEMA = load_schema("default")


def _run(data: bytes, monkeypatch: pytest.MonkeyPatch, cpus: int) -> process.ChunkResult:
    with monkeypatch.context() as m:
        m.setattr(workers, "cpus", lambda: cpus)
        m.setattr(parse, "PARALLEL_MIN_RECORDS", 10)
        m.setattr(records, "PARALLEL_MIN_BYTES", 1)
        m.setattr(rules, "PARALLEL_MIN_ROWS", 10)
        return process.process_chunk(data, SCHEMA, 2)


@pytest.mark.parametrize("cpus", [2, 3, 4])
def test_PERF2_parallel_chunk_equals_serial(monkeypatch: pytest.MonkeyPatch, cpus: int) -> None:
    data, stats = generate_bytes(rows=4000, seed=11, bad_row_share=0.05, duplicate_id_share=0.01)
    serial = _run(data, monkeypatch, 1)
    par = _run(data, monkeypatch, cpus)
    assert serial.rows_rejected >= stats.bad_rows > 0
    assert par.parquet == serial.parquet
    assert par.rejects_csv == serial.rejects_csv
    assert par.reject_entries == serial.reject_entries
    assert np.array_equal(par.valid_lines, serial.valid_lines)


def test_PERF2_parse_in_pieces_equals_one_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = generate_bytes(rows=3000, seed=5, bad_row_share=0.05)
    recs = records.scan_records(data, 0, 2)
    whole, ragged = parse.parse_strings(data, 0, SCHEMA, records.parse_block_size(recs))
    monkeypatch.setattr(workers, "cpus", lambda: 3)
    monkeypatch.setattr(parse, "PARALLEL_MIN_RECORDS", 10)
    pieces, ragged_p = parse.parse_records(data, 0, SCHEMA, recs, records.parse_block_size(recs))
    assert pieces.num_rows == whole.num_rows and pieces.column(0).num_chunks >= 3
    assert pieces.equals(whole)
    assert ragged_p == ragged and ragged


def _ok(text: str) -> bool:
    data = text.encode()
    quotes = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 34)
    return parse.quotes_follow_rfc4180(data, 0, ",", quotes)


@pytest.mark.parametrize(
    "text",
    [
        "a,b\n1,2\n",
        '"a","b"\n"1","x,y"\n',
        'a,b\n"say ""hi""",2\n',
        'a,b\n"",""\n',
        'a,b\n"multi\nline",2\r\n',
        'a,b\n1,"""quoted"""\n',
        'a,b\n1,"x"',
    ],
)
def test_PERF2_rfc4180_quotes_allow_pieces(text: str) -> None:
    assert _ok(text)


@pytest.mark.parametrize(
    "text",
    [
        'a,b\n1,ab"c\n',  # a quote inside an unquoted field
        'a,b\n1,"x"y\n',  # text after a closing quote
        'a,b\n1, "x"\n',  # a space before an opening quote
        'a,b\n1,"x""\n"y",2\n',  # parity pairs the wrong quotes
        'a,b\n1,x"\n"2,3\n',
    ],
)
def test_PERF2_misplaced_quotes_keep_the_chunk_whole(text: str) -> None:
    assert not _ok(text)


def test_PERF2_misplaced_quote_is_parsed_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = generate_bytes(rows=200, seed=2, bad_row_share=0.0)
    lines = data.split(b"\n")
    lines[50] = lines[50].replace(b",", b',x"y,', 1)  # a stray quote: the fields shift
    lines[120] = lines[120].replace(b",", b',z"w,', 1)
    bad = b"\n".join(lines)
    recs = records.scan_records(bad, 0, 2)
    monkeypatch.setattr(workers, "cpus", lambda: 2)
    monkeypatch.setattr(parse, "PARALLEL_MIN_RECORDS", 10)
    calls: list[int | None] = []
    real = parse.parse_strings

    def spy(*args: object, **kw: object) -> object:
        calls.append(args[4] if len(args) > 4 else None)  # type: ignore[arg-type]
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(parse, "parse_strings", spy)
    parse.parse_records(bad, 0, SCHEMA, recs, records.parse_block_size(recs))
    assert calls == [None], "a chunk with misplaced quotes must be parsed in one piece"
