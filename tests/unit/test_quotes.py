"""SPEC RUN9: a quote where RFC 4180 allows none is found by the planning scan, before any chunk
is processed, and reported with its line; never a silent mis-split."""

from __future__ import annotations

import csv
import io

import pytest

from etl.core import boundaries
from etl.core.boundaries import plan_chunks, split_stream
from etl.core.process import process_chunk
from etl.core.schema import load_schema
from etl.errors import MalformedCsv

SCHEMA = load_schema("default")
HEADER = (",".join(SCHEMA.source_columns) + "\n").encode()
CHUNK = int(0.1 * 1024 * 1024)  # 0.1 MiB, as in issue 9


def crafted(n: int = 1251, stray_row: int = 100, tail_row: int = 1250) -> bytes:
    """Issue 9's case: every description is quoted and holds a newline followed by text shaped
    like a row. One stray quote in an unquoted merchant name (``stray_row``) shifts RFC 4180
    parity so the descriptions' inner newlines look like record ends; a second one inside a
    later description (``tail_row``) shifts it back. Each chunk's parity record count equals
    the parser's row count, yet the plan cuts inside a description: the second chunk starts
    with an invented row."""

    def row(i: int) -> str:
        merchant = f'Sh"op {i}' if i == stray_row else f"Shop {i}"
        tail = f'ta"il {i}' if i == tail_row else f"tail {i}"
        desc = f'"multi\nX{i},A1,2024-03-01,2024-03-01T10:00:00Z,1.00,EUR,DEBIT,M,5411,{tail}"'
        return (
            f"T{i},A{i % 50},2024-03-01,2024-03-01T10:00:00Z,{i % 1000}.50,EUR,DEBIT,{merchant},5411,{desc}"
        )

    return HEADER + "\n".join(row(i) for i in range(n)).encode() + b"\n"


def csv_rows(data: bytes) -> int:
    return len(list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))) - 1


def rows_via_chunks(data: bytes) -> int:
    plan = plan_chunks([data], len(HEADER), len(data), CHUNK, 1 << 24)
    return sum(process_chunk(HEADER + data[c.start : c.end], SCHEMA, c.first_line).rows_in for c in plan)


def test_RUN9_issue_crafted_case_fails_before_any_chunk_naming_the_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = crafted()
    assert csv_rows(data) == 1251
    # Each row takes two physical lines (the description's newline): row 100 starts on line 202.
    with pytest.raises(MalformedCsv, match=r"line 202 \(byte \d+\): a quote inside an unquoted field"):
        plan_chunks([data], len(HEADER), len(data), CHUNK, 1 << 24)
    # The same file split by gzip streaming (any block size) fails the same way.
    for block in (1, 7, 4096, 1 << 20):
        with pytest.raises(MalformedCsv, match="line 202 "):
            list(split_stream(io.BytesIO(data), HEADER, CHUNK, 1 << 24, block_size=block))
    # Proof that the input is the dangerous one: without the planner's check every chunk is
    # accepted and the file would SUCCEED with 1,252 rows where the csv module reads 1,251.
    monkeypatch.setattr(boundaries._Scanner, "_misplaced", lambda self, bad: None)
    assert rows_via_chunks(data) == 1252


def plan(
    data: bytes, header: bytes = b"id,name,note\n", block: int = 1 << 20, delimiter: str = ","
) -> list[int]:
    blocks = [data[i : i + block] for i in range(0, len(data), block)]
    return [c.end for c in plan_chunks(blocks, len(header), len(data), 4, 1 << 20, delimiter=delimiter)]


H = b"id,name,note\n"


@pytest.mark.parametrize(
    ("body", "line", "what"),
    [
        (b'1,a"b,x\n', 2, "a quote inside an unquoted field"),
        (b'1,a,x\n2,b,"c"d\n', 3, "a closing quote followed by b'd'"),
        (b'1,a,x\n2,b,"c" \n', 3, "a closing quote followed by b' '"),
        (b'1,"x"\r2,b,c\n', 2, "a closing quote followed by a bare CR"),
        (b'1,a,x\n2,"x\ny"z,c\n', 4, "a closing quote followed by b'z'"),
        (b'1,a,x\n\n2,b,c "d"\n', 4, "a quote inside an unquoted field"),
    ],
)
def test_RUN9_misplaced_quote_is_named_with_its_line_for_any_block_size(
    body: bytes, line: int, what: str
) -> None:
    data = H + body
    for block in (1, 2, 3, 5, 1 << 20):
        with pytest.raises(MalformedCsv, match=rf"line {line} \(byte \d+\): {what}"):
            plan(data, block=block)


@pytest.mark.parametrize(
    "body",
    [
        b'1,"a""b",x\n',  # doubled quote
        b'1,"",x\n2,"""",y\n',  # empty and a lone (doubled) quote
        b'"1","a,b","x\ny"\r\n2,"",""\r\n',  # every field quoted, CRLF, newline inside
        b'1,a,"x"',  # closing quote at the end of the file
        b'1,a,"x"\r',  # closing quote + final CR
        b'1,a,"x"\r\n',
        b'"",a,""\n',
    ],
)
def test_RUN9_rfc4180_quotes_pass_for_any_block_size(body: bytes) -> None:
    data = H + body
    want = plan(data)
    for block in (1, 2, 3, 5):
        assert plan(data, block=block) == want


def test_RUN9_the_schema_delimiter_is_the_field_separator() -> None:
    data = b"id;name\n" + b'1;"a;b"\n2;"c"\n'
    assert plan(data, header=b"id;name\n", delimiter=";")
    with pytest.raises(MalformedCsv, match="line 2"):
        plan(data, header=b"id;name\n", delimiter=",")  # '"a;b"' follows ';', not ','


def test_RUN9_the_header_is_not_checked_by_the_scan() -> None:
    header = b'"i""d",name,note\n'  # the header is parse_header's (csv, strict)
    data = header + b'1,"a",x\n'
    assert plan_chunks([data], len(header), len(data), 4, 1 << 20)
