"""Finalize: totals, conservation, reject threshold, manifest, source to processed/.

Input ``{"file", "header", "plan", "execution_arn"}``; output ``$.result`` (docs/contracts.md),
which NotifyResult sends to the FIFO queue. Every chunk must be SUCCEEDED; the totals are read
back from the chunk items (the Map discards its results to keep the state small).

A rejected share above the schema's threshold raises ``TooManyRejects`` with the counts; the
workflow then runs MarkFailed, which moves the file to failed/. Checksums come from the chunk
items (computed by ProcessChunk while it held the bytes), so no output is re-read here.

Publication (SPEC DATA2): after the checks and the manifest, the file's data files (written by
ProcessChunk) are committed to ``transactions`` in ONE Iceberg transaction that also deletes the
file's earlier rows and those of earlier versions of its source key; then its rejects to
``transaction_rejects`` (a second commit: Iceberg has no multi-table transaction; see
docs/dataset.md for why this order is safe). The snapshot id is recorded on the file item right
after the commit, so a later failure never unpublishes (MarkFailed deletes data files only of
files without a snapshot), and is part of the result (the FIFO message).

DATA4 before the commit: transaction ids repeated across chunks move to rejects
(etl/handlers/dedupe.py rewrites the affected data files); a file whose content another file
of the partner registered first (a race) ends DUPLICATE_CONTENT without committing.

Idempotent: the manifest is deterministic, a commit already in the snapshot history (same
commit token) is not repeated, the move tolerates an already moved source, and a
retry after the status write (SUCCEEDED -> SUCCEEDED) is accepted.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any, cast

from etl import contracts, faults
from etl import observability as obs
from etl.aws import catalog, loads, s3
from etl.aws.status import FAILED, PLANNED, PROCESSING, SUCCEEDED, StatusRepository, utc_now
from etl.core import dataset
from etl.core.counts import check_conservation
from etl.core.manifest import build_manifest, manifest_json
from etl.core.schema import load_schema
from etl.errors import ConservationViolation, InvalidFileState, SupersededVersion, TooManyRejects
from etl.handlers import announce, content, dedupe
from etl.handlers.common import (
    file_of,
    header_of,
    manifest_key,
    output_prefix,
    plan_of,
    processed_key,
    rejected_prefix,
    scratch_prefix,
    source_version,
    table_name,
)
from etl.handlers.failure import delete_unpublished_data
from etl.payloads import ChunkItem, FileRef, FileResult


def check_chunks(file_id: str, expected: int, chunks: list[ChunkItem]) -> tuple[int, int, int]:
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
        check_conservation(str(c["chunk_id"]), r_in, r_ok, r_bad)
        total, valid, rejected = total + r_in, valid + r_ok, rejected + r_bad
    check_conservation(f"file {file_id}", total, valid, rejected)  # the file's own rule
    return total, valid, rejected


def check_threshold(rows_total: int, rows_rejected: int, threshold: float) -> None:
    """Raise TooManyRejects when the rejected share exceeds ``threshold`` (a fraction)."""
    share = rows_rejected / rows_total if rows_total else 0.0
    if share > threshold:
        raise TooManyRejects(
            f"{rows_rejected} of {rows_total} rows rejected ({share * 100:.2f}%) > "
            f"{threshold * 100:.2f}% threshold"
        )


# SPEC TBL6: commits to one table take turns (a DynamoDB lease) so that a burst of files does
# not turn into a storm of conflicting optimistic commits. The lease only orders the writers:
# correctness still rests on Glue's optimistic check (a commit whose base moved fails and is
# re-planned), so a lease that expires under a slow holder costs a retry, never a wrong table.
COMMIT_LEASE_SECONDS = 60.0
COMMIT_LEASE_WAIT_SECONDS = 600.0
_LEASE_POLL_S = (0.05, 0.5)


@contextlib.contextmanager
def commit_turn(repo: StatusRepository, table: str, owner: str) -> Iterator[bool]:
    """Hold the commit lease of ``table`` (yields whether it was obtained: after
    COMMIT_LEASE_WAIT_SECONDS the commit goes ahead unordered)."""
    deadline = time.monotonic() + COMMIT_LEASE_WAIT_SECONDS
    held = repo.acquire_lease(f"commit/{table}", owner, COMMIT_LEASE_SECONDS)
    while not held and time.monotonic() < deadline:
        time.sleep(random.uniform(*_LEASE_POLL_S))
        held = repo.acquire_lease(f"commit/{table}", owner, COMMIT_LEASE_SECONDS)
    if not held:
        obs.logger.warning(
            "commit lease of %s not obtained in %.0f s; committing unordered",
            table,
            COMMIT_LEASE_WAIT_SECONDS,
        )
    try:
        yield held
    finally:
        if held:
            repo.release_lease(f"commit/{table}", owner)


def created_at_of(repo: StatusRepository, file: FileRef) -> str:
    """When the file was registered: the order of a key's versions (SPEC TBL5)."""
    return str((repo.get_file(file["file_id"]) or {}).get("created_at") or "")


def check_live_version(repo: StatusRepository, file: FileRef) -> str | None:
    """SPEC TBL5: the live version of a key is the newest registered version whose commit
    landed. An older version never replaces a newer live one's rows (its commit deletes every
    row of the key) unless the request is a rollback. Returns the live file id it replaces."""
    lineage = dataset.lineage_of(file)
    live = repo.get_live(lineage.partner, lineage.source_key)
    if live is None or not live.get("live_file_id"):
        return None
    if live.get("live_file_id") == file["file_id"]:  # a retry after our own commit
        return live.get("previous_file_id")
    mine = created_at_of(repo, file)
    if str(live.get("live_created_at") or "") > mine and not file.get("rollback"):
        raise SupersededVersion(
            f"file {file['file_id']} (registered {mine}) is an older version of {lineage.source_key} than "
            f"the live file {live.get('live_file_id')} (registered {live.get('live_created_at')}); its "
            f"rows would replace newer ones. `etl reprocess --rollback {file['file_id']}` does it on purpose"
        )
    return str(live.get("live_file_id"))


def publish_file(
    repo: StatusRepository,
    file: FileRef,
    chunks: list[ChunkItem],
    manifest_key: str,
    execution_arn: str | None,
    status: str = PROCESSING,
) -> catalog.Published:
    """Commit the file's data files (transactions, then rejects); record the snapshot on the
    file item at once (``status`` kept: SUCCEEDED on a retry after the final write). Returns
    the transactions commit."""
    database = catalog.glue_database_name()
    lineage = dataset.lineage_of(file)
    cat = catalog.load_catalog()
    owner = f"{execution_arn or ''}#{file['file_id']}#{uuid.uuid4().hex[:8]}"
    data_keys = [str(k) for c in chunks for k in (c.get("data_keys") or [])]
    faults.point("finalize.before_commit", file["file_id"])
    with commit_turn(repo, contracts.TRANSACTIONS_TABLE, owner):
        # Under the lease: no other version of the key can commit between the check and ours.
        previous = check_live_version(repo, file)
        rows = catalog.publish(
            database,
            contracts.TRANSACTIONS_TABLE,
            file["bucket"],
            data_keys,
            lineage,
            manifest_key,
            execution_arn,
            cat,
        )
        repo.set_live(
            lineage.partner, lineage.source_key, file["file_id"], created_at_of(repo, file), previous
        )
    # The rows are visible now. Dying here (before the item records it) must not lose them:
    # a retry finds the commit token; MarkFailed/reconcile check the table, not the item.
    faults.point("finalize.after_commit", file["file_id"])
    repo.transition_file(
        file["file_id"],
        {PROCESSING, SUCCEEDED},
        status,
        snapshot_id=rows.snapshot_id,
        published_rows=rows.added_rows,
    )
    rejects = publish_rejects(repo, file, chunks, manifest_key, execution_arn, owner, cat)
    repo.transition_file(
        file["file_id"],
        {PROCESSING, SUCCEEDED},
        status,
        rejects_snapshot_id=rejects.snapshot_id,
        published_rejects=rejects.added_rows,
    )
    # SPEC TBL6: the load audit trail, one row per committed file (idempotent by commit token),
    # under its table's lease too: an append that loses a race leaves a data file no snapshot
    # references (found by the burst test's I4 check before the lease was taken here).
    with commit_turn(repo, contracts.LOADS_TABLE, owner):
        loads.record_load(database, lineage, data_keys, manifest_key, execution_arn, rows, rejects, cat)
    obs.logger.info(
        "file published",
        extra={
            "snapshot_id": rows.snapshot_id,
            "published_rows": rows.added_rows,
            "replaced_rows": rows.deleted_rows,
            "commit_attempts": rows.attempts,
            "rejects_snapshot_id": rejects.snapshot_id,
        },
    )
    return rows


def publish_rejects(
    repo: StatusRepository,
    file: FileRef,
    chunks: list[ChunkItem],
    manifest_key: str | None,
    execution_arn: str | None,
    owner: str,
    cat: Any = None,
    outcome: str | None = None,
) -> catalog.Published:
    """Commit the file's rejects to ``transaction_rejects`` (also for a file the threshold
    fails, ``outcome="FAILED"``: its rejects stay diagnosable, SPEC TBL7)."""
    reject_keys = [str(c["rejects_data_key"]) for c in chunks if c.get("rejects_data_key")]
    with commit_turn(repo, contracts.REJECTS_TABLE, owner):
        return catalog.publish(
            catalog.glue_database_name(),
            contracts.REJECTS_TABLE,
            file["bucket"],
            reject_keys,
            dataset.lineage_of(file),
            manifest_key,
            execution_arn,
            cat,
            outcome=outcome,
        )


@obs.lambda_handler("Finalize")
def handler(event: Any, context: Any = None) -> FileResult:
    """Check and total the chunks, write the manifest, move the source, file SUCCEEDED; then
    whether NotifyResult announces it (``announce``: DR2 standby, DR3 ledger)."""
    result = finalize(event)
    decided = announce.result_decision(StatusRepository(table_name()), file_of(event), result)
    return cast(FileResult, decided)


def finalize(event: Any) -> FileResult:
    """The file's result message, after totals, manifest, commit and archive."""
    file = file_of(event)
    header_of(event)
    plan = plan_of(event)
    file_id, partner, bucket = file["file_id"], file["partner"], file["bucket"]
    repo = StatusRepository(table_name())
    digest = str(plan.get("content_digest") or "")
    if plan.get("duplicate_content") and plan.get("duplicate_of"):  # DATA4(a): nothing to publish
        return content.finish_duplicate(repo, file, digest, str(plan["duplicate_of"]), {PLANNED})
    chunks = repo.list_chunks(file_id)
    rows_total, rows_valid, rows_rejected = check_chunks(file_id, int(plan["chunk_count"]), chunks)
    schema = load_schema(partner)
    item = repo.get_file(file_id) or {}
    # DATA4(c), before the commit: the rows repeating another chunk's ids leave the chunk's
    # data files (and output/ Parquet) for its rejects, so the commit publishes the
    # de-duplicated files. A retry after success finds it done (and the id lists gone).
    if item.get("status") != SUCCEEDED and dedupe.dedupe_across_chunks(repo, file, schema, chunks):
        chunks = repo.list_chunks(file_id)
        rows_total, rows_valid, rows_rejected = check_chunks(file_id, int(plan["chunk_count"]), chunks)
    try:
        check_threshold(rows_total, rows_rejected, schema.reject_threshold)
    except TooManyRejects:
        # SPEC TBL7: the rejects of a file the threshold fails are what its partner needs to
        # fix it: they go to transaction_rejects (marked as from a load that did not publish;
        # its valid rows stay unpublished) and MarkFailed keeps them and the rejects CSV.
        execution = event.get("execution_arn") or item.get("execution_arn")
        owner = f"{execution or ''}#{file_id}#{uuid.uuid4().hex[:8]}"
        rejects = publish_rejects(repo, file, chunks, None, execution, owner, outcome=FAILED)
        # SPEC RUN13: the counts known at failure stay on the file item (MarkFailed keeps them).
        repo.transition_file(
            file_id,
            {PROCESSING},
            PROCESSING,
            rows_total=rows_total,
            rows_valid=rows_valid,
            rows_rejected=rows_rejected,
            rejects_snapshot_id=rejects.snapshot_id,
            published_rejects=rejects.added_rows,
        )
        raise

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
    if digest and not file.get("force") and item.get("snapshot_id") is None:
        # DATA4(a): the first file with this content to reach this point wins (the registry put
        # comes before the commit); a file that lost a race to an identical one finishing at
        # the same time is a duplicate after all: it never commits, and its unpublished data
        # files (and output/, rejected/) are deleted.
        holder = content.register(repo, file, digest, done_key)
        if holder is not None:
            delete_unpublished_data(file, item, repo)
            return content.finish_duplicate(repo, file, digest, holder, {PROCESSING})
    s3.put_bytes(bucket, m_key, manifest_json(doc), "application/json", {"file-id": file_id})
    published = publish_file(
        repo,
        file,
        chunks,
        m_key,
        event.get("execution_arn") or item.get("execution_arn"),
        SUCCEEDED if item.get("status") == SUCCEEDED else PROCESSING,
    )
    if published.added_rows != rows_valid:
        raise ConservationViolation(
            f"file {file_id}: {rows_valid} valid rows but {published.added_rows} published in "
            f"snapshot {published.snapshot_id}"
        )
    # I4: attempts that never committed (a re-run chunk, a de-duplicated file) leave objects no
    # snapshot references; they go before the file is terminal, while no other run can start.
    catalog.remove_unreferenced(catalog.glue_database_name(), bucket, file_id)
    s3.move_object(bucket, str(file["key"]), done_key, source_version(file))
    # The result message NotifyResult sends; kept on the file item so the outbox (reconcile,
    # `etl notify`) can re-send it (OPS4).
    result: FileResult = {
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
        "snapshot_id": published.snapshot_id,
        "published_rows": published.added_rows,
        "table": f"{catalog.glue_database_name()}.{contracts.TRANSACTIONS_TABLE}",
        "message_group_id": partner,
        "dedup_id": file_id,
    }
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
        result=result,
        snapshot_id=published.snapshot_id,
        published_rows=published.added_rows,
    )
    # After the status: the chunk id lists must outlive every retry that may still need them.
    s3.delete_prefix(bucket, scratch_prefix(file_id))  # gzip chunk bodies, chunk id lists
    obs.add_metric(obs.FILES_SUCCEEDED, 1)
    obs.logger.info(
        "file succeeded",
        extra={
            "rows_total": rows_total,
            "rows_valid": rows_valid,
            "rows_rejected": rows_rejected,
            "snapshot_id": published.snapshot_id,
        },
    )
    return result
