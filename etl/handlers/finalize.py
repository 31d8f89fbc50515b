"""Finalize: totals, conservation, reject threshold, manifest, source to processed/.

Input ``{"file", "header", "plan", "execution_arn"}``; output ``$.result`` (docs/contracts.md),
which NotifyResult sends to the FIFO queue. Every chunk must be SUCCEEDED; the totals are read
back from the chunk items (the Map discards its results to keep the state small).

A rejected share above the schema's threshold raises ``TooManyRejects`` with the counts; the
workflow then runs MarkFailed, which moves the file to failed/. Checksums come from the chunk
items (computed by ProcessChunk while it held the bytes), so no output is re-read here.

Idempotent: the manifest is deterministic, the move tolerates an already moved source, and a
retry after the status write (SUCCEEDED -> SUCCEEDED) is accepted.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

from typing import Any

from etl import observability as obs
from etl.aws import s3
from etl.aws.status import PLANNED, PROCESSING, SUCCEEDED, StatusRepository, utc_now
from etl.core.manifest import build_manifest, manifest_json
from etl.core.schema import load_schema
from etl.errors import ConservationViolation, InvalidFileState, TooManyRejects
from etl.handlers import content, dedupe
from etl.handlers.common import (
    manifest_key,
    output_prefix,
    processed_key,
    rejected_prefix,
    require,
    scratch_prefix,
    source_version,
    table_name,
)


def check_chunks(file_id: str, expected: int, chunks: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(rows_total, rows_valid, rows_rejected) after checking every chunk succeeded and
    conservation holds per chunk and in total."""
    not_done = [f"{c['chunk_id']}={c.get('status')}" for c in chunks if c.get("status") != SUCCEEDED]
    if len(chunks) != expected or not_done:
        raise InvalidFileState(
            f"file {file_id}: {len(chunks)} chunk items for {expected} planned chunks; "
            f"not SUCCEEDED: {', '.join(not_done[:20]) or 'none'}"
        )
    total = valid = rejected = 0
    for c in chunks:
        r_in, r_ok, r_bad = int(c["rows_in"]), int(c["rows_valid"]), int(c["rows_rejected"])
        if r_in != r_ok + r_bad:
            raise ConservationViolation(
                f"{c['chunk_id']}: rows_in {r_in} != rows_valid {r_ok} + rows_rejected {r_bad}"
            )
        total, valid, rejected = total + r_in, valid + r_ok, rejected + r_bad
    if total != valid + rejected:  # cannot happen if every chunk holds; kept as the file's rule
        raise ConservationViolation(f"file {file_id}: {total} rows != {valid} valid + {rejected} rejected")
    return total, valid, rejected


def check_threshold(rows_total: int, rows_rejected: int, threshold: float) -> None:
    """Raise TooManyRejects when the rejected share exceeds ``threshold`` (a fraction)."""
    share = rows_rejected / rows_total if rows_total else 0.0
    if share > threshold:
        raise TooManyRejects(
            f"{rows_rejected} of {rows_total} rows rejected ({share * 100:.2f}%) > "
            f"{threshold * 100:.2f}% threshold"
        )


def unpublish(bucket: str, dataset: str, partner: str, file_id: str) -> None:
    """Remove this file's chunk outputs and rejects (a duplicate found at the last moment).
    With the Iceberg publication this becomes: delete the uncommitted data files."""
    s3.delete_prefix(bucket, output_prefix(dataset, partner, file_id))
    s3.delete_prefix(bucket, rejected_prefix(partner, file_id))


@obs.lambda_handler("Finalize")
def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Check and total the chunks, write the manifest, move the source, file SUCCEEDED."""
    file = require(event, "file")
    require(event, "header")
    plan = require(event, "plan")
    file_id, partner, bucket = file["file_id"], file["partner"], file["bucket"]
    repo = StatusRepository(table_name())
    digest = str(plan.get("content_digest") or "")
    if plan.get("duplicate_content") and plan.get("duplicate_of"):  # DATA4(a): nothing to publish
        return content.finish_duplicate(repo, file, digest, str(plan["duplicate_of"]), {PLANNED})
    chunks = repo.list_chunks(file_id)
    rows_total, rows_valid, rows_rejected = check_chunks(file_id, int(plan["chunk_count"]), chunks)
    schema = load_schema(partner)
    item = repo.get_file(file_id) or {}
    # DATA4(c), before publication (a retry after success finds it done and the id lists gone).
    if item.get("status") != SUCCEEDED and dedupe.dedupe_across_chunks(repo, file, schema, chunks):
        chunks = repo.list_chunks(file_id)
        rows_total, rows_valid, rows_rejected = check_chunks(file_id, int(plan["chunk_count"]), chunks)
    check_threshold(rows_total, rows_rejected, schema.reject_threshold)

    done_key = processed_key(file)
    m_key = manifest_key(partner, file_id)
    doc = build_manifest(
        file,
        chunks,
        schema,
        event.get("execution_arn") or item.get("execution_arn"),
        # The registration time, not the clock: a re-run writes a byte-identical manifest.
        created_at=str(item.get("created_at") or ""),
        processed_key=done_key,
    )
    if digest and not file.get("force"):
        # DATA4(a): first SUCCEEDED file with this content wins; a file that lost a race to an
        # identical one finishing at the same time is a duplicate after all.
        holder = content.register(repo, file, digest, done_key)
        if holder is not None:
            unpublish(bucket, schema.dataset, partner, file_id)
            return content.finish_duplicate(repo, file, digest, holder, {PROCESSING})
    s3.put_bytes(bucket, m_key, manifest_json(doc), "application/json", {"file-id": file_id})
    s3.move_object(bucket, str(file["key"]), done_key, source_version(file))
    repo.transition_file(
        file_id,
        {PROCESSING, SUCCEEDED},
        SUCCEEDED,
        rows_total=rows_total,
        rows_valid=rows_valid,
        rows_rejected=rows_rejected,
        chunk_count=len(chunks),
        manifest_key=m_key,
        processed_key=done_key,
        key=done_key,
        failed_key=None,
        error=None,
        error_type=None,
        finished_at=utc_now(),
    )
    # After the status: the chunk id lists must outlive every retry that may still need them.
    s3.delete_prefix(bucket, scratch_prefix(file_id))  # gzip chunk bodies, chunk id lists
    obs.add_metric(obs.FILES_SUCCEEDED, 1)
    obs.logger.info(
        "file succeeded",
        extra={"rows_total": rows_total, "rows_valid": rows_valid, "rows_rejected": rows_rejected},
    )
    return {
        "status": SUCCEEDED,
        "file_id": file_id,
        "partner": partner,
        "rows_total": rows_total,
        "rows_valid": rows_valid,
        "rows_rejected": rows_rejected,
        "chunks": len(chunks),
        "manifest_key": m_key,
        "output_prefix": output_prefix(schema.dataset, partner, file_id),
        "rejected_prefix": rejected_prefix(partner, file_id),
        "processed_key": done_key,
        "message_group_id": partner,
        "dedup_id": file_id,
    }
