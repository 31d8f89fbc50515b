"""Unit tests for etl.core.boundaries (RUN3 record-safe splitting, RUN8 bad input)."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
from collections.abc import Iterator

import pytest

import etl.core.boundaries as boundaries
from etl.core.boundaries import ChunkRange, plan_chunks, split_stream
from etl.errors import CorruptGzip, EmptyFile, MalformedCsv, RecordTooLarge

BIG = 1 << 30


def pieces(data: bytes, sizes: list[int] | int) -> Iterator[bytes]:
    """``data`` cut into consecutive blocks of the given sizes (cycled)."""
    if isinstance(sizes, int):
        sizes = [sizes]
    i = k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        yield data[i : i + n]
        i += n
        k += 1


def record_ends(data: bytes, data_start: int) -> list[int]:
    """Reference: offsets just after every LF at even quote parity (one byte at a time)."""
    par, out = 0, []
    for i in range(data_start, len(data)):
        if data[i] == 0x22:
            par ^= 1
        elif data[i] == 0x0A and not par:
            out.append(i + 1)
    return out


def plan(data: bytes, header: bytes, chunk_size: int, block: list[int] | int = 7, max_record: int = BIG):
    return plan_chunks(pieces(data, block), len(header), len(data), chunk_size, max_record)


def rows_of(header: bytes, body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO((header + body).decode("utf-8-sig"), newline="")))[1:]


def check_plan(data: bytes, header: bytes, chunks: list[ChunkRange]) -> None:
    """Tiling, record alignment, line numbers and csv equivalence."""
    assert [c.index for c in chunks] == list(range(1, len(chunks) + 1))
    assert chunks[0].start == len(header)
    assert chunks[-1].end == len(data)
    for a, b in zip(chunks, chunks[1:]):
        assert a.end == b.start
    ends = set(record_ends(data, len(header)))
    for c in chunks:
        assert c.start < c.end
        assert c.first_line == data[: c.start].count(b"\n") + 1
        if c.index > 1:
            assert c.start in ends
    whole = rows_of(header, data[len(header) :])
    assert [r for c in chunks for r in rows_of(header, data[c.start : c.end])] == whole


HEADER = b"id,name,note\n"


def test_chunk_range_is_frozen_with_contract_fields() -> None:
    c = ChunkRange(index=1, start=10, end=20, first_line=2)
    assert [f.name for f in dataclasses.fields(c)] == ["index", "start", "end", "first_line"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.start = 5  # type: ignore[misc]


def test_single_chunk_when_chunk_size_exceeds_data() -> None:
    data = HEADER + b"1,a,x\n2,b,y\n"
    assert plan(data, HEADER, 1000) == [ChunkRange(1, len(HEADER), len(data), 2)]


def test_cut_after_first_record_end_at_or_after_target() -> None:
    data = HEADER + b"1,a,x\n2,b,y\n3,c,z\n"
    # target = 13 + 8 = 21 lies inside record 2 (bytes 19..24) -> cut at 25.
    chunks = plan(data, HEADER, 8)
    assert [(c.start, c.end, c.first_line) for c in chunks] == [(13, 25, 2), (25, 31, 4)]
    check_plan(data, HEADER, chunks)


def test_record_ending_exactly_at_target_is_cut_there() -> None:
    data = HEADER + b"1,a,x\n2,b,y\n3,c,z\n"
    chunks = plan(data, HEADER, 6)  # target 19 == end of record 1
    assert [(c.start, c.end) for c in chunks] == [(13, 19), (19, 25), (25, 31)]
    check_plan(data, HEADER, chunks)


def test_chunk_size_one_gives_one_record_per_chunk() -> None:
    data = HEADER + b'1,"a\nb",x\n2,b,y\r\n3,"",""\n'
    chunks = plan(data, HEADER, 1, block=1)
    assert len(chunks) == 3
    check_plan(data, HEADER, chunks)


def test_quoted_newline_is_never_a_cut() -> None:
    data = HEADER + b'1,"line one\nline two\nline three",x\n2,b,y\n'
    for chunk_size in range(1, len(data)):
        chunks = plan(data, HEADER, chunk_size, block=3)
        assert [c.start for c in chunks[1:]] in ([], [data.index(b"2,b,y")])
        check_plan(data, HEADER, chunks)


def test_doubled_quotes_keep_parity() -> None:
    data = HEADER + b'1,"say ""hi""\nthere",x\n2,"""",y\n3,c,z\n'
    for chunk_size in range(1, 40):
        check_plan(data, HEADER, plan(data, HEADER, chunk_size, block=[1, 2, 5]))


@pytest.mark.parametrize("split", range(1, 40))
def test_quote_and_crlf_on_every_block_edge(split: int) -> None:
    data = HEADER + b'1,"a\r\n""b""",x\r\n2,b,y\r\n"3","c",""\r\n'
    chunks = plan_chunks(iter([data[:split], data[split:]]), len(HEADER), len(data), 1, BIG)
    check_plan(data, HEADER, chunks)
    assert [c.end for c in chunks] == record_ends(data, len(HEADER))


def test_cr_at_block_edge_cut_is_after_lf() -> None:
    data = HEADER + b"1,a,x\r\n2,b,y\r\n"
    cr = data.index(b"\r")
    chunks = plan_chunks(iter([data[: cr + 1], data[cr + 1 :]]), len(HEADER), len(data), 1, BIG)
    assert chunks[0].end == cr + 2
    assert data[chunks[1].start - 2 : chunks[1].start] == b"\r\n"


def test_record_larger_than_chunk_makes_its_chunk_larger() -> None:
    big = b'9,"' + b"long text, with\nnewlines " * 40 + b'",x\n'
    data = HEADER + b"1,a,x\n" + big + b"2,b,y\n"
    chunks = plan(data, HEADER, 6, max_record=len(big))
    assert [c.end - c.start for c in chunks] == [6, len(big), 6]
    check_plan(data, HEADER, chunks)


def test_record_longer_than_max_raises_even_inside_a_chunk() -> None:
    data = HEADER + b"1,a,x\n" + b"2,bbbbbbbbbbbbbbbbbb,y\n" + b"3,c,z\n"
    with pytest.raises(RecordTooLarge, match=r"starting at byte 19 \(line 3\).*maximum record size of 20"):
        plan(data, HEADER, 10_000, max_record=20)
    assert len(plan(data, HEADER, 10_000, max_record=23)) == 1  # 23 bytes incl. LF: allowed


@pytest.mark.parametrize("block", [1, 5, 8, 64])
def test_max_record_checked_across_blocks_and_in_quotes(block: int) -> None:
    data = HEADER + b"1,a,x\n" + b'2,"' + b"q\n" * 30 + b'",y\n' + b"3,c,z\n"
    with pytest.raises(RecordTooLarge):
        plan(data, HEADER, 4, block=block, max_record=40)
    check_plan(data, HEADER, plan(data, HEADER, 4, block=block, max_record=67))


def test_last_record_without_newline_counts_towards_max() -> None:
    data = HEADER + b"1,a,x\n2,bbbbbbbbbbbbbbbbbbbbbbbbb,y"
    with pytest.raises(RecordTooLarge):
        plan(data, HEADER, 5, max_record=20)


def test_no_final_newline_last_chunk_ends_at_total_size() -> None:
    data = HEADER + b"1,a,x\n2,b,y"
    chunks = plan(data, HEADER, 1)
    assert chunks[-1] == ChunkRange(2, 19, len(data), 3)
    check_plan(data, HEADER, chunks)


def test_final_record_ending_in_cr_only() -> None:
    data = HEADER + b"1,a,x\r\n2,b,y\r"
    check_plan(data, HEADER, plan(data, HEADER, 1))


def test_trailing_empty_lines_shorter_than_a_chunk_stay_in_the_last_chunk() -> None:
    data = HEADER + b"1,a,x\n2,b,y\n\n\r\n\n"
    chunks = plan(data, HEADER, 6)
    assert [(c.start, c.end) for c in chunks] == [(13, 19), (19, len(data))]
    check_plan(data, HEADER, chunks)
    # RUN12: blank lines count like any bytes: a blank run reaching the chunk size is a chunk.
    chunks = plan(data, HEADER, 1)
    assert [(c.start, c.end) for c in chunks] == [(13, 19), (19, 25), (25, 26), (26, 28), (28, 29)]
    check_plan(data, HEADER, chunks)


def test_blank_lines_between_records_do_not_form_an_empty_last_chunk() -> None:
    data = HEADER + b"1,a,x\n" + b"\n" * 50 + b"2,b,y\n"
    for chunk_size in (1, 3, 10, 49, 56):
        chunks = plan(data, HEADER, chunk_size)
        check_plan(data, HEADER, chunks)
        assert data[chunks[-1].start : chunks[-1].end].strip()


def test_bom_and_quoted_newline_in_header_line_numbers() -> None:
    header = b'\xef\xbb\xbf"i\nd",name,note\r\n'
    data = header + b"1,a,x\r\n2,b,y\r\n"
    chunks = plan(data, header, 1)
    assert [c.first_line for c in chunks] == [3, 4]
    check_plan(data, header, chunks)


def test_unterminated_quote_at_eof_is_malformed() -> None:
    data = HEADER + b'1,a,x\n2,"never closed,y\n3,c,z\n'
    with pytest.raises(MalformedCsv, match=r"unterminated quoted field.*byte 19 \(line 3\)"):
        plan(data, HEADER, 4)


def test_unterminated_quote_swallowing_more_than_max_record_is_too_large() -> None:
    data = HEADER + b'1,"never closed\n' + b"2,b,y\n" * 20
    with pytest.raises(RecordTooLarge, match="unbalanced quote"):
        plan(data, HEADER, 4, max_record=50)


@pytest.mark.parametrize("data", [HEADER, HEADER + b"\n", HEADER + b"\r\n\r\n\n", b""])
def test_no_records_is_empty_file(data: bytes) -> None:
    header = HEADER if data else b""
    with pytest.raises(EmptyFile):
        plan(data, header, 4)


def test_blocks_must_add_up_to_total_size() -> None:
    data = HEADER + b"1,a,x\n"
    with pytest.raises(ValueError, match="expected total_size"):
        plan_chunks(iter([data]), len(HEADER), len(data) + 1, 4, BIG)
    with pytest.raises(ValueError, match="more than total_size"):
        plan_chunks(iter([data]), len(HEADER), len(data) - 1, 4, BIG)


@pytest.mark.parametrize(
    ("data_start", "chunk_size", "max_record"), [(-1, 1, 1), (0, 0, 1), (0, 1, 0), (99, 1, 1)]
)
def test_invalid_arguments(data_start: int, chunk_size: int, max_record: int) -> None:
    with pytest.raises(ValueError):
        plan_chunks(iter([b"a\n"]), data_start, 2, chunk_size, max_record)


def test_accepts_memoryview_and_bytearray_blocks() -> None:
    data = HEADER + b'1,"a\nb",x\n2,b,y\n'
    mv = memoryview(data)
    blocks: list[bytes | bytearray | memoryview] = [mv[:10], bytearray(data[10:20]), mv[20:]]
    check_plan(data, HEADER, plan_chunks(iter(blocks), len(HEADER), len(data), 1, BIG))


def _many_rows(n: int) -> bytes:
    rows = []
    for i in range(n):
        note = f'"multi\nline, ""quoted"" {i}"' if i % 7 == 0 else f"plain {i}"
        rows.append(f"{i},name{i},{note}\n")
    return "".join(rows).encode()


def test_large_input_uses_numpy_counting_and_matches_reference() -> None:
    data = HEADER + _many_rows(40_000)  # > 1 MB, blocks far above the numpy threshold
    chunks = plan(data, HEADER, 100_000, block=[300_000, 123_457])
    check_plan(data, HEADER, chunks)
    assert len(chunks) > 5


@pytest.mark.parametrize("sparse_quotes", [0, 1, 1024])
def test_many_quoted_newlines_use_window_fallback(
    monkeypatch: pytest.MonkeyPatch, sparse_quotes: int
) -> None:
    monkeypatch.setattr(boundaries, "_SPARSE_QUOTES", sparse_quotes)
    monkeypatch.setattr(boundaries, "_WINDOW_MIN", 8)
    monkeypatch.setattr(boundaries, "_WINDOW_MAX", 32)
    field = b'"' + b"x\n" * 500 + b'"'
    data = HEADER + b"1,a,x\n" + b"2," + field + b",y\n" + b"3,c," + field + b"\n4,d,z\n"
    for chunk_size in (1, 7, 100, 600):
        for block in (13, 4096):
            check_plan(data, HEADER, plan(data, HEADER, chunk_size, block=block))


@pytest.mark.parametrize("sparse_quotes", [0, 3, 1024])
def test_numpy_paths_forced_on_small_input(monkeypatch: pytest.MonkeyPatch, sparse_quotes: int) -> None:
    monkeypatch.setattr(boundaries, "_SPARSE_QUOTES", sparse_quotes)
    monkeypatch.setattr(boundaries, "_NUMPY_MIN", 2)
    monkeypatch.setattr(boundaries, "_SCALAR_TRIES", 1)
    monkeypatch.setattr(boundaries, "_WINDOW_MIN", 4)
    monkeypatch.setattr(boundaries, "_WINDOW_MAX", 16)
    data = HEADER + _many_rows(300)
    for chunk_size in (1, 50, 333):
        for block in (1, 17, 1000):
            check_plan(data, HEADER, plan(data, HEADER, chunk_size, block=block))


# -- split_stream ------------------------------------------------------------------------------


class Trickle(io.RawIOBase):
    """A stream whose reads return at most ``step`` bytes (like a network body)."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self._step if n < 0 else min(n, self._step)
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out


def bodies_match_plan(data: bytes, header: bytes, chunk_size: int, step: int, block_size: int) -> None:
    expected = plan(data, header, chunk_size)
    got = list(split_stream(Trickle(data, step), header, chunk_size, BIG, block_size=block_size))
    assert len(got) == len(expected)
    for (rng, body), exp in zip(got, expected):
        assert body.startswith(header)
        assert body[len(header) :] == data[exp.start : exp.end]
        assert rng == ChunkRange(exp.index, len(header), len(body), exp.first_line)


@pytest.mark.parametrize("chunk_size", [1, 5, 20, 1000])
@pytest.mark.parametrize(("step", "block_size"), [(1, 1), (3, 7), (1000, 4), (1000, 1000)])
def test_split_stream_matches_plan_chunks(chunk_size: int, step: int, block_size: int) -> None:
    header = b'\xef\xbb\xbfid,"na\nme",note\r\n'
    data = header + b'1,"a\r\nb",x\r\n2,b,""""\r\n\r\n3,c,z\r\n4,d,"w"\r\n\n'
    bodies_match_plan(data, header, chunk_size, step, block_size)


def test_split_stream_gzip_round_trip() -> None:
    data = HEADER + _many_rows(5000)
    with gzip.GzipFile(fileobj=io.BytesIO(gzip.compress(data))) as stream:
        got = list(split_stream(stream, HEADER, 20_000, BIG, block_size=8192))
    assert len(got) > 3
    assert b"".join(body[len(HEADER) :] for _, body in got) == data[len(HEADER) :]
    rows = [r for _, body in got for r in rows_of(HEADER, body[len(HEADER) :])]
    assert rows == rows_of(HEADER, data[len(HEADER) :])


def test_split_stream_corrupt_gzip() -> None:
    bad = gzip.compress(HEADER + b"1,a,x\n" * 1000)
    with gzip.GzipFile(fileobj=io.BytesIO(bad[:-30])) as stream, pytest.raises(CorruptGzip):
        list(split_stream(stream, HEADER, 10, BIG))
    with gzip.GzipFile(fileobj=io.BytesIO(b"not gzip at all")) as stream, pytest.raises(CorruptGzip):
        list(split_stream(stream, HEADER, 10, BIG))
    flipped = bytearray(bad)
    flipped[len(flipped) // 2] ^= 0xFF
    with gzip.GzipFile(fileobj=io.BytesIO(bytes(flipped))) as stream, pytest.raises(CorruptGzip):
        list(split_stream(stream, HEADER, 10, BIG))


def test_split_stream_errors() -> None:
    with pytest.raises(ValueError, match="does not start with the given header"):
        list(split_stream(io.BytesIO(b"other,header\n1,2\n"), HEADER, 10, BIG))
    with pytest.raises(EmptyFile):
        list(split_stream(io.BytesIO(HEADER + b"\n\n"), HEADER, 10, BIG))
    with pytest.raises(EmptyFile, match="inside the header"):
        list(split_stream(io.BytesIO(HEADER[:5]), HEADER, 10, BIG))
    with pytest.raises(MalformedCsv):
        list(split_stream(io.BytesIO(HEADER + b'1,"a,b\n'), HEADER, 10, BIG))
    with pytest.raises(RecordTooLarge):
        list(split_stream(io.BytesIO(HEADER + b"1,a,b\n" + b"x" * 100 + b"\n"), HEADER, 10, 50))
    with pytest.raises(ValueError, match="block_size"):
        list(split_stream(io.BytesIO(HEADER), HEADER, 10, BIG, block_size=0))


def test_split_stream_memory_is_bounded_by_chunk_not_file() -> None:
    """Bodies are yielded while the stream is still being read (no whole-file buffering)."""
    data = HEADER + b"1,a,x\n" * 10_000
    stream = Trickle(data, 600)
    gen = split_stream(stream, HEADER, 600, BIG, block_size=600)
    rng, body = next(gen)
    assert stream._pos <= len(HEADER) + 3 * 600
    assert rng.first_line == 2 and len(body) >= len(HEADER) + 600


def test_leading_blank_lines_count_toward_the_chunk_size() -> None:
    data = HEADER + b"\n\r\n\n1,a,x\n2,b,y\n"
    chunks = plan(data, HEADER, 10)
    assert [(c.start, c.end, c.first_line) for c in chunks] == [(13, 23, 2), (23, 29, 6)]
    check_plan(data, HEADER, chunks)
    # RUN12: a blank run as long as a chunk is a chunk of its own (no records, 0 rows).
    chunks = plan(data, HEADER, 1)
    assert [(c.start, c.end, c.first_line) for c in chunks] == [
        (13, 14, 2),
        (14, 16, 3),
        (16, 17, 4),
        (17, 23, 5),
        (23, 29, 6),
    ]
    check_plan(data, HEADER, chunks)


def test_huge_single_block_is_counted_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(boundaries, "_NUMPY_MIN", 4)
    monkeypatch.setattr(boundaries, "_NUMPY_SLICE", 5)
    data = HEADER + _many_rows(200)
    for chunk_size in (1, 64, 1000):
        check_plan(data, HEADER, plan(data, HEADER, chunk_size, block=len(data)))


@pytest.mark.parametrize("sparse_quotes", [0, 1024])
def test_giant_quoted_field_is_too_large_and_found_fast(
    monkeypatch: pytest.MonkeyPatch, sparse_quotes: int
) -> None:
    monkeypatch.setattr(boundaries, "_SPARSE_QUOTES", sparse_quotes)
    data = HEADER + b'1,"' + b"x\n" * 200_000 + b'",y\n2,b,z\n'
    with pytest.raises(RecordTooLarge, match="line 2"):
        plan(data, HEADER, 1000, block=65_536, max_record=100_000)
    chunks = plan(data, HEADER, 1000, block=65_536, max_record=len(data))
    assert [c.end - c.start for c in chunks] == [len(data) - len(HEADER) - 6, 6]


def _dense_field_unterminated(n: int) -> tuple[bytes, int]:
    """A record whose quoted field holds ``n`` doubled quotes + newlines and never closes;
    returns the data and the byte offset where that record starts."""
    prefix = HEADER + b"1,a,x\n"
    return prefix + b'2,b,"' + b'a""\n' * n, len(prefix)


@pytest.mark.parametrize("block", [50_000, 131_072, [100_000, 70_001]])
def test_dense_backward_window_keeps_quote_parity(block: int | list[int]) -> None:
    """The backward search for the record that continues past a block edge, in quote-dense text
    (more than _SPARSE_QUOTES quotes per window: the numpy cumsum path) at the default window
    sizes: a block ending inside a quoted field must not take a quoted LF for a record end.
    The unterminated-quote error names the record's start, which that search computed."""
    data, start = _dense_field_unterminated(50_000)  # 200 KB field: several 64 KB windows
    with pytest.raises(MalformedCsv, match=rf"record starting at byte {start} \(line 3\)"):
        plan(data, HEADER, 10, block=block)


def test_dense_quoted_record_over_max_is_too_large_across_blocks() -> None:
    data, _ = _dense_field_unterminated(50_000)
    data += b'",y\n3,c,z\n'
    with pytest.raises(RecordTooLarge):
        plan(data, HEADER, 10, block=131_072, max_record=150_000)
    chunks = plan(data, HEADER, 10, block=131_072, max_record=300_000)
    ends = record_ends(data, len(HEADER))
    # Records 1-2 (the first ends before the 10-byte target) form chunk 1; record 3 is chunk 2.
    assert [c.start for c in chunks[1:]] == [ends[1]] and chunks[1].first_line == 50_004
