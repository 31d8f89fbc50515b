"""Header parsing and validation against a partner schema (RUN2, RUN8).

``parse_header`` looks only at the *head* of the object (one ranged read): it finds the header
line with the same quote-parity rule as the boundary scan (a header may itself be quoted per
RFC 4180), checks encoding, parses the names with the ``csv`` module in strict mode and compares
them with ``schema.source_columns`` exactly (names and order). The resulting ``header_bytes`` is
where record data starts (``plan_chunks``' ``data_start``).

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import Counter
from dataclasses import dataclass
from typing import Any

from etl.errors import EmptyFile, InvalidEncoding, MalformedCsv, RecordTooLarge, SchemaMismatch

BOM = codecs.BOM_UTF8
# Delimiters to suggest when the schema's delimiter does not occur in the header at all.
_OTHER_DELIMITERS = (",", ";", "\t", "|")
_MAX_LISTED = 12  # keep SchemaMismatch messages readable with wide schemas


@dataclass(frozen=True)
class HeaderInfo:
    """What the header line says about the file.

    ``header_bytes``: bytes from the start of the object up to and including the header's line
    terminator (BOM included): the offset of the first data byte. ``crlf``: the header line
    ends with CRLF (informational; records may use either terminator).
    """

    header_bytes: int
    columns: list[str]
    has_bom: bool
    crlf: bool


def parse_header(head: bytes, schema: Any, object_size: int) -> HeaderInfo:
    """Parse and validate the header line found at the start of ``head``.

    ``head`` is the first bytes of the object (a prefix; the whole object if it is small);
    ``schema`` needs ``source_columns`` (expected names in order) and ``delimiter``; an optional
    ``schema_id`` is quoted in messages. ``object_size`` is the full size of the object.

    Raises, in this order of checks:

    * :class:`~etl.errors.EmptyFile` for a 0-byte object (or a BOM alone);
    * :class:`~etl.errors.InvalidEncoding` for bytes that are not UTF-8 text: invalid UTF-8 or
      NUL bytes anywhere in ``head`` (a binary file, a gzip or zip body under a ``.csv`` name);
    * :class:`~etl.errors.RecordTooLarge` when ``head`` holds no line terminator and is shorter
      than the object (the header line is longer than the head that was read);
    * :class:`~etl.errors.MalformedCsv` for an unterminated quote in the header, bare-CR line
      endings or bad quoting in the header;
    * :class:`~etl.errors.SchemaMismatch` naming missing, unexpected, duplicate and out-of-order
      columns (names are compared exactly: case and spaces matter);
    * :class:`~etl.errors.EmptyFile` ("no data rows") when nothing but the header (and blank
      lines) is in the object.
    """
    if object_size == 0 or not head:
        if object_size == 0:
            raise EmptyFile("the object is empty (0 bytes)")
        raise ValueError(f"head is empty but object_size is {object_size}")
    has_bom = head.startswith(BOM)
    pos = len(BOM) if has_bom else 0
    whole = len(head) >= object_size
    if whole and pos >= object_size:
        raise EmptyFile("the object holds only a UTF-8 byte order mark")
    _check_text(head, whole)

    end = _header_end(head, pos)
    if end < 0:
        if not whole and head.find(b"\n", pos) >= 0:
            # LFs exist, but every one of them is inside quotes: a quote is never closed.
            raise MalformedCsv(f"unterminated quoted field in the header line (first {len(head)} bytes)")
        if whole and head.count(b'"', pos) % 2:
            raise MalformedCsv("unterminated quoted field in the header line")
        if head.find(b"\r", pos) >= 0:
            raise MalformedCsv("lines end with a bare CR (old Mac style); use LF or CRLF")
        if not whole:
            raise RecordTooLarge(
                f"no line terminator in the first {len(head)} bytes: the header line is longer "
                f"than the head that was read (object is {object_size} bytes)"
            )
        end = len(head)  # a header without terminator and nothing else: checked, then EmptyFile
    header_bytes = end
    crlf = head[:end].endswith(b"\r\n")
    text = head[pos:end].decode("utf-8")  # already validated
    columns = _split_columns(text, schema.delimiter)
    _compare(columns, list(schema.source_columns), schema, text)

    if header_bytes >= object_size or (whole and not head[header_bytes:].strip(b"\r\n")):
        raise EmptyFile("no data rows: the file holds only the header line")
    return HeaderInfo(header_bytes=header_bytes, columns=columns, has_bom=has_bom, crlf=crlf)


def check_header_line(line: bytes, schema: Any) -> list[str]:
    """Check one header line (BOM excluded, terminator optional) against ``schema``: the same
    name comparison as :func:`parse_header`, for callers that hold the line already (a chunk's
    first line in :func:`etl.core.process.process_chunk`). Returns the column names."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEncoding("the header line is not valid UTF-8") from None
    if text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    columns = _split_columns(text, schema.delimiter) if text else []
    _compare(columns, list(schema.source_columns), schema, text)
    return columns


def _check_text(head: bytes, whole: bool) -> None:
    """Reject non-UTF-8 and NUL bytes; a head cut inside a multi-byte character is fine."""
    nul = head.find(b"\0")
    if nul >= 0:
        raise InvalidEncoding(f"NUL byte at offset {nul}: this is not a text CSV file")
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    try:
        decoder.decode(head, final=whole)
    except UnicodeDecodeError as exc:
        raise InvalidEncoding(
            f"invalid UTF-8 at byte offset {exc.start} ({head[exc.start : exc.start + 4]!r}): "
            f"the file must be UTF-8 encoded"
        ) from exc


def _header_end(head: bytes, pos: int) -> int:
    """Offset just past the first LF at even quote parity after ``pos``, or -1."""
    x = head.find(b"\n", pos)
    while x >= 0:
        if head.count(b'"', pos, x) % 2 == 0:
            return x + 1
        x = head.find(b"\n", x + 1)
    return -1


def _split_columns(text: str, delimiter: str) -> list[str]:
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        raise MalformedCsv(f"bad quoting in the header line: {exc}") from exc
    if len(rows) != 1:
        # A bare CR inside an unquoted header splits it into several rows.
        raise MalformedCsv("the header line contains a bare CR outside quotes")
    return rows[0]


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _compare(got: list[str], expected: list[str], schema: Any, text: str) -> None:
    if got == expected:
        return
    problems = []
    missing = [n for n in expected if n not in got]
    unexpected = [n for n in got if n not in expected]
    duplicates = sorted(n for n, k in Counter(got).items() if k > 1)
    if missing:
        problems.append("missing columns: " + _names(missing))
    if unexpected:
        problems.append("unexpected columns: " + _names(unexpected))
    if duplicates:
        problems.append("duplicate columns: " + _names(duplicates))
    if not problems:
        # Same names, different order: list where they differ.
        moved = [
            f"{n!r} at position {i + 1} (expected {expected.index(n) + 1})"
            for i, n in enumerate(got)
            if expected[i] != n
        ]
        problems.append("columns out of order: " + "; ".join(moved[:_MAX_LISTED]))
    hints = []
    folded = {n.strip().lower() for n in missing}
    if any(n.strip().lower() in folded for n in unexpected):
        hints.append("names are compared exactly: case and surrounding spaces matter")
    delimiter = schema.delimiter
    if len(got) == 1 and len(expected) > 1:
        others = [d for d in _OTHER_DELIMITERS if d != delimiter and d in text]
        if others:
            hints.append(f"the schema's delimiter is {delimiter!r} but the header contains {others[0]!r}")
    schema_id = getattr(schema, "schema_id", None)
    where = f" of schema {schema_id!r}" if schema_id else ""
    message = f"header does not match the columns{where}: " + "; ".join(problems)
    if hints:
        message += " (" + "; ".join(hints) + ")"
    message += f". Expected {len(expected)} columns: {_names(expected)}"
    raise SchemaMismatch(message)
