"""DATA4(c) across the chunks of a file: a transaction id repeated in a later chunk.

Chunks run in parallel, so each only de-duplicates its own rows (``etl.core.process``). Each
ProcessChunk also writes the ``(transaction_id, line)`` of its valid rows, in output-row order,
to ``scratch/<file_id>/ids/part-NNNNN.parquet`` (:func:`write_ids`). Before publication,
Finalize calls :func:`dedupe_across_chunks`: it reads only those two columns of every chunk,
asks :func:`etl.core.duplicates.duplicates_across_chunks` which rows repeat an id of an earlier
line, and rewrites the affected chunks: their Parquet without those rows, their rejects CSV with
a ``duplicate`` reject naming the first line, and their chunk item's counts and checksums (so
the totals, the manifest and conservation follow).

Idempotent under retries: the id lists are never rewritten, so the rows to drop are always
the same; a chunk whose Parquet already has the reduced row count is not filtered again, and
the rejects are written before the Parquet (a retry then finds them).

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import concurrent.futures
import csv
import datetime
import hashlib
import io
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc
import pyarrow.parquet as pq

from etl import observability as obs
from etl.aws import s3
from etl.aws.status import StatusRepository
from etl.core import dataset, duplicates
from etl.core.output import REJECT_COLUMNS, rejects_to_csv, table_to_parquet
from etl.core.schema import Schema
from etl.errors import ConservationViolation
from etl.handlers.common import rejects_key, scratch_prefix
from etl.payloads import ChunkItem

pc: Any = _pc
PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
READ_WORKERS = 8
LINE_COLUMN = "line"
# The line a duplicate reject names (etl.core.duplicates.duplicate_reason).
_NAMED_LINE = re.compile(r"of line ([0-9]+) \(" + duplicates.DUPLICATE_RULE + r"\)$")


def ids_key(file_id: str, index: int) -> str:
    """``scratch/<file_id>/ids/part-00001.parquet``."""
    return f"{scratch_prefix(file_id)}ids/part-{index:05d}.parquet"


def write_ids(bucket: str, file_id: str, index: int, ids: Any, lines: np.ndarray) -> str:
    """Store a chunk's ``(transaction_id, line)`` list (valid rows, output order); returns its key."""
    table = pa.table({duplicates.ID_COLUMN: ids, LINE_COLUMN: pa.array(lines, pa.int64())})
    sink = pa.BufferOutputStream()
    # No dictionary: the ids are unique, so the writer would build one only to drop it (~10 ms).
    pq.write_table(table, sink, compression="snappy", use_dictionary=False)
    key = ids_key(file_id, index)
    s3.put_bytes(bucket, key, sink.getvalue().to_pybytes(), PARQUET_CONTENT_TYPE, {"file-id": file_id})
    return key


def _read_parquet(bucket: str, key: str, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(io.BytesIO(s3.get_bytes(bucket, key)), columns=columns)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def _record(row: Mapping[str, Any], schema: Schema) -> str:
    """The removed row as a CSV record (from its typed values: the raw bytes are not re-read)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([_cell(row.get(f.name)) for f in schema.fields])
    return out.getvalue()


def _merge_rejects(
    bucket: str, key: str | None, new: list[tuple[int, str, str, str, str]], first_of: Mapping[int, int]
) -> tuple[bytes, list[tuple[int, str, str, str, str]]]:
    """The chunk's rejects plus ``new`` (replacing an earlier attempt's identical entries).
    ``first_of`` maps a removed row's line to the file-wide first line of its id: a
    within-chunk duplicate reject that named the removed row names that first line instead."""
    old: list[tuple[int, str, str, str, str]] = []
    if key:
        text = s3.get_bytes(bucket, key).decode("utf-8")
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        # A chunk written before the rule column (a retry across a deploy) has the first four.
        if header is not None and tuple(header) not in (REJECT_COLUMNS, REJECT_COLUMNS[:4]):
            raise ConservationViolation(f"unexpected rejects header in {key}: {header}")
        old = [(int(r[0]), r[1], r[2], r[3], r[4] if len(r) > 4 else "") for r in reader]
    replaced = {(r[0], r[1]) for r in new}
    kept = []
    for r in old:
        if (r[0], r[1]) in replaced:
            continue
        m = _NAMED_LINE.search(r[2]) if r[1] == duplicates.ID_COLUMN else None
        if m and int(m.group(1)) in first_of:
            r = (
                r[0],
                r[1],
                r[2][: m.start(1)] + str(first_of[int(m.group(1))]) + r[2][m.end(1) :],
                r[3],
                r[4],
            )
        kept.append(r)
    merged = kept + new
    merged.sort(key=lambda r: r[0])
    return rejects_to_csv(merged), merged


def dedupe_across_chunks(
    repo: StatusRepository, file: Mapping[str, Any], schema: Schema, chunks: list[ChunkItem]
) -> int:
    """Reject rows whose transaction id appeared on an earlier line in another chunk; rewrite
    those chunks (outputs, rejects, chunk items). Returns the number of rows moved to rejects."""
    with_ids = [c for c in chunks if c.get("ids_key")]
    if len(with_ids) < 2 or duplicates.ID_COLUMN not in {f.name for f in schema.fields}:
        return 0
    bucket, file_id, partner = str(file["bucket"]), str(file["file_id"]), str(file["partner"])
    with_ids.sort(key=lambda c: int(c["index"]))
    cols = [duplicates.ID_COLUMN, LINE_COLUMN]
    with concurrent.futures.ThreadPoolExecutor(READ_WORKERS) as pool:
        id_tables = list(pool.map(lambda c: _read_parquet(bucket, str(c["ids_key"]), cols), with_ids))
    found = duplicates.duplicates_across_chunks(
        [(t.column(duplicates.ID_COLUMN), t.column(LINE_COLUMN).to_numpy()) for t in id_tables]
    )
    moved = 0
    lineage = dataset.lineage_of(file)
    for d in found:
        chunk, ids = with_ids[d.chunk], id_tables[d.chunk]
        _rewrite_chunk(repo, bucket, file_id, partner, schema, chunk, ids, d, lineage)
        moved += int(d.positions.size)
    if moved:
        obs.logger.info("transaction ids repeated across chunks rejected", extra={"rows": moved})
    return moved


def _rewrite_chunk(
    repo: StatusRepository,
    bucket: str,
    file_id: str,
    partner: str,
    schema: Schema,
    chunk: Mapping[str, Any],
    ids: pa.Table,
    dup: duplicates.ChunkDuplicates,
    lineage: dataset.Lineage | None = None,
) -> None:
    cid, index = str(chunk["chunk_id"]), int(chunk["index"])
    out_key = str(chunk["output_key"])
    out = _read_parquet(bucket, out_key)
    n_ids, n_drop = ids.num_rows, int(dup.positions.size)
    keep = np.ones(n_ids, dtype=bool)
    keep[dup.positions] = False
    rej_key = rejects_key(partner, file_id, index)
    if out.num_rows == n_ids:
        removed = out.take(pa.array(dup.positions)).to_pylist()
        new = [
            (
                int(line),
                duplicates.ID_COLUMN,
                duplicates.duplicate_reason(str(row[duplicates.ID_COLUMN]), int(first)),
                _record(row, schema),
                duplicates.DUPLICATE_RULE,
            )
            for row, line, first in zip(removed, dup.lines.tolist(), dup.first_lines.tolist())
        ]
        first_of = dict(zip(dup.lines.tolist(), dup.first_lines.tolist()))
        rejects_csv, _ = _merge_rejects(bucket, chunk.get("rejects_key"), new, first_of)
        meta = {"file-id": file_id, "chunk-id": cid, "schema-version": str(schema.version)}
        # Rejects first: a retry that finds the Parquet already filtered relies on them.
        s3.put_bytes(bucket, rej_key, rejects_csv, "text/csv; charset=utf-8", meta)
        parquet = table_to_parquet(out.filter(pa.array(keep)), schema)
        s3.put_bytes(bucket, out_key, parquet, PARQUET_CONTENT_TYPE, meta)
    elif out.num_rows == n_ids - n_drop:  # a retry: the Parquet was already rewritten
        rejects_csv = s3.get_bytes(bucket, rej_key)
        parquet = s3.get_bytes(bucket, out_key)
    else:
        raise ConservationViolation(
            f"{cid}: output has {out.num_rows} rows, its id list {n_ids} ({n_drop} to drop)"
        )
    rows_in = int(chunk["rows_in"])
    rows_valid = n_ids - n_drop
    extra: dict[str, Any] = {}
    if lineage is not None and chunk.get("data_keys") is not None:
        values = ids.column(duplicates.ID_COLUMN).take(pa.array(dup.positions)).to_pylist()
        data_keys, rej_data_key = rewrite_data_files(bucket, chunk, lineage, values, dup)
        extra = {"data_keys": data_keys, "rejects_data_key": rej_data_key}
    repo.complete_chunk(
        file_id,
        cid,
        rows_in,
        rows_valid,
        rows_in - rows_valid,
        out_key,
        rej_key,
        output_sha256=hashlib.sha256(parquet).hexdigest(),
        output_bytes=len(parquet),
        rejects_sha256=hashlib.sha256(rejects_csv).hexdigest(),
        rejects_bytes=len(rejects_csv),
        duplicates_rejected=n_drop,
        **extra,
    )


_DAY = re.compile(r"-(\d{4}-\d{2}-\d{2})(?:-[0-9a-f]{16})?\.parquet$")


def _day_of(key: str) -> str:
    """The transaction date a data file's name carries (etl.core.dataset.transactions_data_key)."""
    m = _DAY.search(key)
    if m is None:
        raise ValueError(f"not a transactions data file name: {key}")
    return m.group(1)


def rewrite_data_files(
    bucket: str,
    chunk: Mapping[str, Any],
    lineage: dataset.Lineage,
    values: list[Any],
    dup: duplicates.ChunkDuplicates,
) -> tuple[list[str], str]:
    """The chunk's unpublished Iceberg data files without the rows of ``dup`` (found by the
    ``line`` lineage column), and its rejects data file with a ``duplicate`` reject for each
    (SPEC DATA2/DATA4(c)). Runs before the commit, so the commit publishes the de-duplicated
    files. The filtered files are new objects named by their content (an object that may already
    be published is never rewritten, SPEC TBL3 I3); a data file left with no rows leaves
    ``data_keys``; the superseded objects are removed with the file's other unreferenced ones
    when it ends. Idempotent: a retry finds no rows to remove and replaces its own earlier
    rejects entries.
    Returns ``(data_keys, rejects_data_key)``."""
    drop_lines = pa.array(np.asarray(dup.lines, dtype=np.int64), pa.int64())
    keys: list[str] = []
    removed = 0
    for key in [str(k) for k in (chunk.get("data_keys") or [])]:
        table = _read_parquet(bucket, key)
        mask = pc.is_in(table.column(LINE_COLUMN), value_set=drop_lines)
        hit = np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
        n_hit = int(np.count_nonzero(hit))
        if n_hit == 0:
            keys.append(key)
            continue
        removed += n_hit
        kept = table.filter(pa.array(~hit))
        if kept.num_rows == 0:  # leaves data_keys; the unreferenced object goes at the end
            continue
        body = dataset.data_file_bytes(kept)
        new_key = dataset.transactions_data_key(lineage.file_id, int(chunk["index"]), _day_of(key), body)
        s3.put_bytes(bucket, new_key, body, PARQUET_CONTENT_TYPE, {"file-id": lineage.file_id})
        keys.append(new_key)
    # Rejects: the chunk's earlier entries (less any of these lines: a retry), then the new ones.
    first_of = dict(zip(dup.lines.tolist(), dup.first_lines.tolist()))
    entries: list[tuple[int, str, str, str | None, str]] = []
    old_rej_key = chunk.get("rejects_data_key")
    if old_rej_key and s3.exists(bucket, str(old_rej_key)):
        old = _read_parquet(bucket, str(old_rej_key)).to_pylist()
        for r in old:
            line, col, rule, reason = int(r["line"]), str(r["column_name"]), str(r["rule"]), str(r["reason"])
            if line in first_of and rule == duplicates.DUPLICATE_RULE:
                continue
            m = _NAMED_LINE.search(reason) if rule == duplicates.DUPLICATE_RULE else None
            if m and int(m.group(1)) in first_of:
                reason = reason[: m.start(1)] + str(first_of[int(m.group(1))]) + reason[m.end(1) :]
            entries.append((line, col, rule, r["value"], reason))
    for line, value, first in zip(dup.lines.tolist(), values, dup.first_lines.tolist()):
        entries.append(
            (
                int(line),
                duplicates.ID_COLUMN,
                duplicates.DUPLICATE_RULE,
                None if value is None else str(value),
                duplicates.duplicate_reason(str(value), int(first)),
            )
        )
    entries.sort(key=lambda e: (e[0], e[1]))
    body = dataset.data_file_bytes(dataset.rejects_table(entries, lineage))
    rej_key = dataset.rejects_data_key(lineage.file_id, int(chunk["index"]), body)
    s3.put_bytes(bucket, rej_key, body, PARQUET_CONTENT_TYPE, {"file-id": lineage.file_id})
    if removed > len(first_of):
        raise ConservationViolation(
            f"{chunk['chunk_id']}: {removed} rows found in the data files for {len(first_of)} duplicates"
        )
    return keys, rej_key
