"""Properties of SPEC RUN9 (never a silent mis-split) and RUN12 (chunks bounded in lines).

RUN9: for any RFC 4180 file the whole pipeline (plan with the quote check, then every chunk
through process_chunk) succeeds with the csv module's row count; for any file with a quote
inserted at a random place, the outcome is never success with a count different from csv's.
RUN12: every chunk is cut at the first record boundary where it reaches the chunk size OR the
line cap, so blank lines and tiny rows count toward it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from etl.core.boundaries import plan_chunks
from etl.core.header import parse_header
from etl.core.process import process_chunk
from etl.core.records import scan_records
from etl.core.schema import load_schema, parse_schema
from etl.errors import EmptyFile, EtlError, MalformedCsv, RecordTooLarge
from etl_local.datagen import generate_bytes

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCHEMA = parse_schema(
    {
        "x-etl-schema-id": "p3",
        "x-etl-version": "1",
        "x-etl-dataset": "p3",
        "fields": [{"name": n, "type": "string"} for n in ("a", "b", "c")],
    }
)
HEADER = b"a,b,c\n"
PLAIN = st.sampled_from(["x", "y", " ", "é", "'", ";", "0"])
QUOTED = st.sampled_from(["x", ",", '""', "\n", "\r\n", " ", "é"])


@st.composite
def field(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return '"' + "".join(draw(st.lists(QUOTED, max_size=5))) + '"'
    return "".join(draw(st.lists(PLAIN, max_size=4)))


@st.composite
def rfc4180_body(draw: st.DrawFn) -> bytes:
    rows = draw(st.lists(st.lists(field(), min_size=3, max_size=3), min_size=1, max_size=10))
    terms = [draw(st.sampled_from(["\n", "\r\n"])) for _ in rows]
    body = "".join(",".join(r) + t for r, t in zip(rows, terms))
    blank = "\n" * draw(st.integers(0, 3))
    return (body + blank).encode()


def csv_count(data: bytes) -> int:
    # csv reads a row of only empty fields from "" lines; blank lines are no rows for either.
    # surrogateescape: an inserted quote can split a UTF-8 character; the bytes left invalid are
    # never a quote, delimiter or line end, so the record structure csv sees is unchanged (the
    # pipeline rejects that row for its encoding, and still counts it).
    text = data.decode("utf-8", errors="surrogateescape")
    return sum(1 for r in csv.reader(io.StringIO(text, newline="")) if r) - 1


def pipeline(data: bytes, chunk_size: int, block: int) -> int | None:
    """Rows of a SUCCEEDED run, or None when the file fails (any typed error)."""
    blocks = [data[i : i + block] for i in range(0, len(data), block)]
    try:
        plan = plan_chunks(blocks, len(HEADER), len(data), chunk_size, 1 << 20)
        return sum(process_chunk(HEADER + data[c.start : c.end], SCHEMA, c.first_line).rows_in for c in plan)
    except (MalformedCsv, EmptyFile, RecordTooLarge):
        return None


@SETTINGS
@given(body=rfc4180_body(), chunk_size=st.integers(1, 64), block=st.integers(1, 64))
def test_RUN9_rfc4180_input_succeeds_with_the_csv_count(body: bytes, chunk_size: int, block: int) -> None:
    data = HEADER + body
    assume(body.strip(b"\r\n"))
    assert pipeline(data, chunk_size, block) == csv_count(data)


@SETTINGS
@given(
    body=rfc4180_body(),
    where=st.lists(st.integers(0, 10_000), min_size=1, max_size=3),
    chunk_size=st.integers(1, 64),
    block=st.integers(1, 64),
)
# Found by Hypothesis in CI (2026-11-30): two quotes inserted inside "é" leave invalid UTF-8.
@example(body=b',"xx\xc3\xa9",\n,,\n', where=[5, 5], chunk_size=1, block=1)
def test_RUN9_a_misplaced_quote_never_succeeds_with_another_count(
    body: bytes, where: list[int], chunk_size: int, block: int
) -> None:
    for w in sorted(where, reverse=True):
        at = w % (len(body) + 1)
        body = body[:at] + b'"' + body[at:]
    data = HEADER + body
    assume(body.strip(b"\r\n"))
    rows = pipeline(data, chunk_size, block)
    assert rows is None or rows == csv_count(data)


@SETTINGS
@given(
    lines=st.lists(
        st.sampled_from([b"\n", b"\r\n", b"a,b,c\n", b"x\n", b'"q\n",,\n']), min_size=1, max_size=60
    ),
    chunk_size=st.integers(1, 200),
    max_lines=st.integers(1, 8),
    block=st.integers(1, 64),
)
def test_RUN12_each_chunk_ends_at_the_first_boundary_reaching_bytes_or_lines(
    lines: list[bytes], chunk_size: int, max_lines: int, block: int
) -> None:
    data = HEADER + b"".join(lines)
    assume(data[len(HEADER) :].strip(b"\r\n"))
    blocks = [data[i : i + block] for i in range(0, len(data), block)]
    chunks = plan_chunks(blocks, len(HEADER), len(data), chunk_size, 1 << 20, max_lines=max_lines)
    ends = {len(HEADER)}
    pos = len(HEADER)
    for line in lines:
        pos += len(line)
        ends.add(pos)
    for c in chunks:
        body = data[c.start : c.end]
        assert c.end in ends
        # Every record boundary strictly inside the chunk had reached neither limit yet, except
        # in the last chunk before a blank tail shorter than both limits (it joins that chunk).
        for e in sorted(x for x in ends if c.start < x < c.end):
            if e - c.start >= chunk_size or data[c.start : e].count(b"\n") >= max_lines:
                tail = data[e : c.end]
                assert c.index == len(chunks) and not tail.strip(b"\r\n")
                assert len(tail) < chunk_size or tail.count(b"\n") < max_lines
                break
        if c.index < len(chunks):  # not the last: it reached one of the limits
            assert len(body) >= chunk_size or body.count(b"\n") >= max_lines


DEFAULT = load_schema("default")


@SETTINGS
@given(
    when=st.datetimes(
        min_value=dt.datetime(1, 1, 1),
        max_value=dt.datetime(9999, 12, 31, 23, 59, 59),
    ),
    offset_min=st.integers(-23 * 60 - 59, 23 * 60 + 59),
    year_zero=st.booleans(),
)
def test_RUN11_a_timestamp_is_kept_iff_python_can_hold_it_in_utc(
    when: object, offset_min: int, year_zero: bool
) -> None:
    assert isinstance(when, dt.datetime)
    sign = "+" if offset_min >= 0 else "-"
    off = f"{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"
    text = when.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + off
    if year_zero:
        text = "0000" + text[4:]
    # The oracle: Python's datetime after conversion to UTC. Year 0 is not a Python year: parse
    # it as 2000 (the same leap rules) and shift the result back.
    shift = 2000 if year_zero else 0
    try:
        local = dt.datetime.fromisoformat(f"{int(text[:4]) + shift:04d}" + text[4:])
        utc = local.astimezone(dt.timezone.utc)  # OverflowError past 9999
        readable = 1 <= utc.year - shift <= 9999
        in_utc = utc.replace(year=utc.year - shift) if readable else None
    except OverflowError:
        readable = False
    data = (",".join(DEFAULT.source_columns) + f"\nT1,A,2024-01-01,{text},1.00,EUR,DEBIT,,,\n").encode()
    r = process_chunk(data, DEFAULT, 2)
    assert r.rows_valid == (1 if readable else 0)
    if readable:
        assert r.valid_table.column("posted_at")[0].as_py() == in_utc
    else:
        assert [e[2] for e in r.reject_entries] == ["range"]


HEAD_BYTES = 64 * 1024  # what ValidateHeader reads (etl/handlers/common.py)
_TX, _ = generate_bytes(rows=700, seed=5, bad_row_share=0.0)  # ~93 KB: rows before and after 64 KiB
_TX_STARTS = scan_records(_TX, 0, 2).starts


def file_outcome(data: bytes) -> tuple[object, ...]:
    """What the pipeline's pure steps make of a file: the error type, or the valid count and the
    (column, rule, reason) of every reject (line numbers left out)."""
    try:
        info = parse_header(data[:HEAD_BYTES], DEFAULT, len(data))
        plan = plan_chunks([data], info.header_bytes, len(data), 40_000, 1 << 20)
        head = data[: info.header_bytes]
        results = [process_chunk(head + data[c.start : c.end], DEFAULT, c.first_line) for c in plan]
    except EtlError as exc:
        return (type(exc).__name__,)
    return (
        sum(r.rows_valid for r in results),
        [(e[1], e[2], e[4]) for r in results for e in r.reject_entries],
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bad=st.sampled_from([b"\x00", b"\xff", b"\xe9", b"\xc3", b"\xed\xa0\x80"]),
    first=st.integers(0, 40),
    second=st.integers(600, len(_TX_STARTS) - 1),
)
def test_RUN10_the_same_bad_byte_gets_the_same_outcome_anywhere(bad: bytes, first: int, second: int) -> None:
    assert _TX_STARTS[first] < HEAD_BYTES < _TX_STARTS[second]  # one in the head, one beyond it

    def with_bad(row: int) -> bytes:
        at = int(_TX_STARTS[row]) + 1  # inside the transaction id
        return _TX[:at] + bad + _TX[at:]

    early, late = file_outcome(with_bad(first)), file_outcome(with_bad(second))
    assert early == late
    assert early[0] == 699 and [r[:2] for r in early[1]] == [("*", "encoding")]  # type: ignore[index]
