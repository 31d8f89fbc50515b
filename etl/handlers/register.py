"""RegisterFile: turn the execution input into the file item and ``$.file``.

Input (docs/contracts.md): ``{"event": <S3 Object Created event | {"reprocess": {"file_id"}}>,
"execution_arn": "..."}``. Output: ``$.file``. A second event for an object version that is
already registered returns ``duplicate: true`` (the workflow ends in ``DuplicateIgnored``);
a retry of this very step (same execution) is recognised and is not a duplicate.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from etl import observability as obs
from etl.aws import s3
from etl.aws.status import DUPLICATE_CONTENT, FAILED, REGISTERED, SUCCEEDED, StatusRepository
from etl.contracts import INCOMING_PREFIX
from etl.core.identity import decode_event_key, file_id_for
from etl.errors import InvalidEvent, InvalidFileState
from etl.handlers.common import table_name
from etl.payloads import FileAttrs, FileItem, FileRef, file_ref, new_file


def _split_input(event: Any) -> tuple[Mapping[str, Any], str | None]:
    """(execution input, execution ARN); also accepts the bare execution input."""
    if not isinstance(event, Mapping):
        raise InvalidEvent("RegisterFile expects a JSON object")
    inner = event.get("event")
    if isinstance(inner, Mapping):
        return inner, event.get("execution_arn")
    return event, event.get("execution_arn")


def _register_s3_event(event: Mapping[str, Any], execution_arn: str | None) -> FileRef:
    if event.get("source") != "aws.s3" or event.get("detail-type") != "Object Created":
        raise InvalidEvent(
            "execution input is neither an S3 'Object Created' event nor a reprocess request: "
            f"source={event.get('source')!r}, detail-type={event.get('detail-type')!r}"
        )
    detail = event.get("detail") or {}
    bucket = (detail.get("bucket") or {}).get("name")
    obj = detail.get("object") or {}
    raw_key = obj.get("key")
    if not bucket or not raw_key:
        raise InvalidEvent("the S3 event has no detail.bucket.name or detail.object.key")
    key = decode_event_key(str(raw_key))
    if not key.startswith(INCOMING_PREFIX):
        raise InvalidEvent(f"object key {key!r} is outside {INCOMING_PREFIX}")
    if key.endswith("/"):
        raise InvalidEvent(f"object key {key!r} is a folder marker, not a file")

    version_id = obj.get("version-id") or None
    repo = StatusRepository(table_name())
    if version_id:
        # A duplicate event may arrive after the file was processed and moved away: look the
        # id up before HEAD, or the duplicate would fail as "object does not exist".
        known = repo.get_file(file_id_for(key, version_id, None))
        if known is not None:
            return _existing(known, execution_arn)
    # HEAD confirms the object (that version) still exists and fills what the event lacks.
    key, info = _head_event_key(bucket, key, str(raw_key), version_id)
    version_id = version_id or info.version_id
    etag = str(obj.get("etag") or info.etag).strip('"')
    size = int(obj["size"]) if obj.get("size") is not None else info.size
    file = new_file(bucket, key, version_id, etag, size)
    file_id = file["file_id"]
    obs.bind(file_id=file_id)
    if repo.register_file({**file, "execution_arn": execution_arn, "status": REGISTERED}):
        obs.logger.info("registered %s", key, extra={"size": size, "partner": file["partner"]})
        return file_ref(file, duplicate=False)
    # Another registration won: the stored item (ours filled in where it lacks a key).
    return _existing(cast(FileItem, {**file, **(repo.get_file(file_id) or {})}), execution_arn)


def _head_event_key(bucket: str, decoded: str, raw: str, version_id: str | None) -> tuple[str, s3.ObjectInfo]:
    """HEAD the object the event names: S3 URL-encodes keys in its events, but '+' and '%' are
    legal in keys, so a producer that sends the raw key (a hand-made or replayed event) would
    be mis-decoded. The decoded key wins; the raw one is tried only when that does not exist."""
    try:
        return decoded, s3.head(bucket, decoded, version_id)
    except s3.SourceMissing:
        if raw == decoded:
            raise
        try:
            return raw, s3.head(bucket, raw, version_id)
        except s3.SourceMissing:
            pass
        raise


def _existing(existing: FileAttrs | FileItem, execution_arn: str | None) -> FileRef:
    """The answer for an object version that already has a file item."""
    obs.bind(file_id=existing["file_id"])
    if execution_arn and existing.get("execution_arn") == execution_arn:
        # Our own earlier attempt registered it (its response was lost): carry on.
        obs.logger.info("file already registered by this execution; continuing")
        return file_ref(existing, duplicate=False)
    obs.logger.info(
        "duplicate event ignored",
        extra={
            "existing_status": existing.get("status"),
            "existing_execution": existing.get("execution_arn"),
        },
    )
    return file_ref(existing, duplicate=True)


def _reprocess(request: Mapping[str, Any], execution_arn: str | None) -> FileRef:
    file_id = request.get("file_id")
    if not isinstance(file_id, str) or not file_id:
        raise InvalidEvent("a reprocess request needs {'reprocess': {'file_id': '<id>'}}")
    force = request.get("force") is True
    rollback = request.get("rollback") is True
    obs.bind(file_id=file_id)
    repo = StatusRepository(table_name())
    item = repo.get_file(file_id)
    if item is None:
        raise InvalidFileState(f"cannot reprocess file {file_id}: no such file in the status table")
    if item.get("status") == REGISTERED and execution_arn and item.get("execution_arn") == execution_arn:
        return file_ref(item, duplicate=False, force=force, rollback=rollback)  # our own claim, retried
    # DUPLICATE_CONTENT only when forced: without force it would end DUPLICATE_CONTENT again.
    # SUCCEEDED only for a rollback: an older version whose rows a newer one replaced (TBL5).
    allowed = (FAILED, DUPLICATE_CONTENT) if force else (FAILED,)
    if rollback:
        allowed = (*allowed, SUCCEEDED)
    if item.get("status") not in allowed:
        hint = " (use --force to load duplicate content)" if item.get("status") == DUPLICATE_CONTENT else ""
        raise InvalidFileState(
            f"cannot reprocess file {file_id}: its status is {item.get('status')}, only "
            f"{'/'.join(allowed)} files can be{hint}"
        )
    # The source sits where MarkFailed put it (failed/...); read it from there.
    current = str(item.get("failed_key") or item["key"])
    info = s3.head(item["bucket"], current)
    item = repo.claim_reprocess(
        file_id,
        execution_arn or "unknown",
        allowed,
        key=current,
        size=info.size,
        error=None,
        error_type=None,
        finished_at=None,
        duplicate_of=None,
    )
    obs.logger.info(
        "reprocess claimed", extra={"key": current, "attempts": item.get("attempts"), "force": force}
    )
    return file_ref(item, duplicate=False, force=force, rollback=rollback)


@obs.lambda_handler("RegisterFile")
def handler(event: Any, context: Any = None) -> FileRef:
    """Register the file (conditional put) or claim a FAILED file for reprocessing."""
    execution_input, execution_arn = _split_input(event)
    request = execution_input.get("reprocess")
    if request is not None:
        if not isinstance(request, Mapping):
            raise InvalidEvent("'reprocess' must be an object with a file_id")
        return _reprocess(request, execution_arn)
    return _register_s3_event(execution_input, execution_arn)
