"""Record scan of a chunk (RUN3, RUN8, RUN9): every record's byte range and physical line.

One numpy pass finds every ``"`` and ``\\n`` (in 4 MiB slices, so temporaries stay small); a
``\\n`` preceded by an even number of quotes ends a record (RFC 4180 quote parity). This gives
every record's byte range and its *physical* line number even when quoted fields hold newlines,
and detects an unterminated quote before parsing. Also here: mapping the rows the parser skipped
back to their records, bare-CR detection, and masking invalid UTF-8 (the slow path).

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etl.core import workers
from etl.errors import InvalidEncoding, MalformedCsv

# More invalid UTF-8 sequences than this in one chunk: it is not text, fail the chunk.
MAX_ENCODING_ERRORS = 10_000
_QUOTE, _LF, _CR = 34, 10, 13
# Chunks from this size on are scanned on two threads (quotes and line feeds side by side).
PARALLEL_MIN_BYTES = 4 << 20


@dataclass
class Records:
    """Byte ranges and line numbers of the data records of a chunk (header excluded)."""

    starts: np.ndarray  # offsets into the chunk bytes
    ends: np.ndarray  # exclusive, before the line terminator (\r\n or \n)
    lines: np.ndarray  # 1-based physical line number of each record's first line
    header_end: int  # offset just past the header's terminator
    # Offsets of every '"' in the chunk (sparse; lets the parser check quote placement cheaply).
    quotes: np.ndarray | None = None


def scan_records(data: bytes, base: int, first_line: int) -> Records:
    """Record byte ranges and physical line numbers by RFC 4180 quote parity (numpy, no loop)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if len(buf) >= PARALLEL_MIN_BYTES and workers.parallel():
        # numpy's comparisons release the GIL: quotes on a worker while this thread finds LFs.
        pending = workers.pool().submit(byte_positions, buf, _QUOTE)
        newlines = byte_positions(buf, _LF)
        quotes = pending.result()
    else:
        quotes = byte_positions(buf, _QUOTE)
        newlines = byte_positions(buf, _LF)
    if quotes.size % 2:
        # The last quote opens a field that never closes: report the line it starts on
        # (the header is one line; records start at first_line).
        k = int(np.searchsorted(newlines, quotes[-1]))
        raise MalformedCsv(f"unterminated quoted field starting on line {first_line + k - 1}")
    # A \n is a record terminator when an even number of quotes precede it.
    term_idx = np.flatnonzero((np.searchsorted(quotes, newlines) & 1) == 0)
    terms = newlines[term_idx]
    n = len(data)
    if terms.size == 0:
        # Header without a terminator (or an empty chunk): no records.
        empty = np.zeros(0, dtype=np.int64)
        return Records(empty, empty, empty, n)
    header_end = int(terms[0]) + 1
    starts = terms + 1  # a record starts after each terminator ...
    ends = np.empty_like(starts)
    ends[:-1] = terms[1:]
    ends[-1] = n
    # ... and record k's line = first_line + newlines between the header's end and its start.
    lines = first_line + (term_idx - term_idx[0])
    # Strip the \r of CRLF terminators (and of a final unterminated record).
    if ends.size:
        cr = np.zeros(ends.size, dtype=bool)
        nz = ends > starts
        cr[nz] = buf[ends[nz] - 1] == _CR
        ends = ends - cr
    # Drop empty records (blank lines, the nothing after the final newline): pyarrow skips
    # blank lines too, and they carry no data.
    nonempty = ends > starts
    return Records(starts[nonempty], ends[nonempty], lines[nonempty], header_end, quotes)


_SCAN_BLOCK = 4 << 20


def byte_positions(buf: np.ndarray, byte: int) -> np.ndarray:
    """Offsets of ``byte`` in ``buf``, scanned in blocks so the temporary mask stays small."""
    parts = []
    for lo in range(0, len(buf), _SCAN_BLOCK):
        hits = np.flatnonzero(buf[lo : lo + _SCAN_BLOCK] == byte)
        parts.append(hits + lo if lo else hits)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def check_bare_cr(data: bytes, base: int, first_line: int) -> None:
    """A CR not followed by LF outside quotes ends a line for pyarrow but not for the scan."""
    n_cr = data.count(b"\r")
    if n_cr == 0 or n_cr == data.count(b"\r\n"):
        return
    buf = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(buf == _QUOTE)
    newlines = np.flatnonzero(buf == _LF)
    crs = np.flatnonzero(buf == _CR)
    crs = crs[crs < len(data) - 1]  # a final CR ends the last record: fine for both
    bare = crs[buf[crs + 1] != _LF]
    outside = bare[(np.searchsorted(quotes, bare) & 1) == 0]
    if outside.size:
        line = int(np.searchsorted(newlines, outside[0])) + 1
        raise MalformedCsv(
            f"bare CR line terminator outside quotes on line {line} of the chunk "
            f"(file line ~{first_line + line - 2}); only LF or CRLF are supported"
        )


def record_text(data: bytes, recs: Records, i: int) -> str:
    return data[int(recs.starts[i]) : int(recs.ends[i])].decode("utf-8", errors="backslashreplace")


def locate_rows(text: bytes, recs: Records, row_texts: list[str]) -> np.ndarray:
    """Record index of each row pyarrow handed to the invalid-row handler, by its raw text.

    Rows arrive in file order, so a cursor makes this one forward pass; a candidate must start
    exactly at a record start and span the whole record (so substrings of other rows never match).
    """
    out = np.empty(len(row_texts), dtype=np.int64)
    cursor = 0
    used = set()
    for j, t in enumerate(row_texts):
        needle = t.encode("utf-8")
        pos = text.find(needle, cursor)
        wrapped = False
        while True:
            if pos < 0:
                if wrapped:
                    raise MalformedCsv(f"cannot locate a row with a wrong field count: {t[:80]!r}")
                wrapped = True
                pos = text.find(needle, 0)
                continue
            k = int(np.searchsorted(recs.starts, pos))
            if (
                k < len(recs.starts)
                and recs.starts[k] == pos
                and recs.ends[k] - pos == len(needle)
                and k not in used
            ):
                break
            pos = text.find(needle, pos + 1)
        used.add(k)
        out[j] = k
        cursor = pos + len(needle)
    return out


def mask_invalid_utf8(data: bytes, base: int, recs: Records) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Replace invalid UTF-8 bytes by '?'; return the text, the record of each, their offsets."""
    fixed = bytearray(data)
    positions: list[int] = []
    pos = base
    n = len(data)
    while pos < n:
        try:
            data[pos:].decode("utf-8")
            break
        except UnicodeDecodeError as exc:
            start, end = pos + exc.start, pos + exc.end
            for p in range(start, end):
                fixed[p] = 0x3F
                positions.append(p)
            if len(positions) > MAX_ENCODING_ERRORS:
                raise InvalidEncoding(
                    f"more than {MAX_ENCODING_ERRORS} invalid UTF-8 sequences in the chunk: not UTF-8 text"
                ) from None
            pos = end
    pos_arr = np.asarray(positions, dtype=np.int64)
    if pos_arr.size and pos_arr[0] < recs.header_end:
        raise InvalidEncoding("the header line is not valid UTF-8")
    rec_of = np.searchsorted(recs.starts, pos_arr, side="right") - 1
    return bytes(fixed), rec_of, pos_arr


def has_invalid_utf8(data: bytes, base: int) -> bool:
    try:
        data[base:].decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def parse_block_size(recs: Records) -> int:
    """pyarrow's reader needs every record inside one block: room for the longest, twice."""
    longest = int((recs.ends - recs.starts).max()) if len(recs.starts) else 0
    return max(8 << 20, 2 * longest + (1 << 20), recs.header_end + (1 << 20))
