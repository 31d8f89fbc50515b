"""PlanChunks: record-aligned byte ranges for the Map state, one chunk item each.

Input ``{"file", "header"}``; output ``$.plan`` = ``{"chunk_count", "chunks": [...]}``.

- Plain CSV: the object is read once with parallel ranged GETs (``iter_blocks``) and fed to the
  quote-parity planner; chunks are ranges of the source object.
- ``.csv.gz``: gzip cannot be read at an offset, so the stream is decompressed once and cut into
  self-contained chunk objects ``scratch/<file_id>/chunk-00001.csv`` (header + records), written
  as they are produced (memory: about four chunks: the splitter's two plus up to
  ``UPLOADS_IN_FLIGHT`` bodies uploading); chunks are ranges of those objects.

DATA4(a): the same pass computes the content digest (``etl.core.content``, hashed on worker
threads beside the scan; gzip: of the decompressed bytes). If another SUCCEEDED file of the
partner already loaded that content (registry item, ``etl.handlers.content``) and the run is
not forced, no chunk is planned: ``$.plan`` = ``{"chunk_count": 0, "chunks": [],
"duplicate_content": true, "duplicate_of": <file_id>, ...}`` and the workflow's
IsDuplicateContent choice goes straight to Finalize, which ends the file DUPLICATE_CONTENT.

Re-planning (a retry, a reprocess) writes identical chunk items and removes what a previous
plan left that the new one does not have (extra chunk items, their outputs, old scratch).

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import collections
import concurrent.futures
import gzip
import json
import os
import zlib
from typing import Any, cast

from etl import observability as obs
from etl.aws import s3
from etl.aws.errors import transient_errors
from etl.aws.status import PLANNED, VALIDATING, StatusRepository
from etl.contracts import chunk_id
from etl.core.boundaries import LINE_BYTES, ChunkRange, line_cap, plan_chunks, split_stream
from etl.core.content import ContentHasher, HashingReader, hashing
from etl.core.schema import load_schema
from etl.errors import CorruptGzip, TooLarge
from etl.handlers import content
from etl.handlers.common import (
    chunk_size_bytes,
    max_record_bytes,
    require,
    scratch_key,
    scratch_prefix,
    source_version,
    table_name,
)
from etl.payloads import Plan

BLOCK_SIZE = 8 * 1024 * 1024
READ_WORKERS = 8
UPLOADS_IN_FLIGHT = 2

# SPEC OPS6: the plan travels in the execution's state, which Step Functions caps at 256 KiB
# (an execution over it fails with States.DataLimitExceeded, which no Catch sees). The chunk
# list may use PLAN_BUDGET_BYTES of it; the rest (file, header, error, result ...) keeps 96 KiB.
# max_chunks() divides the budget by the JSON size of one chunk entry for this file's key
# (about 150 bytes with a short key: ~1,090 chunks; with a 1,024-byte key: ~140). Above that
# bound the chunk size grows to ceil(data bytes / bound), and the plan says so.
STATE_LIMIT_BYTES = 256 * 1024
PLAN_BUDGET_BYTES = 160 * 1024


# SEC4: the largest decompressed size a .csv.gz may have. RUN3 promises 10 GB files; PlanChunks
# decompresses, splits and uploads at roughly 100 MB/s, so 16 GiB leaves a 15-minute Lambda
# ample room, and a "zip bomb" (or a 100 GB export) fails with TooLarge instead of a timeout.
# MAX_DECOMPRESSED_BYTES (environment) overrides it. docs/runtime.md states the bound.
MAX_DECOMPRESSED_BYTES = 16 * 1024**3
# After this many decompressed bytes the compression ratio so far predicts the total; a file
# predicted at more than ESTIMATE_MARGIN x the bound fails at once (seconds, not minutes). The
# margin keeps a file whose later part compresses better than its start from being refused on a
# guess; the exact count still stops any file at the bound itself.
ESTIMATE_AFTER_BYTES = 64 * 1024 * 1024
ESTIMATE_MARGIN = 4


def max_decompressed_bytes() -> int:
    raw = os.environ.get("MAX_DECOMPRESSED_BYTES", "")
    return int(raw) if raw.strip() else MAX_DECOMPRESSED_BYTES


class _Counting:
    """Counts the compressed bytes gzip pulls from the object."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._stream.read(size)
        self.count += len(data)
        return data


class _Bounded:
    """The decompressed stream, refusing to go past the bound (SEC4): TooLarge as soon as the
    count crosses it, or as soon as the ratio so far predicts a total far above it."""

    def __init__(self, stream: Any, compressed: _Counting, compressed_size: int, bound: int) -> None:
        self._stream = stream
        self._compressed = compressed
        self._compressed_size = compressed_size
        self._bound = bound
        self.count = 0
        self._estimated = False

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._stream.read(size)
        self.count += len(data)
        if self.count > self._bound:
            raise TooLarge(f"the gzip stream decompresses to more than {self._bound:,} bytes (the bound)")
        if not self._estimated and self.count >= ESTIMATE_AFTER_BYTES and self._compressed.count:
            self._estimated = True
            estimate = self.count * self._compressed_size // self._compressed.count
            if estimate > ESTIMATE_MARGIN * self._bound:
                raise TooLarge(
                    f"the gzip stream would decompress to about {estimate:,} bytes (ratio of its first "
                    f"{self.count:,}), over the bound of {self._bound:,}"
                )
        return data


def check_compressed_size(size: int, bound: int) -> None:
    """Deflate never shrinks data below ~1/1032 nor grows it by more than a few bytes per 16 KB
    block: a compressed object larger than the bound decompresses to more than it."""
    if size > bound + bound // 100 + 1024:
        raise TooLarge(
            f"the gzip object is {size:,} bytes compressed, over the decompressed bound of {bound:,}"
        )


class _Replay:
    """A reader that returns ``prefix`` first, then the rest of ``stream`` (the header was
    already consumed from the gzip stream to learn its bytes)."""

    def __init__(self, prefix: bytes, stream: Any) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            if size is None or size < 0:
                out, self._prefix = self._prefix + self._stream.read(), b""
                return cast(bytes, out)
            out, self._prefix = self._prefix[:size], self._prefix[size:]
            return out
        return cast(bytes, self._stream.read(size))


def _chunk_entry(rng: ChunkRange, key: str) -> dict[str, Any]:
    return {
        "chunk_id": chunk_id(rng.index),
        "index": rng.index,
        "key": key,
        "start": rng.start,
        "end": rng.end,
        "first_line": rng.first_line,
    }


def entry_bytes(key: str) -> int:
    """The largest JSON size of one chunk entry whose object is ``key`` (ASCII-escaped, so an
    upper bound of its UTF-8 size), plus the list separator."""
    widest = ChunkRange(index=99_999, start=10**13, end=10**13, first_line=10**12)
    return len(json.dumps(_chunk_entry(widest, key))) + 2


def max_chunks(key: str, budget: int | None = None) -> int:
    """How many chunk entries for ``key`` fit in the plan's share of the state."""
    return max(1, (PLAN_BUDGET_BYTES if budget is None else budget) // entry_bytes(key))


def bounded_chunk_size(data_bytes: int, chunk_size: int, limit: int) -> int:
    """``chunk_size``, grown just enough that ``data_bytes`` cut into chunks of at least that
    size (every chunk but the last is, see etl/core/boundaries.py) makes at most ``limit``."""
    if data_bytes <= 0 or -(-data_bytes // chunk_size) <= limit:
        return chunk_size
    return -(-data_bytes // limit)


def regrown_chunk_size(chunks: list[dict[str, Any]], chunk_size: int, limit: int) -> int:
    """A chunk size at which the planned data fits in ``limit`` chunks, counting lines (RUN12) as
    well as bytes (OPS6). Every chunk but the last reached the byte target or the line cap, so
    chunks - 1 <= bytes / size + lines / (size // LINE_BYTES); with ``lines`` bounded by the last
    chunk's first line plus its bytes, this size makes that at most ``limit - 1``."""
    data_bytes = sum(int(c["end"]) - int(c["start"]) for c in chunks)
    last = chunks[-1]
    lines = int(last["first_line"]) + int(last["end"]) - int(last["start"])
    need = -(-(data_bytes + lines * LINE_BYTES) // max(1, limit - 1)) + LINE_BYTES
    return max(chunk_size, need)


def _plan_plain(
    file: dict[str, Any], header: dict[str, Any], chunk_size: int, hasher: ContentHasher
) -> list[dict[str, Any]]:
    bucket, key, size = file["bucket"], file["key"], int(file["size"])
    blocks = s3.iter_blocks(bucket, key, size, BLOCK_SIZE, READ_WORKERS, source_version(file))
    ranges = plan_chunks(
        hashing(blocks, hasher),
        int(header["header_bytes"]),
        size,
        chunk_size,
        max_record_bytes(),
        delimiter=load_schema(str(file["partner"])).delimiter,  # RUN9: quote positions
        max_lines=line_cap(chunk_size),  # RUN12
    )
    return [_chunk_entry(r, key) for r in ranges]


def _split_gzip(
    file: dict[str, Any], header: dict[str, Any], chunk_size: int, hasher: ContentHasher
) -> list[dict[str, Any]]:
    """Decompress once, cut into scratch chunk objects; uploads overlap the decompression
    (at most ``UPLOADS_IN_FLIGHT`` bodies held besides the splitter's own buffer)."""
    bucket, file_id = file["bucket"], file["file_id"]
    s3.delete_prefix(bucket, scratch_prefix(file_id))  # leftovers of an earlier plan
    entries: list[dict[str, Any]] = []
    pending: collections.deque[concurrent.futures.Future[Any]] = collections.deque()
    bound = max_decompressed_bytes()
    check_compressed_size(int(file["size"]), bound)
    body = s3.open_stream(bucket, file["key"], source_version(file))
    pool = concurrent.futures.ThreadPoolExecutor(UPLOADS_IN_FLIGHT, thread_name_prefix="scratch-put")
    try:
        # Network errors while streaming are transient; gzip errors are CorruptGzip.
        # (One line, no parentheses: parenthesised context managers are Python 3.10+.)
        reading = f"reading gzip s3://{bucket}/{file['key']}"
        compressed = _Counting(body)
        source: Any = compressed  # a file-like read(); typeshed wants a named protocol
        with transient_errors(reading), gzip.GzipFile(fileobj=source, mode="rb") as gz_stream:
            bounded = _Bounded(gz_stream, compressed, int(file["size"]), bound)  # SEC4
            gz = HashingReader(bounded, hasher)  # the content digest is of the decompressed bytes
            try:
                head = gz.read(int(header["header_bytes"]))
            except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
                raise CorruptGzip(f"the gzip stream is corrupt: {exc}") from exc
            meta = {"file-id": file_id}
            for rng, chunk_body in split_stream(
                _Replay(head, gz),
                head,
                chunk_size,
                max_record_bytes(),
                BLOCK_SIZE,
                delimiter=load_schema(str(file["partner"])).delimiter,  # RUN9: quote positions
                max_lines=line_cap(chunk_size),  # RUN12
            ):
                key = scratch_key(file_id, rng.index)
                if len(pending) >= UPLOADS_IN_FLIGHT:
                    pending.popleft().result()  # bounded memory; re-raises upload errors
                pending.append(pool.submit(s3.put_bytes, bucket, key, chunk_body, "text/csv", meta))
                entries.append(_chunk_entry(rng, key))
        while pending:
            pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True)
        body.close()
    return entries


def _remove_stale(repo: StatusRepository, file: dict[str, Any], new_ids: set[str]) -> None:
    """A previous plan's chunk items and outputs that this plan will not overwrite."""
    for old in repo.list_chunks(file["file_id"]):
        for attr in ("output_key", "rejects_key"):
            if old.get(attr):
                # Regenerated by this run if still needed; a stale part must not stay in the
                # dataset (it would duplicate or resurrect rows).
                s3.delete_object(file["bucket"], str(old[attr]))
        if old["chunk_id"] not in new_ids:
            repo.delete_chunks(file["file_id"], [old["chunk_id"]])


@obs.lambda_handler("PlanChunks")
def handler(event: Any, context: Any = None) -> Plan:
    """Plan the chunks, write PENDING chunk items, file status PLANNED."""
    file = require(event, "file")
    header = require(event, "header")
    repo = StatusRepository(table_name())
    configured = chunk_size = chunk_size_bytes()
    gzipped = file.get("compression") == "gzip"
    with ContentHasher() as hasher:
        if gzipped:
            # The decompressed size is known only after one pass: above the bound, split again
            # with the grown size (the second pass replaces the first one's scratch objects and
            # is digested afresh, so the digest covers the bytes exactly once).
            limit = max_chunks(scratch_key(file["file_id"], 1))
            chunks = _split_gzip(file, header, chunk_size, hasher)
            digest = hasher.hexdigest()
            if len(chunks) > limit:
                chunk_size = regrown_chunk_size(chunks, configured, limit)
                with ContentHasher() as again:
                    chunks = _split_gzip(file, header, chunk_size, again)
                    digest = again.hexdigest()
        else:
            limit = max_chunks(str(file["key"]))
            chunk_size = bounded_chunk_size(
                int(file["size"]) - int(header["header_bytes"]), configured, limit
            )
            chunks = _plan_plain(file, header, chunk_size, hasher)
            digest = hasher.hexdigest()
            if len(chunks) > limit:
                # RUN12: the line cap (millions of tiny rows) made more chunks than the state
                # holds: grow the chunk size (and with it the cap) and plan again (second read).
                chunk_size = regrown_chunk_size(chunks, chunk_size, limit)
                with ContentHasher() as again:
                    chunks = _plan_plain(file, header, chunk_size, again)
                    digest = again.hexdigest()
    if chunk_size != configured:
        obs.logger.warning(
            "chunk size grown from %d to %d bytes: chunks of the configured size would exceed "
            "the %d-chunk bound of the state size (SPEC OPS6)",
            configured,
            chunk_size,
            limit,
        )
    duplicate_of = None
    if not file.get("force"):
        duplicate_of = content.loaded_by(repo, str(file["partner"]), digest, str(file["file_id"]))
    if duplicate_of:
        # Nothing of this file will be processed: no chunk items, no scratch, no outputs.
        _remove_stale(repo, file, set())
        if gzipped:
            s3.delete_prefix(file["bucket"], scratch_prefix(file["file_id"]))
        repo.transition_file(
            file["file_id"], {VALIDATING, PLANNED}, PLANNED, chunk_count=0, content_digest=digest
        )
        obs.logger.info("content already loaded by %s", duplicate_of, extra={"content_digest": digest})
        return {
            "chunk_count": 0,
            "chunks": [],
            "content_digest": digest,
            "duplicate_content": True,
            "duplicate_of": duplicate_of,
        }
    _remove_stale(repo, file, {c["chunk_id"] for c in chunks})
    repo.put_chunks(file["file_id"], chunks)
    repo.transition_file(
        file["file_id"], {VALIDATING, PLANNED}, PLANNED, chunk_count=len(chunks), content_digest=digest
    )
    obs.logger.info("planned %d chunks", len(chunks), extra={"chunk_count": len(chunks)})
    plan: dict[str, Any] = {  # a Plan (chunk entries built as dicts: see _chunk_entry)
        "chunk_count": len(chunks),
        "chunks": chunks,
        "chunk_size_bytes": chunk_size,
        "content_digest": digest,
        "duplicate_content": False,
    }
    if chunk_size != configured:
        plan["chunk_size_grown_from"] = configured  # above the state-size bound (SPEC OPS6)
    return cast(Plan, plan)
