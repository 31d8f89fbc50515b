"""MarkFailed: record why the file failed, quarantine the source, shape the alert.

Input: the whole state (``$``): ``error`` = ``{"Error", "Cause"}`` from the Catch (``Cause`` is
usually Lambda's JSON ``{"errorMessage", "errorType", ...}``), ``file`` when RegisterFile had
succeeded. Output ``$.failure`` = ``{"file_id", "status": "FAILED", "reason", "failed_key",
"subject", "message"}`` for the SNS alert.

This step must not fail for want of state: a missing file item or a source that is already
gone is logged, not raised. Throttling still raises ``TransientError`` (the step is retried).
When RegisterFile itself failed but the input is an S3 event for an object that exists, the
file is registered here as FAILED (only if no item exists: another execution may own it) and
moved to ``failed/``, so that ``etl reprocess`` can pick it up.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from etl import observability as obs
from etl.aws import s3
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
from etl.core.identity import decode_event_key, file_id_for, partner_from_key
from etl.errors import EtlError, InvalidFileState
from etl.handlers.common import failed_key, scratch_prefix, table_name

SUBJECT_MAX = 100
REASON_MAX = 2000
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]+")


def parse_error(error: Any) -> tuple[str, str]:
    """(error type, message) from the Catch output ``{"Error", "Cause"}``."""
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
                message = str(decoded.get("errorMessage") or "")
                if not message:
                    message = cause
            else:
                message = cause
    elif isinstance(cause, Mapping):
        name = str(cause.get("errorType") or name)
        message = str(cause.get("errorMessage") or json.dumps(cause, sort_keys=True))
    if not message:
        message = "no cause given"
    return name, message


def sns_subject(text: str) -> str:
    """An SNS-valid subject: ASCII printable, no line breaks, at most 100 characters."""
    clean = _NOT_PRINTABLE.sub(" ", text).strip() or "ETL file failed"
    return clean if len(clean) <= SUBJECT_MAX else clean[: SUBJECT_MAX - 3].rstrip() + "..."


def _stage(state: Mapping[str, Any], chunk_statuses: list[str]) -> str:
    """Which step failed, inferred from what the state already holds."""
    if not isinstance(state.get("file"), Mapping):
        return "RegisterFile"
    if "result" in state:  # Finalize succeeded; sending the result message did not
        return "NotifyResult"
    if "header" not in state:
        return "ValidateHeader"
    if "plan" not in state:
        return "PlanChunks"
    if chunk_statuses and all(s == SUCCEEDED for s in chunk_statuses):
        return "Finalize"
    return "ProcessChunks"


def _owned(item: Mapping[str, Any]) -> bool:
    """A FAILED item without an execution ARN was written by MarkFailed itself (a retry)."""
    return item.get("status") == FAILED and not item.get("execution_arn")


def _adopt_from_s3_event(
    state: Mapping[str, Any], repo: StatusRepository, failed_attrs: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, bool]:
    """RegisterFile failed: (the file the S3 event names, whether this execution may act on
    it). It may act when it registers the file as FAILED itself (no item existed), never when
    another execution registered it."""
    detail = state.get("detail")
    if state.get("source") != "aws.s3" or not isinstance(detail, Mapping):
        return None, False
    try:
        bucket = detail["bucket"]["name"]
        key = decode_event_key(str(detail["object"]["key"]))
    except (KeyError, TypeError, EtlError):
        return None, False
    obj = detail.get("object") or {}
    version = obj.get("version-id") or None
    if version:
        known = repo.get_file(file_id_for(bucket, key, version, None))
        if known is not None:  # e.g. this step is being retried after it moved the source
            return known, _owned(known)
    try:
        info = s3.head(bucket, key, version)
    except SourceMissing:
        return None, False
    version = version or info.version_id
    etag = str(obj.get("etag") or info.etag).strip('"')
    file = {
        "file_id": file_id_for(bucket, key, version, etag),
        "bucket": bucket,
        "key": key,
        "original_key": key,
        "version_id": version,
        "size": info.size,
        "etag": etag,
        "partner": partner_from_key(key),
        "compression": "gzip" if key.lower().endswith(".gz") else "none",
    }
    if repo.register_file({**file, **failed_attrs, "status": FAILED, "finished_at": utc_now()}):
        return file, True
    existing = repo.get_file(file["file_id"]) or {}
    return ({**file, **existing}, _owned(existing))


def _quarantine(file: Mapping[str, Any]) -> str | None:
    """Move the source to failed/ (idempotent); None if there is nothing to move."""
    target = failed_key(file)
    version = file.get("version_id") if file.get("key") == file.get("original_key") else None
    try:
        s3.move_object(file["bucket"], str(file["key"]), target, version or None)
    except SourceMissing as exc:
        obs.logger.warning("source not moved to failed/: %s", exc)
        return None
    return target


@obs.lambda_handler("MarkFailed")
def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Mark the file FAILED with a reason, move it to failed/, return the alert."""
    state: Mapping[str, Any] = event if isinstance(event, Mapping) else {}
    error_type, error_message = parse_error(state.get("error"))
    reason = f"{error_type}: {error_message}"
    if len(reason) > REASON_MAX:
        reason = reason[: REASON_MAX - 3] + "..."
    repo = StatusRepository(table_name())

    file: dict[str, Any] | None = dict(state["file"]) if isinstance(state.get("file"), Mapping) else None
    may_act = file is not None
    if file is None:
        file, may_act = _adopt_from_s3_event(state, repo, {"error": reason, "error_type": error_type})
        if file is not None:
            obs.bind(file_id=file["file_id"])
            if not may_act:
                obs.logger.warning("RegisterFile failed and another execution owns this file: not touched")
    chunk_statuses: list[str] = []
    target: str | None = None
    item: dict[str, Any] | None = None
    if file is not None and may_act:
        file_id = file["file_id"]
        item = repo.get_file(file_id)
        chunks = repo.list_chunks(file_id)
        chunk_statuses = [str(c.get("status")) for c in chunks]
        if item is not None and item.get("status") in (SUCCEEDED, DUPLICATE_CONTENT):
            # Finished (e.g. only the result message failed): never unpublish or re-quarantine.
            obs.logger.error("MarkFailed called for a %s file: nothing changed", item.get("status"))
        else:
            if item is None:
                obs.logger.error("no file item for %s; moving the source anyway", file_id)
            target = _quarantine(file)
            if item is not None:
                try:
                    repo.transition_file(
                        file_id,
                        set(FILE_STATUSES) - {SUCCEEDED, DUPLICATE_CONTENT},
                        FAILED,
                        error=reason,
                        error_type=error_type,
                        failed_key=target,
                        key=target or file.get("key"),
                        finished_at=utc_now(),
                    )
                except InvalidFileState as exc:  # changed under us (deleted, succeeded): report it
                    obs.logger.error("file status not changed: %s", exc)
            for chunk in chunks:
                if chunk.get("status") in (PENDING, RUNNING):
                    repo.fail_chunk(file_id, chunk["chunk_id"], f"aborted, the file failed: {reason}")
            if file.get("compression") == "gzip":
                s3.delete_prefix(file["bucket"], scratch_prefix(file_id))

    stage = _stage(state, chunk_statuses)
    file_id = file["file_id"] if file else None
    partner = file.get("partner") if file else None
    name = str((file or {}).get("original_key") or "").rsplit("/", 1)[-1]
    subject = sns_subject(f"ETL FAILED {partner or 'unknown'}/{name or 'unknown file'}: {error_type}")
    details = {
        "status": FAILED,
        "file_id": file_id,
        "partner": partner,
        "bucket": (file or {}).get("bucket"),
        "original_key": (file or {}).get("original_key"),
        "failed_key": target,
        "failed_step": stage,
        "error_type": error_type,
        "reason": reason,
        "attempts": (item or {}).get("attempts"),
        "file_status": (item or {}).get("status"),
        "hint": f"fix the cause, then: etl reprocess {file_id}" if target else None,
    }
    obs.add_metric(obs.FILES_FAILED, 1)
    obs.logger.error("file failed in %s: %s", stage, reason, extra={"failed_key": target})
    return {
        "file_id": file_id,
        "status": FAILED,
        "reason": reason,
        "failed_key": target,
        "subject": subject,
        "message": json.dumps(details, sort_keys=True, indent=2),
    }
