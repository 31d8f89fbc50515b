"""ProcessChunk: one Map iteration: read exactly the chunk's bytes, validate every row, write
typed Parquet and rejects, record the counts.

Input ``{"file", "header", "chunk"}``; output ``{"chunk_id", "rows_in", "rows_valid",
"rows_rejected"}``. The bytes are a function of the input; the Iceberg data files are named by
their content (a retry writes identical objects, other rows get other names: no referenced
object is ever rewritten, SPEC TBL3). The rejects CSV is written only when the chunk has
rejects (``rejects_key`` is then null on the chunk item); one left by an earlier run of the same
chunk is deleted so it cannot linger.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

from etl.handlers.cold_start import imports_without_gc

# PERF4: the cold start's imports without cyclic GC (etl/handlers/cold_start.py).
with imports_without_gc():
    import hashlib
    import time
    from collections.abc import Mapping
    from dataclasses import dataclass
    from typing import Any

    import pyarrow as pa

    from etl import faults
    from etl import observability as obs
    from etl.aws import s3
    from etl.aws.status import PLANNED, PROCESSING, StatusRepository
    from etl.core import dataset, duplicates
    from etl.core.counts import check_conservation
    from etl.core.process import ChunkResult, process_chunk
    from etl.core.schema import Schema, load_schema
    from etl.errors import InvalidFileState
    from etl.handlers import dedupe
    from etl.handlers.common import (
        chunk_of,
        file_of,
        header_of,
        output_key,
        rejects_key,
        source_version,
        table_name,
    )
    from etl.payloads import ChunkCounts

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


def read_chunk_bytes(file: Mapping[str, Any], header_bytes: int, chunk: Mapping[str, Any]) -> bytes:
    """The header line followed by exactly the chunk's records ``[start, end)``."""
    key, start, end = str(chunk["key"]), int(chunk["start"]), int(chunk["end"])
    # The source object is read at its registered version; scratch objects are ours.
    version = source_version(file) if key == file["key"] else None
    if start == header_bytes:  # the first chunk (and every gzip scratch chunk): one GET
        return s3.read_range(file["bucket"], key, 0, end, version)
    head = s3.read_range(file["bucket"], key, 0, header_bytes, version)
    return head + s3.read_range(file["bucket"], key, start, end, version)


def write_data_files(
    bucket: str, file: Mapping[str, Any], index: int, result: ChunkResult
) -> tuple[list[str], str | None]:
    """The chunk's unpublished Iceberg data files (SPEC DATA2): one Parquet file per
    transaction_date under ``tables/transactions/data/file_id=<id>/`` and, when there are
    rejects, one under ``tables/transaction_rejects/data/file_id=<id>/``. Nothing is visible
    until Finalize commits them. Named by content (etl.core.dataset.transactions_data_key): a
    re-run writes the same bytes under the same names, different rows get different names."""
    lineage = dataset.lineage_of(file)
    meta = {"file-id": lineage.file_id}
    keys = []
    rows = [dataset.transactions_table(result.valid_table, result.valid_lines, lineage)]
    # Hand the valid rows over (RUN12): split_by_date then reorders them column by column,
    # letting each unsorted column go, instead of holding the rows twice.
    result.valid_table = result.valid_table.schema.empty_table()
    parts = dataset.split_by_date(rows)
    # The unsorted columns' pages back to the OS before the Parquet writers allocate (they were
    # allocated by other threads, whose malloc arenas the writers would not reuse).
    pa.default_memory_pool().release_unused()
    for (day, _), body in zip(parts, dataset.data_files(parts)):
        key = dataset.transactions_data_key(lineage.file_id, index, day, body)
        s3.put_bytes(bucket, key, body, PARQUET_CONTENT_TYPE, meta)
        keys.append(key)
    rej_key = None
    if result.rows_rejected:
        table = dataset.rejects_table(result.rejects_table, lineage)
        body = dataset.data_file_bytes(table)
        rej_key = dataset.rejects_data_key(lineage.file_id, index, body)
        s3.put_bytes(bucket, rej_key, body, PARQUET_CONTENT_TYPE, meta)
    return keys, rej_key


@dataclass(frozen=True)
class ChunkOutputs:
    """What :func:`write_outputs` stored for one chunk (keys, checksums)."""

    output_key: str
    output_sha256: str
    output_bytes: int
    rejects_key: str | None
    rejects_sha256: str | None
    ids_key: str
    data_keys: list[str]
    rejects_data_key: str | None


def write_outputs(
    file: Mapping[str, Any],
    schema: Schema,
    index: int,
    cid: str,
    result: ChunkResult,
    previous_rejects_key: str | None,
) -> ChunkOutputs:
    """Every object a processed chunk leaves in S3: its Parquet and rejects CSV, its
    ``(transaction_id, line)`` list for Finalize's file-wide duplicate check (DATA4(c)), and its
    unpublished Iceberg data files (DATA2). Apart from the handler's status bookkeeping, so the
    chunk function's whole work can be measured without AWS (benchmarks/bench_chunk_function.py).

    Consumes ``result``'s large parts as they are stored (its Parquet bytes, its valid table:
    empty on return; the counts stay), so the function never holds the chunk's rows twice
    (RUN12)."""
    bucket, file_id = file["bucket"], file["file_id"]
    meta = {"file-id": file_id, "chunk-id": cid, "schema-version": str(schema.version)}
    out_key = output_key(schema.dataset, file["partner"], file_id, index)
    s3.put_bytes(bucket, out_key, result.parquet, PARQUET_CONTENT_TYPE, meta)
    out_sha, out_bytes = hashlib.sha256(result.parquet).hexdigest(), len(result.parquet)
    result.parquet = b""  # stored; let it go before the data files are built (RUN12)
    pa.default_memory_pool().release_unused()
    rej_key: str | None = None
    rej_sha: str | None = None
    if result.rows_rejected > 0:
        rej_key = rejects_key(file["partner"], file_id, index)
        s3.put_bytes(bucket, rej_key, result.rejects_csv, "text/csv; charset=utf-8", meta)
        rej_sha = hashlib.sha256(result.rejects_csv).hexdigest()
    elif previous_rejects_key:
        s3.delete_object(bucket, str(previous_rejects_key))
    ids = dedupe.write_ids(
        bucket,
        file_id,
        index,
        result.valid_table.column(duplicates.ID_COLUMN)
        if duplicates.ID_COLUMN in result.valid_table.column_names
        else pa.nulls(result.rows_valid, pa.string()),
        result.valid_lines,
    )
    data_keys, rejects_data_key = write_data_files(bucket, file, index, result)
    return ChunkOutputs(
        output_key=out_key,
        output_sha256=out_sha,
        output_bytes=out_bytes,
        rejects_key=rej_key,
        rejects_sha256=rej_sha,
        ids_key=ids,
        data_keys=data_keys,
        rejects_data_key=rejects_data_key,
    )


@obs.lambda_handler("ProcessChunk")
def handler(event: Any, context: Any = None) -> ChunkCounts:
    """Process one chunk; chunk item RUNNING -> SUCCEEDED (FAILED with the error if it raises)."""
    file = file_of(event)
    header = header_of(event)
    chunk = chunk_of(event)
    file_id, cid, index = file["file_id"], chunk["chunk_id"], int(chunk["index"])
    repo = StatusRepository(table_name())
    started = time.monotonic()
    # Refuse to work for a file that is no longer in flight (FAILED, SUCCEEDED).
    repo.transition_file(file_id, {PLANNED, PROCESSING}, PROCESSING)
    previous = repo.start_chunk(file_id, cid)
    try:
        schema = load_schema(file["partner"])
        if (schema.schema_id, schema.version) != (header["schema_id"], header["schema_version"]):
            raise InvalidFileState(
                f"schema changed during the run: header validated with {header['schema_id']} "
                f"{header['schema_version']}, now {schema.schema_id} {schema.version}"
            )
        data = read_chunk_bytes(file, int(header["header_bytes"]), chunk)
        result = process_chunk(data, schema, int(chunk["first_line"]))
        del data  # RUN12: the chunk's bytes are not needed past here (the outputs are built)
        check_conservation(cid, result.rows_in, result.rows_valid, result.rows_rejected)
        out = write_outputs(file, schema, index, cid, result, previous.get("rejects_key"))
        faults.point("process_chunk.after_data_files", file_id)
        repo.complete_chunk(
            file_id,
            cid,
            result.rows_in,
            result.rows_valid,
            result.rows_rejected,
            out.output_key,
            out.rejects_key,
            # Checksums and sizes for the manifest: Finalize need not re-read the outputs.
            output_sha256=out.output_sha256,
            output_bytes=out.output_bytes,
            rejects_sha256=out.rejects_sha256,
            rejects_bytes=len(result.rejects_csv) if out.rejects_key else None,
            bytes_in=int(chunk["end"]) - int(chunk["start"]),
            ids_key=out.ids_key,
            data_keys=out.data_keys,
            rejects_data_key=out.rejects_data_key,
        )
    except Exception as exc:
        try:
            repo.fail_chunk(file_id, cid, f"{type(exc).__name__}: {exc}")
        except Exception:  # recording the failure must not hide the failure itself
            obs.logger.exception("could not record the chunk failure")
        # Data files this attempt wrote stay: named by content, they may be the very files a
        # published snapshot references (a forced reprocess writes the same bytes). Unreferenced
        # ones are removed when the file ends, checked against the table (catalog.remove_unreferenced).
        raise
    duration_ms = (time.monotonic() - started) * 1000.0
    obs.add_metric(obs.ROWS_PROCESSED, result.rows_in)
    obs.add_metric(obs.ROWS_REJECTED, result.rows_rejected)
    obs.add_metric(obs.BYTES_PROCESSED, int(chunk["end"]) - int(chunk["start"]), "Bytes")
    obs.add_metric(obs.CHUNK_DURATION_MS, duration_ms, "Milliseconds")
    obs.logger.info(
        "chunk processed",
        extra={
            "rows_in": result.rows_in,
            "rows_valid": result.rows_valid,
            "rows_rejected": result.rows_rejected,
            "rejects_by_column": result.rejects_by_column,
            "duration_ms": int(duration_ms),
        },
    )
    return {
        "chunk_id": cid,
        "rows_in": result.rows_in,
        "rows_valid": result.rows_valid,
        "rows_rejected": result.rows_rejected,
    }
