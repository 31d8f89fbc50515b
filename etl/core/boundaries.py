"""Record-safe split planning for RFC 4180 CSV (RUN3, PERF1).

Under RFC 4180 a ``"`` inside a quoted field is doubled, so a byte position is inside a quoted
field iff the number of ``"`` bytes between the start of the data and that position is odd. A
newline at *even* parity therefore ends a record; a newline at odd parity is data. The scanner
keeps that parity while it walks the input block by block:

* bulk work is C/SIMD counting (``numpy.count_nonzero(a == 34)`` on large ranges,
  ``bytes.count`` on small ones) of quotes and newlines, each byte counted once;
* detailed work happens only at a few *points* per block: the first and last record boundary
  of each block (for the maximum-record-size check) and the first boundary at or after each
  chunk target. A point is found with ``bytes.find``/``rfind`` plus a parity check over the few
  bytes in between; runs of quoted newlines fall back to a vectorised numpy window
  (``cumsum`` of quote flags), so no input makes the scan loop in Python per byte or per line.

No bytes are carried between blocks: parity and newline counts are all the state a block edge
needs, so a quote, CR or LF on a block edge is unremarkable.

Chunk ``k`` starts where chunk ``k-1`` ended and ends right after the first record-ending LF at
or after ``start + chunk_size`` (a CRLF terminator stays whole because the cut is after the LF);
so a chunk is at least ``chunk_size`` long except the last, and a record longer than a chunk
simply makes its chunk longer. A record longer than ``max_record_bytes`` is an error, as is an
odd quote count at the end of the input (an unterminated quoted field). A cut is only kept if
a non-blank byte follows it, so trailing empty lines never form a chunk of their own.

Shipped to Lambda: Python 3.9 compatible (numpy comes from the AWS SDK for pandas layer).
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, Union

import numpy as np

from etl.errors import CorruptGzip, EmptyFile, MalformedCsv, RecordTooLarge

_QUOTE = 0x22
_LF = 0x0A
_CR = 0x0D
# Quote positions are checked (RUN9) in slices of this many bytes: bounded temporaries.
_QUOTE_CHECK_SLICE = 1 << 20
# At most this many misplaced quotes are named in the error.
_MAX_REPORTED_QUOTES = 5
# No line cap (plan_chunks' max_lines=None).
_NO_LINE_CAP = 1 << 62
# Below this many bytes bytes.count wins over numpy's per-call overhead; above, numpy's SIMD
# compare + count_nonzero is ~3x faster than bytes.count (measured: 9 vs 3.4 GB/s).
_NUMPY_MIN = 1 << 16
_NUMPY_SLICE = 16 << 20
# Parity checks done one newline at a time before switching to a numpy window: quoted fields
# with many newlines would otherwise cost a Python iteration per line.
_SCALAR_TRIES = 8
_WINDOW_MIN = 1 << 16
_WINDOW_MAX = 1 << 22
# Up to this many quotes in a window, walk its even-parity runs with bytes.find (memchr); more
# (quote-dense text) and a numpy cumsum over the window is cheaper than a Python loop per run.
_SPARSE_QUOTES = 1024
# "Content" = any byte that is not part of a line terminator; a chunk without one holds no record.
_CONTENT = re.compile(rb"[^\r\n]")

DEFAULT_BLOCK_SIZE = 8 * 1024 * 1024
# RUN12: a chunk also ends once it holds chunk_size / LINE_BYTES lines (the first record
# boundary after that), so blank-line floods and millions of tiny rows are split like big rows:
# per-line costs (a reject is a few hundred bytes of Python objects) stay bounded by the chunk.
# Rows of the usual width (~130 bytes) reach the byte target first; see docs/splitting.md.
LINE_BYTES = 96


def line_cap(chunk_size: int) -> int:
    """The most lines a chunk of ``chunk_size`` bytes may start to hold (RUN12)."""
    return max(1, chunk_size // LINE_BYTES)


# Blocks may be any bytes-like object (S3 bodies give bytes; a benchmark may give mmap slices).
BytesLike = Union[bytes, bytearray, memoryview]


class SupportsRead(Protocol):
    """What :func:`split_stream` needs from its stream (``BinaryIO``, ``GzipFile``, S3 bodies)."""

    def read(self, size: int = ..., /) -> bytes: ...


@dataclass(frozen=True)
class ChunkRange:
    """One record-aligned byte range of an object (or of a chunk body, see :func:`split_stream`).

    ``index`` is 1-based (``CHUNK#00001``); ``end`` is exclusive; ``first_line`` is the 1-based
    physical line number (count of LF before ``start``, plus one) of the chunk's first byte in the
    original file, the header being line 1.
    """

    index: int
    start: int
    end: int
    first_line: int


class _Scanner:
    """Incremental quote-parity scanner shared by :func:`plan_chunks` and :func:`split_stream`.

    Feed consecutive blocks of the input starting at byte 0 with :meth:`feed`; each call returns
    the cuts (``(offset, line)``: absolute offset where the next chunk starts, and its line
    number) that became final; :meth:`finish` validates the end of input and returns the last.
    """

    def __init__(
        self,
        data_start: int,
        chunk_size: int,
        max_record_bytes: int,
        delimiter: str = ",",
        max_lines: int | None = None,
    ) -> None:
        if data_start < 0:
            raise ValueError(f"data_start must be >= 0, got {data_start}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if max_record_bytes < 1:
            raise ValueError(f"max_record_bytes must be >= 1, got {max_record_bytes}")
        if len(delimiter) != 1 or ord(delimiter) > 127 or delimiter in '"\r\n':
            raise ValueError(
                f"delimiter must be one ASCII character other than a quote or newline, got {delimiter!r}"
            )
        if max_lines is not None and max_lines < 1:
            raise ValueError(f"max_lines must be >= 1 or None, got {max_lines}")
        self.delim = ord(delimiter)
        # RUN9: the bytes allowed before an opening quote and after a closing one.
        self._allowed = np.zeros(256, dtype=bool)
        self._allowed[[self.delim, _LF, _QUOTE]] = True
        self._q = np.zeros(0, dtype=np.int64)  # the block's quote positions from _q_lo on
        self._q_lo = 0
        self.max_lines = _NO_LINE_CAP if max_lines is None else max_lines
        # RUN12: a chunk is also cut once it holds max_lines lines: the LF count (nl) at which
        # the current chunk reaches it.
        self.line_target = _NO_LINE_CAP
        # RUN9 state across blocks: the byte before the block, and a closing quote at the end of
        # the previous block whose following byte(s) are still unseen (1: the quote was the last
        # byte; 2: quote + CR were the last bytes), with its offset and line.
        self.prev_byte = _LF
        self.tail_state = 0
        self._last_content: int | None = None  # local offset past the block's last non-blank byte
        self.data_start = data_start
        self.chunk_size = chunk_size
        self.max_record = max_record_bytes
        self.pos = 0  # absolute offset of the next block
        self.par = 0  # quote parity at the cursor, counted from data_start
        self.nl = 0  # LF count in [0, cursor)
        self.data_line = 1  # line number of data_start (known once the header bytes are counted)
        self.target = data_start + chunk_size  # a cut must be at or after this offset
        self.rec_start = data_start  # start of the record that contains the cursor
        self.rec_line = 1
        self.seen_content = False
        self.first_content: int | None = None  # offset of the first non-blank data byte
        # A cut waits here until a non-blank byte is seen after it (None: not seen yet).
        self.pending: tuple[int, int] | None = None
        self.pending_content: int | None = None
        self._out: list[tuple[int, int]] = []
        # Current block.
        self._buf = b""
        self._arr = np.empty(0, dtype=np.uint8)
        self._base = 0
        self._cur = 0  # local cursor: parity and LF count are known up to here

    # -- public --------------------------------------------------------------------------------

    def feed(self, block: BytesLike) -> list[tuple[int, int]]:
        """Scan the next block; return the cuts that became final."""
        if not isinstance(block, bytes):
            block = bytes(block)  # bytes.find/count need bytes; a copy is ~30 GB/s
        n = len(block)
        base = self.pos
        self.pos = base + n
        if n == 0:
            return []
        self._buf = block
        self._last_content = None
        self._arr = np.frombuffer(block, dtype=np.uint8)
        self._base = base
        self._cur = 0
        lo = 0
        if base < self.data_start:
            # Header bytes: their LFs count for line numbers, their quotes do not count for
            # parity (parse_header guarantees the header ends at even parity).
            lo = min(n, self.data_start - base)
            self.nl += self._count(0, lo, _LF)
            self._cur = lo
            if base + lo == self.data_start:
                self.data_line = self.rec_line = self.nl + 1
                self.line_target = self.nl + self.max_lines
            if lo == n:
                self.prev_byte = block[-1]
                return []
        elif base == self.data_start == 0:
            self.line_target = self.max_lines
        self._check_quotes(lo)
        if not self.seen_content or (self.pending is not None and self.pending_content is None):
            m = _CONTENT.search(block, lo)
            if m is not None:
                if not self.seen_content:
                    self.seen_content = True
                    self.first_content = base + m.start()
                if self.pending is not None and self.pending_content is None:
                    self.pending_content = base + m.start()
                    if self.pending_content < self.target:
                        self._confirm()
        # Segments of at most max_record bytes: a record lying between two boundaries found in
        # the same segment is then shorter than max_record without being looked at.
        seg = lo
        while seg < n:
            seg_end = min(n, seg + self.max_record)
            self._scan_segment(seg, seg_end)
            seg = seg_end
        self.prev_byte = block[-1]
        out, self._out = self._out, []
        return out

    def finish(self) -> list[tuple[int, int]]:
        """Validate the end of input; return the cuts that became final."""
        if self.pending is not None:
            if self.pending_content is not None:
                self._confirm()
            else:
                self.pending = None  # only blank lines after it: they stay in the last chunk
        if self.par:
            raise MalformedCsv(
                f"unterminated quoted field: the quote count is odd at end of file; the unclosed "
                f"quote is in the record starting at byte {self.rec_start} (line {self.rec_line})"
            )
        if not self.seen_content:
            raise EmptyFile("no data rows after the header")
        self.tail_state = 0  # a closing quote (+ CR) at the end of the file is fine
        out, self._out = self._out, []
        return out

    # -- scanning ------------------------------------------------------------------------------

    def _scan_segment(self, s: int, e: int) -> None:
        base = self._base
        x = self._find_forward(s, e)
        if x < 0:
            if base + e - self.rec_start > self.max_record:
                self._too_large()
            return
        if base + x + 1 - self.rec_start > self.max_record:
            self._too_large()
        b = x
        while True:
            if base + b + 1 >= self.target or self.nl >= self.line_target:
                self._cut(b + 1)
            t = self._search_from(e)
            if t >= e:
                break
            b2 = self._find_forward(max(t, self._cur), e)
            if b2 < 0:
                break
            b = b2
        # Last boundary of the segment -> start of the record that continues into the next one.
        self._advance(e)
        last = self._find_backward(b + 1, e)
        if last < 0:
            last = b
        self.rec_start = base + last + 1
        self.rec_line = self.nl + 1 - self._buf.count(b"\n", last + 1, e)

    def _too_large(self) -> None:
        raise RecordTooLarge(
            f"the record starting at byte {self.rec_start} (line {self.rec_line}) is longer than "
            f"the maximum record size of {self.max_record} bytes (an unbalanced quote makes the "
            f"rest of the file one record)"
        )

    def _cut(self, c: int) -> None:
        """A record boundary at local offset ``c`` reached the chunk target."""
        cut = self._base + c
        if self.pending is not None:
            # RUN12: blank lines count like any bytes (and lines): a run of them that reaches
            # the chunk size (or line cap) is a chunk of its own, never merged into a neighbour
            # (memory stays bounded by the chunk). Only a blank tail shorter than a chunk at
            # the end of the file joins the last chunk (finish).
            self._confirm()
        self.pending = (cut, self.nl + 1)
        self.target = cut + self.chunk_size
        self.line_target = self.nl + self.max_lines
        # Content before the next target confirms the cut at once; the search stops there, so
        # a flood of blank lines is searched once, not once per cut.
        n = len(self._buf)
        m = _CONTENT.search(self._buf, c, min(n, max(c, self.target - self._base)))
        if m is not None:
            self.pending_content = self._base + m.start()
        elif self._content_end() > c:
            self.pending_content = self._base + self._content_end() - 1  # somewhere after the target
        else:
            self.pending_content = None
        # The next cut is >= target, so content before target means this chunk has a record.
        if self.pending_content is not None and self.pending_content < self.target:
            self._confirm()

    def _search_from(self, e: int) -> int:
        """Local offset from which the boundary ending the current chunk is searched: the byte
        target, or (RUN12) the LF completing ``max_lines`` lines if that comes first in ``[cursor,
        e)``. Counting up to the byte target is work the search does anyway; only when the line
        cap falls inside it are the LFs located (a line-dense stretch) and the cursor recounted."""
        t = self.target - 1 - self._base  # the LF ending a chunk is at or after target - 1
        if self.line_target >= _NO_LINE_CAP:
            return t
        cur, par, nl = self._cur, self.par, self.nl
        stop = min(t, e)
        if stop <= cur:
            return t
        self._advance(stop)
        if self.nl < self.line_target:
            return t
        lfs = np.flatnonzero(self._arr[cur:stop] == _LF)
        x = cur + int(lfs[self.line_target - nl - 1])
        self._cur, self.par, self.nl = cur, par, nl
        self._advance(x)
        return x

    def _check_quotes(self, lo: int) -> None:
        """RUN9: every quote of the block (from local ``lo``) at a position RFC 4180 allows.

        With quote parity counted from the data start, a quote at even parity opens a quoted
        field: the byte before it must be the delimiter, an LF (record start) or a quote (the
        second of a doubled pair); a quote at odd parity closes one (or is the first of a pair):
        the byte after it must be the delimiter, LF, CR LF, a quote, or the end of the file.
        Vectorised over the quote positions (sparse in real data); slices keep temporaries
        bounded. Raises :class:`MalformedCsv` naming the lines of the first misplaced quotes."""
        arr, n = self._arr, len(self._buf)
        bad: list[tuple[int, str]] = []
        lo = self._check_tail(lo, bad)
        parts = [
            np.flatnonzero(arr[s : s + _QUOTE_CHECK_SLICE] == _QUOTE) + s
            for s in range(lo, n, _QUOTE_CHECK_SLICE)
        ]
        # Kept for the block: quote counts become binary searches (_count), no second pass.
        self._q = q = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        self._q_lo = lo
        if q.size:
            # Quote k has parity (par + k) & 1 before it: even ones open, odd ones close.
            self._check_opening(q[self.par :: 2], bad)
            self._check_closing(q[1 - self.par :: 2], bad)
        if bad:
            self._misplaced(bad)

    def _check_tail(self, lo: int, bad: list[tuple[int, str]]) -> int:
        """Settle a closing quote left at the end of the previous block; returns ``lo``."""
        buf, n = self._buf, len(self._buf)
        if self.tail_state == 0 or lo >= n:
            return lo
        # The quote is the last byte of the previous block (state 1) or the one before (2: a CR
        # followed it): local offset -1 or -2.
        state, self.tail_state = self.tail_state, 0
        b0 = buf[lo]
        if state == 1 and b0 in (self.delim, _LF, _QUOTE):
            return lo
        if state == 1 and b0 == _CR:
            if lo + 1 >= n:
                self.tail_state = 2  # the LF that must follow is in the next block
            elif buf[lo + 1] != _LF:
                bad.append((-1, "a closing quote followed by a bare CR"))
            return lo
        if state == 2 and b0 == _LF:
            return lo
        bad.append((-state, _after_closing(b0 if state == 1 else _CR)))
        return lo

    def _check_opening(self, q: np.ndarray, bad: list[tuple[int, str]]) -> None:
        if q.size == 0:
            return
        if q[0] == 0:  # the byte before is the previous block's last
            if not self._allowed[self.prev_byte]:
                bad.append((0, "a quote inside an unquoted field"))
            q = q[1:]
        wrong = q[~self._allowed[self._arr[q - 1]]]
        for p in wrong[:_MAX_REPORTED_QUOTES].tolist():
            bad.append((p, "a quote inside an unquoted field"))

    def _check_closing(self, q: np.ndarray, bad: list[tuple[int, str]]) -> None:
        if q.size == 0:
            return
        arr, n = self._arr, len(self._buf)
        last = int(q[-1])
        if last == n - 1:  # the byte after it is in the next block (or the end of the file)
            self.tail_state = 1
            q = q[:-1]
            if q.size == 0:
                return
        # Delimiter, LF or quote after it: fine (a lookup table, one pass over the quotes).
        others = q[~self._allowed[arr[q + 1]]]
        for p in others.tolist():  # CR (then LF must follow) or a misplaced quote: few
            if arr[p + 1] == _CR and p + 2 >= n:
                self.tail_state = 2  # quote + CR end the block: the LF is in the next one
            elif arr[p + 1] != _CR or arr[p + 2] != _LF:
                bad.append((p, _after_closing(int(arr[p + 1]))))
                if len(bad) >= _MAX_REPORTED_QUOTES:
                    break

    def _misplaced(self, bad: list[tuple[int, str]]) -> None:
        """Raise MalformedCsv naming the line and byte of each misplaced quote."""
        buf, base = self._buf, self._base
        bad.sort()
        where = []
        for p, what in bad[:_MAX_REPORTED_QUOTES]:
            # The cursor is at the start of the checked bytes; a quote of the previous block
            # (p < 0) has no LF after it.
            line = self.nl + (buf.count(b"\n", self._cur, p) if p >= 0 else 0) + 1
            where.append(f"line {line} (byte {base + p}): {what}")
        raise MalformedCsv(
            "quote at a position RFC 4180 does not allow, found before any row was processed: "
            + "; ".join(where)
            + ". A field holding quotes must be quoted as a whole, its quotes doubled "
            '(a"b -> "a""b"); a closing quote must be followed by the delimiter or the line end'
        )

    def _content_end(self) -> int:
        """Local offset just past the block's last non-blank byte (0 if none); computed once."""
        if self._last_content is None:
            self._last_content = len(self._buf.rstrip(b"\r\n"))
        return self._last_content

    def _confirm(self) -> None:
        assert self.pending is not None
        self._out.append(self.pending)
        self.pending = None
        self.pending_content = None

    def _count(self, lo: int, hi: int, byte: int) -> int:
        if byte == _QUOTE and lo >= self._q_lo:
            q = self._q
            return int(np.searchsorted(q, hi)) - int(np.searchsorted(q, lo))
        if hi - lo < _NUMPY_MIN:
            return self._buf.count(b'"' if byte == _QUOTE else b"\n", lo, hi)
        # The comparison makes a temporary bool array: bound it when a caller passes huge blocks.
        arr = self._arr
        return sum(
            int(np.count_nonzero(arr[a : min(hi, a + _NUMPY_SLICE)] == byte))
            for a in range(lo, hi, _NUMPY_SLICE)
        )

    def _advance(self, p: int) -> None:
        """Move the cursor to local offset ``p``, counting quotes and LFs on the way."""
        cur = self._cur
        if p <= cur:
            return
        if self._count(cur, p, _QUOTE) & 1:
            self.par ^= 1
        self.nl += self._count(cur, p, _LF)
        self._cur = p

    def _find_forward(self, lo: int, hi: int) -> int:
        """First LF at even parity in local ``[lo, hi)``; cursor moves past it (or to ``hi``)."""
        self._advance(lo)
        buf = self._buf
        for _ in range(_SCALAR_TRIES):
            x = buf.find(b"\n", self._cur, hi)
            if x < 0:
                self._advance(hi)
                return -1
            self._advance(x)
            self._cur = x + 1
            self.nl += 1
            if not self.par:
                return x
        return self._find_forward_window(hi)

    def _find_forward_window(self, hi: int) -> int:
        """Vectorised continuation of :meth:`_find_forward` over doubling windows."""
        buf = self._buf
        width = _WINDOW_MIN
        while self._cur < hi:
            a = self._cur
            b = min(hi, a + width)
            win = self._arr[a:b]
            qpos = np.flatnonzero(win == _QUOTE)
            if qpos.size <= _SPARSE_QUOTES:
                # Quotes cut the window into runs of constant parity; memchr each even run.
                edges = [a, *(qpos + a).tolist(), b]
                for i in range(self.par, len(edges) - 1, 2):
                    x = buf.find(b"\n", edges[i], edges[i + 1])
                    if x >= 0:
                        self.par = 0
                        self.nl += buf.count(b"\n", a, x) + 1
                        self._cur = x + 1
                        return x
                self.par ^= qpos.size & 1
                self.nl += self._count(a, b, _LF)
            else:
                quotes = np.cumsum(win == _QUOTE, dtype=np.int64)  # quotes in [a, a+i]
                lfs = np.flatnonzero(win == _LF)
                # An LF is not a quote, so the inclusive count at an LF is the parity before it.
                even = np.flatnonzero(((quotes[lfs] + self.par) & 1) == 0)
                if even.size:
                    k = int(even[0])
                    x = a + int(lfs[k])
                    self.par = 0
                    self.nl += k + 1
                    self._cur = x + 1
                    return x
                self.par = (self.par + int(quotes[-1])) & 1
                self.nl += int(lfs.size)
            self._cur = b
            width = min(width * 2, _WINDOW_MAX)
        return -1

    def _find_backward(self, lo: int, hi: int) -> int:
        """Last LF at even parity in local ``[lo, hi)``; the cursor must be at ``hi``."""
        buf = self._buf
        par = self.par  # parity at p
        p = hi
        for _ in range(_SCALAR_TRIES):
            x = buf.rfind(b"\n", lo, p)
            if x < 0:
                return -1
            par ^= buf.count(b'"', x, p) & 1
            if not par:
                return x
            p = x
        width = _WINDOW_MIN
        while p > lo:
            a = max(lo, p - width)
            win = self._arr[a:p]
            qpos = np.flatnonzero(win == _QUOTE)
            if qpos.size <= _SPARSE_QUOTES:
                edges = [a, *(qpos + a).tolist(), p]
                # The last run has the parity at p; each quote further back flips it.
                for i in range(len(edges) - 2 - par, -1, -2):
                    x = buf.rfind(b"\n", edges[i], edges[i + 1])
                    if x >= 0:
                        return x
                par ^= qpos.size & 1
            else:
                quotes = np.cumsum(win == _QUOTE, dtype=np.int64)
                total = int(quotes[-1])
                lfs = np.flatnonzero(win == _LF)
                # Parity at an LF = parity at p + quotes in [LF, p) = par + total - inclusive count.
                even = np.flatnonzero(((par + total - quotes[lfs]) & 1) == 0)
                if even.size:
                    return a + int(lfs[int(even[-1])])
                par = (par + total) & 1
            p = a
            width = min(width * 2, _WINDOW_MAX)
        return -1


def _after_closing(byte: int) -> str:
    if byte == _CR:
        return "a closing quote followed by a bare CR"
    return f"a closing quote followed by {bytes([byte])!r} instead of the delimiter or the line end"


def plan_chunks(
    blocks: Iterable[BytesLike],
    data_start: int,
    total_size: int,
    chunk_size: int,
    max_record_bytes: int,
    *,
    delimiter: str = ",",
    max_lines: int | None = None,
) -> list[ChunkRange]:
    """Plan record-aligned chunks of an object that is read once, block by block.

    ``blocks`` are consecutive pieces of the object starting at byte 0 (any sizes; bytes-like);
    ``data_start`` is the offset of the first data byte (``HeaderInfo.header_bytes``, BOM and
    header terminator included). The returned ranges tile ``[data_start, total_size)`` exactly,
    in order, each starting at a record boundary.

    Raises :class:`~etl.errors.MalformedCsv` (odd quote count at EOF: unterminated quoted field),
    :class:`~etl.errors.RecordTooLarge` (a record longer than ``max_record_bytes``, terminator
    included), :class:`~etl.errors.EmptyFile` (no non-blank byte after the header), and
    ``ValueError`` when the blocks do not add up to ``total_size``.
    """
    if not 0 <= data_start <= total_size:
        raise ValueError(f"data_start {data_start} outside [0, total_size={total_size}]")
    scanner = _Scanner(data_start, chunk_size, max_record_bytes, delimiter, max_lines)
    cuts: list[tuple[int, int]] = []
    for block in blocks:
        cuts.extend(scanner.feed(block))
        if scanner.pos > total_size:
            raise ValueError(f"blocks hold more than total_size={total_size} bytes")
    if scanner.pos != total_size:
        raise ValueError(f"blocks ended at byte {scanner.pos}, expected total_size={total_size}")
    cuts.extend(scanner.finish())
    ranges = []
    start, line = data_start, scanner.data_line
    for index, (cut, cut_line) in enumerate(cuts, start=1):
        ranges.append(ChunkRange(index, start, cut, line))
        start, line = cut, cut_line
    ranges.append(ChunkRange(len(cuts) + 1, start, total_size, line))
    return ranges


def _read_block(stream: SupportsRead, size: int) -> bytes:
    """The next block of a (gzip) stream; gzip's errors become :class:`CorruptGzip`."""
    try:
        return stream.read(size)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise CorruptGzip(f"the gzip stream is corrupt or truncated: {exc}") from exc


def _take_bytes(pieces: list[memoryview], need: int) -> list[memoryview]:
    """Remove the first ``need`` bytes from ``pieces`` and return them (as views)."""
    parts: list[memoryview] = []
    while need:
        piece = pieces[0]
        if len(piece) <= need:
            parts.append(piece)
            need -= len(piece)
            pieces.pop(0)
        else:
            parts.append(piece[:need])
            pieces[0] = piece[need:]
            need = 0
    return parts


def split_stream(
    stream: SupportsRead,
    header: bytes,
    chunk_size: int,
    max_record_bytes: int,
    block_size: int = DEFAULT_BLOCK_SIZE,
    *,
    delimiter: str = ",",
    max_lines: int | None = None,
) -> Iterator[tuple[ChunkRange, bytes]]:
    """Split a (decompressed gzip) stream into self-contained chunk bodies, reading it once.

    ``stream`` is positioned at byte 0 of the decompressed object, which must begin with
    ``header`` (the header line as :func:`~etl.core.header.parse_header` measured it: BOM and
    terminator included). Yields ``(range, body)`` where ``body = header + records`` and
    ``range`` is relative to the body: ``start = len(header)``, ``end = len(body)``,
    ``first_line`` = line number in the original file. The cut rules and errors are those of
    :func:`plan_chunks` (same scanner); errors about the end of the input (unterminated quote)
    are raised after the earlier chunks were yielded, so a caller must treat any exception as
    failing the whole file. A truncated or corrupt gzip stream raises
    :class:`~etl.errors.CorruptGzip`. Memory: about two chunks plus one block.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    hlen = len(header)
    scanner = _Scanner(hlen, chunk_size, max_record_bytes, delimiter, max_lines)
    pieces: list[memoryview] = []  # the bytes of [chunk_start, scanner.pos)
    chunk_start, chunk_line = hlen, 1
    index = 0
    head_seen = b""
    header_checked = False

    def take(cut: int, line: int) -> tuple[ChunkRange, bytes]:
        nonlocal chunk_start, chunk_line, index
        body = b"".join([header, *_take_bytes(pieces, cut - chunk_start)])
        index += 1
        rng = ChunkRange(index, hlen, len(body), chunk_line)
        chunk_start, chunk_line = cut, line
        return rng, body

    while True:
        block = _read_block(stream, block_size)
        if not block:
            break
        base = scanner.pos
        if base < hlen:
            head_seen += block[: hlen - base]
        cuts = scanner.feed(block)
        if not header_checked and scanner.pos >= hlen:
            if head_seen != header:
                raise ValueError("the stream does not start with the given header")
            header_checked = True
            chunk_line = scanner.data_line
        if scanner.pos > hlen:
            pieces.append(memoryview(block)[max(0, hlen - base) :])
        for cut, line in cuts:
            yield take(cut, line)
    if scanner.pos < hlen:
        if head_seen != header[: len(head_seen)]:
            raise ValueError("the stream does not start with the given header")
        raise EmptyFile("the stream ends inside the header: no data rows")
    for cut, line in scanner.finish():
        yield take(cut, line)
    yield take(scanner.pos, 0)
