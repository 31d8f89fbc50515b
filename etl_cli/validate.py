"""``etl validate FILE``: the pipeline's verdict on a file, offline (SPEC UX5).

No emulator and no AWS: the same code as the Lambda functions, on the local file. The header
is checked by :func:`etl.core.header.parse_header` (ValidateHeader), the file is cut by
:func:`etl.core.boundaries.plan_chunks` / :func:`~etl.core.boundaries.split_stream` for
``.gz`` (PlanChunks), every chunk goes through :func:`etl.core.process.process_chunk`
(ProcessChunk) on a pool of processes (one per CPU), ids repeated across chunks are rejected
by :func:`etl.core.duplicates.duplicates_across_chunks` (Finalize's de-duplication) and the
rejected share is held against the schema's threshold by Finalize's ``check_threshold``. So
the counts are those the pipeline publishes for the same file (a test compares them).

What only the deployed pipeline can know is not checked: whether the same bytes were already
loaded (DUPLICATE_CONTENT) and whether a newer version of the key exists.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import mmap
import multiprocessing
import os
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from etl.contracts import DEFAULT_CHUNK_SIZE_BYTES, DEFAULT_MAX_RECORD_BYTES
from etl.core.boundaries import line_cap, plan_chunks, split_stream
from etl.core.duplicates import DUPLICATE_RULE, ID_COLUMN, duplicate_reason, duplicates_across_chunks
from etl.core.header import parse_header
from etl.core.rejects import RECORD_COLUMN
from etl.core.schema import Schema, load_schema_file
from etl.errors import CorruptGzip, PermanentError

HEAD_BYTES = 64 * 1024  # what ValidateHeader reads (etl/handlers/common.py HEAD_BYTES)
BLOCK = 8 * 1024 * 1024
SAMPLE = 50


@dataclass
class RejectSample:
    line: int
    column: str
    rule: str
    value: str | None
    reason: str


@dataclass
class Validation:
    """The verdict on one file, shaped like ``etl status --json`` where the two overlap."""

    path: str
    schema_path: str
    schema_id: str
    status: str = "SUCCEEDED"
    error: str | None = None
    error_type: str | None = None
    size_bytes: int = 0
    rows_total: int = 0
    rows_valid: int = 0
    rows_rejected: int = 0
    chunks: int = 0
    duration_s: float = 0.0
    rejects_by_rule: Counter[str] = field(default_factory=Counter)
    rejects_by_column: Counter[str] = field(default_factory=Counter)
    sample: list[RejectSample] = field(default_factory=list)
    report: str | None = None

    def fail(self, exc: BaseException) -> None:
        self.status, self.error_type, self.error = "FAILED", type(exc).__name__, str(exc)

    def to_json(self) -> dict[str, Any]:
        total = self.rows_total
        return {
            "status": self.status,
            "file": self.path,
            "schema": self.schema_path,
            "schema_id": self.schema_id,
            "size_bytes": self.size_bytes,
            "rows_total": total,
            "rows_valid": self.rows_valid,
            "rows_rejected": self.rows_rejected,
            "rejected_share": round(self.rows_rejected / total, 6) if total else 0.0,
            "chunks": self.chunks,
            "error_type": self.error_type,
            "error": self.error,
            "rejects_by_rule": dict(self.rejects_by_rule.most_common()),
            "rejects_by_column": dict(self.rejects_by_column.most_common()),
            "first_rejects": [s.__dict__ for s in self.sample],
            "duration_s": self.duration_s,
            "report": self.report,
        }


@dataclass
class _Job:
    path: str
    schema_path: str
    header_bytes: int
    start: int
    end: int
    first_line: int
    body: bytes | None = None  # gzip: the self-contained chunk (header + records)


@dataclass
class _ChunkOut:
    rows_in: int
    rows_valid: int
    rejects: pa.Table
    ids: pa.Array | None
    lines: np.ndarray


def _run_job(job: _Job) -> _ChunkOut:
    """One chunk through ProcessChunk's core (in a worker process)."""
    from etl.core.process import process_chunk

    schema = load_schema_file(job.schema_path)
    if job.body is not None:
        data = job.body
    else:
        with open(job.path, "rb") as fh:
            data = fh.read(job.header_bytes)
            fh.seek(job.start)
            data += fh.read(job.end - job.start)
    result = process_chunk(data, schema, job.first_line)
    valid = result.valid_table
    ids = valid.column(ID_COLUMN).combine_chunks() if ID_COLUMN in valid.column_names else None
    return _ChunkOut(result.rows_in, result.rows_valid, result.rejects_table, ids, result.valid_lines)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _gzip_head(path: Path) -> tuple[bytes, bool]:
    try:
        with gzip.open(path, "rb") as gz:
            head = gz.read(HEAD_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptGzip(f"{path} is not a valid gzip stream: {exc}") from exc
    return head[:HEAD_BYTES], len(head) <= HEAD_BYTES


def _plain_jobs(path: Path, schema: Schema, schema_path: str, chunk_size: int) -> Iterator[_Job]:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    info = parse_header(head, schema, size)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        blocks = (memoryview(mm)[i : i + BLOCK] for i in range(0, size, BLOCK))
        ranges = plan_chunks(
            blocks,
            info.header_bytes,
            size,
            chunk_size,
            DEFAULT_MAX_RECORD_BYTES,
            delimiter=schema.delimiter,
            max_lines=line_cap(chunk_size),
        )
    for r in ranges:
        yield _Job(str(path), schema_path, info.header_bytes, r.start, r.end, r.first_line)


def _gzip_jobs(path: Path, schema: Schema, schema_path: str, chunk_size: int) -> Iterator[_Job]:
    head, whole = _gzip_head(path)
    info = parse_header(head, schema, len(head) if whole else len(head) + 1)
    header = head[: info.header_bytes]
    try:
        with gzip.open(path, "rb") as gz:
            for rng, body in split_stream(
                gz,
                header,
                chunk_size,
                DEFAULT_MAX_RECORD_BYTES,
                delimiter=schema.delimiter,
                max_lines=line_cap(chunk_size),
            ):
                yield _Job(str(path), schema_path, rng.start, rng.start, rng.end, rng.first_line, body)
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptGzip(f"{path} is not a valid gzip stream: {exc}") from exc


def _count_rejects(out: Validation, table: pa.Table) -> None:
    if not table.num_rows:
        return
    out.rejects_by_rule.update(table.column("rule").to_pylist())
    out.rejects_by_column.update(table.column("column").to_pylist())
    room = SAMPLE - len(out.sample)
    if room > 0:
        part = table.slice(0, room).to_pylist()
        out.sample.extend(
            RejectSample(
                int(r["line"]),
                str(r["column"]),
                str(r["rule"]),
                r["record"] if r["value"] is None and r["column"] == RECORD_COLUMN else r["value"],
                str(r["reason"]),
            )
            for r in part
        )


def _cross_chunk_duplicates(out: Validation, results: list[_ChunkOut]) -> None:
    """Finalize's DATA4(c) pass: an id already seen in an earlier chunk is a reject."""
    with_ids = [r for r in results if r.ids is not None]
    if len(with_ids) < 2:
        return
    found = duplicates_across_chunks([(r.ids, r.lines) for r in with_ids])
    extra: list[RejectSample] = []
    for dup in found:
        ids = with_ids[dup.chunk].ids
        assert ids is not None
        values = ids.take(pa.array(dup.positions)).to_pylist()
        for value, line, first in zip(values, dup.lines.tolist(), dup.first_lines.tolist(), strict=True):
            extra.append(
                RejectSample(
                    int(line), ID_COLUMN, DUPLICATE_RULE, value, duplicate_reason(str(value), int(first))
                )
            )
    if not extra:
        return
    out.rows_valid -= len(extra)
    out.rows_rejected += len(extra)
    out.rejects_by_rule[DUPLICATE_RULE] += len(extra)
    out.rejects_by_column[ID_COLUMN] += len(extra)
    out.sample = sorted([*out.sample, *extra], key=lambda s: s.line)[:SAMPLE]


def _process(jobs: Iterator[_Job], workers: int) -> Iterator[_ChunkOut]:
    """Each chunk's result in plan order; the chunks run on ``workers`` processes."""
    first = next(jobs, None)
    second = next(jobs, None)
    if first is None:
        return
    if second is None or workers <= 1:  # one chunk (or one CPU): no pool to start
        yield _run_job(first)
        if second is not None:
            yield _run_job(second)
        for job in jobs:
            yield _run_job(job)
        return
    # spawn, not fork: the parent has pyarrow's thread pools running.
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        pending: list[concurrent.futures.Future[_ChunkOut]] = [
            pool.submit(_run_job, first),
            pool.submit(_run_job, second),
        ]
        for job in jobs:
            if len(pending) >= 2 * workers:  # bounded: gzip bodies wait in memory
                yield pending.pop(0).result()
            pending.append(pool.submit(_run_job, job))
        for fut in pending:
            yield fut.result()


def validate_file(
    path: Path,
    schema_path: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE_BYTES,
    workers: int | None = None,
) -> Validation:
    """The pipeline's verdict on ``path`` under the schema file ``schema_path``."""
    from etl.handlers.finalize import check_threshold

    t0 = time.monotonic()
    schema = load_schema_file(schema_path)
    out = Validation(str(path), schema_path, schema.schema_id, size_bytes=path.stat().st_size)
    workers = workers or os.cpu_count() or 1
    results: list[_ChunkOut] = []
    try:
        if out.size_bytes == 0:
            from etl.errors import EmptyFile

            raise EmptyFile("the object is empty (0 bytes)")
        maker = _gzip_jobs if _is_gzip(path) else _plain_jobs
        for res in _process(maker(path, schema, schema_path, chunk_size), workers):
            out.chunks += 1
            out.rows_total += res.rows_in
            out.rows_valid += res.rows_valid
            out.rows_rejected += res.rows_in - res.rows_valid
            _count_rejects(out, res.rejects)
            results.append(
                _ChunkOut(res.rows_in, res.rows_valid, res.rejects.slice(0, 0), res.ids, res.lines)
            )
        _cross_chunk_duplicates(out, results)
        check_threshold(out.rows_total, out.rows_rejected, schema.reject_threshold)
    except PermanentError as exc:
        out.fail(exc)
    out.duration_s = round(time.monotonic() - t0, 2)
    return out
