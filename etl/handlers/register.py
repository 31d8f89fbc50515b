"""RegisterFile: turn the execution input into the file item and ``$.file``.

Input (docs/contracts.md): ``{"event": <S3 Object Created event | {"reprocess": {"file_id"}}>,
"execution_arn": "..."}``. Output: ``$.file``. A second event for an object version that is
already registered returns ``duplicate: true`` (the workflow ends in ``DuplicateIgnored``);
a retry of this very step (same execution) is recognised and is not a duplicate.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from etl import observability as obs
from etl.aws import s3
from etl.aws.status import DUPLICATE_CONTENT, FAILED, REGISTERED, StatusRepository
from etl.contracts import INCOMING_PREFIX
from etl.core.identity import decode_event_key, file_id_for, partner_from_key
from etl.errors import InvalidEvent, InvalidFileState
from etl.handlers.common import table_name


def _compression(key: str) -> str:
    return "gzip" if key.lower().endswith(".gz") else "none"


def _file_output(item: Mapping[str, Any], duplicate: bool, force: bool = False) -> dict[str, Any]:
    """The ``$.file`` shape: only the documented keys. ``force``: a reprocess that loads the
    content even if another file already loaded it (DATA4(a), ``etl reprocess --force``)."""
    return {
        "file_id": item["file_id"],
        "bucket": item["bucket"],
        "key": item["key"],
        "original_key": item.get("original_key", item["key"]),
        "version_id": item.get("version_id"),
        "size": int(item.get("size", 0)),
        "etag": item.get("etag"),
        "partner": item["partner"],
        "compression": item.get("compression") or _compression(str(item["key"])),
        "duplicate": duplicate,
        "force": force,
    }


def _split_input(event: Any) -> tuple[Mapping[str, Any], str | None]:
    """(execution input, execution ARN); also accepts the bare execution input."""
    if not isinstance(event, Mapping):
        raise InvalidEvent("RegisterFile expects a JSON object")
    inner = event.get("event")
    if isinstance(inner, Mapping):
        return inner, event.get("execution_arn")
    return event, event.get("execution_arn")


def _register_s3_event(event: Mapping[str, Any], execution_arn: str | None) -> dict[str, Any]:
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
    file_id = file_id_for(key, version_id, etag)
    obs.bind(file_id=file_id)

    item = {
        "file_id": file_id,
        "bucket": bucket,
        "key": key,
        "original_key": key,
        "version_id": version_id,
        "size": size,
        "etag": etag,
        "partner": partner_from_key(key),
        "compression": _compression(key),
        "execution_arn": execution_arn,
        "status": REGISTERED,
    }
    if repo.register_file(item):
        obs.logger.info("registered %s", key, extra={"size": size, "partner": item["partner"]})
        return _file_output(item, duplicate=False)
    return _existing({**item, **(repo.get_file(file_id) or {})}, execution_arn)


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


def _existing(existing: Mapping[str, Any], execution_arn: str | None) -> dict[str, Any]:
    """The answer for an object version that already has a file item."""
    obs.bind(file_id=existing["file_id"])
    if execution_arn and existing.get("execution_arn") == execution_arn:
        # Our own earlier attempt registered it (its response was lost): carry on.
        obs.logger.info("file already registered by this execution; continuing")
        return _file_output(existing, duplicate=False)
    obs.logger.info(
        "duplicate event ignored",
        extra={
            "existing_status": existing.get("status"),
            "existing_execution": existing.get("execution_arn"),
        },
    )
    return _file_output(existing, duplicate=True)


def _reprocess(request: Mapping[str, Any], execution_arn: str | None) -> dict[str, Any]:
    file_id = request.get("file_id")
    if not isinstance(file_id, str) or not file_id:
        raise InvalidEvent("a reprocess request needs {'reprocess': {'file_id': '<id>'}}")
    force = request.get("force") is True
    obs.bind(file_id=file_id)
    repo = StatusRepository(table_name())
    item = repo.get_file(file_id)
    if item is None:
        raise InvalidFileState(f"cannot reprocess file {file_id}: no such file in the status table")
    if item.get("status") == REGISTERED and execution_arn and item.get("execution_arn") == execution_arn:
        return _file_output(item, duplicate=False, force=force)  # a retry of our own claim
    # DUPLICATE_CONTENT only when forced: without force it would end DUPLICATE_CONTENT again.
    allowed = (FAILED, DUPLICATE_CONTENT) if force else (FAILED,)
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
    return _file_output(item, duplicate=False, force=force)


@obs.lambda_handler("RegisterFile")
def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Register the file (conditional put) or claim a FAILED file for reprocessing."""
    execution_input, execution_arn = _split_input(event)
    request = execution_input.get("reprocess")
    if request is not None:
        if not isinstance(request, Mapping):
            raise InvalidEvent("'reprocess' must be an object with a file_id")
        return _reprocess(request, execution_arn)
    return _register_s3_event(execution_input, execution_arn)
