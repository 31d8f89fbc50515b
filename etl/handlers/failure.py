"""Failing a file: shared by MarkFailed (inside the workflow) and reconcile (after it, OPS1).

Both record the reason on the file item, quarantine the source under ``failed/``, abort the
chunks that had not finished, remove the gzip scratch objects and delete the unpublished data
(:func:`delete_unpublished_data`: no visible rows, no unreferenced data objects, rejects kept).
Both shape the same alert (etl/core/alerts.py).

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from etl import observability as obs
from etl.aws import catalog, s3
from etl.aws.s3 import SourceMissing
from etl.aws.status import (
    DUPLICATE_CONTENT,
    FAILED,
    FILE_STATUSES,
    PENDING,
    RUNNING,
    SUCCEEDED,
    StatusRepository,
    utc_now,
)
from etl.contracts import TRANSACTIONS_TABLE
from etl.core import alerts, dataset
from etl.core.identity import decode_event_key, file_id_for
from etl.core.schema import load_schema
from etl.errors import EtlError, InvalidFileState
from etl.handlers.common import failed_key, output_prefix, scratch_prefix, source_name
from etl.payloads import Alert, ChunkItem, FileAttrs, FileItem, new_file

REASON_MAX = 2000


def parse_error(error: Any) -> tuple[str, str]:
    """(error type, message) from ``{"Error", "Cause"}`` (a Catch's output, or a status-change
    event's ``error``/``cause``); ``Cause`` is often Lambda's JSON ``{"errorType", ...}``."""
    if not isinstance(error, Mapping):
        return "UnknownError", "the execution failed without error details"
    name = str(error.get("Error") or "UnknownError")
    cause = error.get("Cause")
    message = ""
    if isinstance(cause, str) and cause.strip():
        try:
            decoded = json.loads(cause)
        except ValueError:
            message = cause
        else:
            if isinstance(decoded, Mapping):
                name = str(decoded.get("errorType") or name)
                message = str(decoded.get("errorMessage") or "") or cause
            else:
                message = cause
    elif isinstance(cause, Mapping):
        name = str(cause.get("errorType") or name)
        message = str(cause.get("errorMessage") or json.dumps(cause, sort_keys=True))
    return name, message or "no cause given"


def reason_text(error_type: str, message: str) -> str:
    reason = f"{error_type}: {message}"
    return reason if len(reason) <= REASON_MAX else reason[: REASON_MAX - 3] + "..."


def owned_by_failure_handling(item: Mapping[str, Any]) -> bool:
    """A FAILED item without an execution ARN was written by the failure handling itself."""
    return item.get("status") == FAILED and not item.get("execution_arn")


def s3_event_of(execution_input: Any) -> Mapping[str, Any] | None:
    """The S3 Object Created event in an execution input (bare, or wrapped as ``event``)."""
    if not isinstance(execution_input, Mapping):
        return None
    if execution_input.get("source") == "aws.s3" and isinstance(execution_input.get("detail"), Mapping):
        return execution_input
    return s3_event_of(execution_input.get("event")) if "event" in execution_input else None


def adopt_from_s3_event(
    event: Mapping[str, Any], repo: StatusRepository, failed_attrs: Mapping[str, Any]
) -> tuple[FileAttrs | FileItem | None, bool]:
    """RegisterFile never completed: (the file the S3 event names, whether the caller may act
    on it). It may act when it registers the file as FAILED itself (no item existed), never
    when another execution registered it."""
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        return None, False
    try:
        bucket = detail["bucket"]["name"]
        key = decode_event_key(str(detail["object"]["key"]))
    except (KeyError, TypeError, EtlError):
        return None, False
    obj = detail.get("object") or {}
    version = obj.get("version-id") or None
    if version:
        known = repo.get_file(file_id_for(key, version, None))
        if known is not None:  # e.g. a retry after the source was already moved
            return known, owned_by_failure_handling(known)
    try:
        info = s3.head(bucket, key, version)
    except SourceMissing:
        return None, False
    etag = str(obj.get("etag") or info.etag).strip('"')
    file = new_file(bucket, key, version or info.version_id, etag, info.size)
    if repo.register_file({**file, **failed_attrs, "status": FAILED, "finished_at": utc_now()}):
        return file, True
    existing = repo.get_file(file["file_id"]) or {}
    return ({**file, **existing}, owned_by_failure_handling(existing))


def quarantine(file: Mapping[str, Any]) -> str | None:
    """Move the source to failed/ (idempotent); None if there is nothing to move."""
    target = failed_key(file)
    version = file.get("version_id") if file.get("key") == file.get("original_key") else None
    try:
        s3.move_object(file["bucket"], str(file["key"]), target, version or None)
    except SourceMissing as exc:
        obs.logger.warning("source not moved to failed/: %s", exc)
        return None
    return target


def delete_unpublished_data(
    file: Mapping[str, Any], item: Mapping[str, Any] | None, repo: StatusRepository | None = None
) -> int:
    """A failing file leaves no visible rows and no unreferenced data (SPEC DATA2, TBL3 I1/I4).

    The table decides, not the file item: a commit that landed before its Finalize died is
    found there (the item may never have recorded it) and undone (``catalog.unpublish``: the
    file's rows out, an earlier version of its key back). Then every object under the file's
    data prefixes that no snapshot references is deleted, and its Parquet under ``output/``.
    Its rejects stay (TBL7: the CSV under ``rejected/``; rejects committed to
    ``transaction_rejects`` by a threshold failure are referenced, so kept). A SUCCEEDED file
    is never passed here. Returns the number of objects deleted."""
    bucket, partner, file_id = file["bucket"], str(file["partner"]), str(file["file_id"])
    database = catalog.glue_database_name()
    lineage = dataset.lineage_of({**dict(item or {}), **dict(file)})
    owner = f"unpublish#{file_id}#{uuid.uuid4().hex[:8]}"
    reason = str((item or {}).get("error") or "the file failed")
    if repo is not None:
        with finalize_turn(repo, owner):
            undone = catalog.unpublish(database, TRANSACTIONS_TABLE, lineage, reason)
    else:
        undone = catalog.unpublish(database, TRANSACTIONS_TABLE, lineage, reason)
    if undone is not None:
        obs.logger.warning(
            "file %s had rows in the table; unpublished in snapshot %s", file_id, undone.snapshot_id
        )
        if repo is not None:
            live = repo.get_live(lineage.partner, lineage.source_key)
            if live is not None and live.get("live_file_id") == file_id:
                # The version this file replaced is live again (its rows were put back).
                earlier = live.get("previous_file_id")
                earlier_item = repo.get_file(str(earlier)) if earlier else None
                repo.set_live(  # "" = no version of the key is live
                    lineage.partner,
                    lineage.source_key,
                    str(earlier) if earlier_item else "",
                    str((earlier_item or {}).get("created_at") or ""),
                    None,
                )
            with contextlib.suppress(InvalidFileState):
                repo.transition_file(
                    file_id,
                    {FAILED},
                    FAILED,
                    snapshot_id=None,
                    published_rows=None,
                    unpublished_snapshot_id=undone.snapshot_id,
                )
    deleted = catalog.remove_unreferenced(database, bucket, file_id)
    deleted += s3.delete_prefix(bucket, output_prefix(load_schema(partner).dataset, partner, file_id))
    return int(deleted or 0)


def finalize_turn(repo: StatusRepository, owner: str) -> Any:
    from etl.handlers.finalize import commit_turn  # the one lease of the transactions table

    return commit_turn(repo, TRANSACTIONS_TABLE, owner)


@dataclass
class Failure:
    """What failing a file did."""

    file: Mapping[str, Any]
    item: FileItem | None
    failed_key: str | None
    chunk_statuses: list[str] = field(default_factory=list)
    changed: bool = False  # this call moved the file item to FAILED
    deleted: int = 0  # unpublished data objects removed
    counts: dict[str, int] = field(default_factory=dict)  # rows of the chunks that finished


def _chunk_counts(chunks: list[ChunkItem]) -> dict[str, int]:
    done = [c for c in chunks if c.get("status") == SUCCEEDED]
    if not done:
        return {}
    return {
        "rows_total": sum(int(c.get("rows_in") or 0) for c in done),
        "rows_valid": sum(int(c.get("rows_valid") or 0) for c in done),
        "rows_rejected": sum(int(c.get("rows_rejected") or 0) for c in done),
    }


# Finished statuses a failure never touches (the file's outcome is settled).
FINISHED = frozenset({SUCCEEDED, DUPLICATE_CONTENT})


def fail_file(
    repo: StatusRepository,
    file: Mapping[str, Any],
    reason: str,
    error_type: str,
    *,
    allowed_from: Any = None,
) -> Failure:
    """Mark the file FAILED (from ``allowed_from``, default every status but SUCCEEDED),
    quarantine the source, abort unfinished chunks, remove gzip scratch. Idempotent; a
    SUCCEEDED file is never touched."""
    file_id = file["file_id"]
    item = repo.get_file(file_id)
    chunks = repo.list_chunks(file_id)
    result = Failure(file, item, None, [str(c.get("status")) for c in chunks], counts=_chunk_counts(chunks))
    if item is not None and item.get("status") in (SUCCEEDED, DUPLICATE_CONTENT):
        # Finished (e.g. only the result message failed): never unpublish or re-quarantine.
        obs.logger.error("asked to fail a %s file: nothing changed", item.get("status"))
        return result
    if item is None:
        obs.logger.error("no file item for %s; moving the source anyway", file_id)
    result.failed_key = quarantine(file)
    # SPEC RUN13: when every planned chunk finished, the file's counts are known: keep them.
    complete = bool(chunks) and len(chunks) == int((item or {}).get("chunk_count") or -1)
    counts = result.counts if complete and all(c.get("status") == SUCCEEDED for c in chunks) else {}
    if item is not None:
        try:
            result.item = repo.transition_file(
                file_id,
                allowed_from
                if allowed_from is not None
                else set(FILE_STATUSES) - {SUCCEEDED, DUPLICATE_CONTENT},
                FAILED,
                error=reason,
                error_type=error_type,
                failed_key=result.failed_key,
                key=result.failed_key or file.get("key"),
                finished_at=utc_now(),
                **{k: v for k, v in counts.items() if item.get(k) is None},
            )
            result.changed = item.get("status") != FAILED
        except InvalidFileState as exc:  # changed under us (deleted, succeeded): report it
            obs.logger.error("file status not changed: %s", exc)
    for chunk in chunks:
        if chunk.get("status") in (PENDING, RUNNING):
            repo.fail_chunk(file_id, chunk["chunk_id"], f"aborted, the file failed: {reason}")
    if file.get("compression") == "gzip":
        s3.delete_prefix(file["bucket"], scratch_prefix(file_id))
    result.deleted = delete_unpublished_data(file, result.item or item, repo)
    return result


def alert_for(
    file: Mapping[str, Any] | None,
    item: Mapping[str, Any] | None,
    *,
    reason: str,
    error_type: str,
    failed_key: str | None,
    failed_step: str,
    detected_by: str,
    execution_arn: str | None = None,
    counts: Mapping[str, int] | None = None,
) -> Alert:
    """The person-readable alert (subject, body, attributes) for a failed file; counts come
    from the file item, else from the chunks that had finished (``counts``)."""
    file = file or {}
    item = {**(counts or {}), **{k: v for k, v in (item or {}).items() if v is not None}}
    return cast(
        Alert,
        alerts.failure_alert(
            {
                "file_id": file.get("file_id"),
                "partner": file.get("partner"),
                "name": source_name(file) if file.get("original_key") or file.get("key") else None,
                "error_type": error_type,
                "reason": reason,
                "failed_step": failed_step,
                "detected_by": detected_by,
                "bucket": file.get("bucket"),
                "original_key": file.get("original_key"),
                "failed_key": failed_key,
                "rows_total": item.get("rows_total"),
                "rows_valid": item.get("rows_valid"),
                "rows_rejected": item.get("rows_rejected"),
                "attempts": item.get("attempts"),
                "execution_arn": execution_arn or item.get("execution_arn"),
            }
        ),
    )
