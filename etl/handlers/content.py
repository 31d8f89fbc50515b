"""DATA4(a): the registry of loaded content and the DUPLICATE_CONTENT ending, shared by
PlanChunks (look-up) and Finalize (registration, duplicate ending).

Registry item in the status table (docs/runtime.md): ``file_id = CONTENT#<partner>#<digest>``,
``chunk_id = CONTENT``, ``loaded_file_id`` = the file that SUCCEEDED with that content. It is
written by Finalize with a conditional put (first SUCCEEDED file wins, a re-run of the same
file is accepted) and read by PlanChunks.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from etl import observability as obs
from etl.aws import clients, s3
from etl.aws.errors import error_code, transient_errors
from etl.aws.status import DUPLICATE_CONTENT, SUCCEEDED, StatusRepository, utc_now
from etl.core.content import CONTENT_DIGEST_ALGORITHM
from etl.handlers.common import processed_key, scratch_prefix, source_version
from etl.payloads import FileResult

CONTENT_ITEM = "CONTENT"


def registry_key(partner: str, digest: str) -> dict[str, Any]:
    return {"file_id": {"S": f"CONTENT#{partner}#{digest}"}, "chunk_id": {"S": CONTENT_ITEM}}


def loaded_by(repo: StatusRepository, partner: str, digest: str, file_id: str) -> str | None:
    """The id of another SUCCEEDED file of ``partner`` whose content digest is ``digest``."""
    with transient_errors(f"GetItem CONTENT#{partner}"):
        resp = clients.dynamodb().get_item(
            TableName=repo.table_name, Key=registry_key(partner, digest), ConsistentRead=True
        )
    item = resp.get("Item")
    if not item:
        return None
    other = item.get("loaded_file_id", {}).get("S")
    if not other or other == file_id:
        return None
    # Only a file that is still SUCCEEDED counts (the registry is written when a file succeeds).
    other_item = repo.get_file(other)
    if other_item is None or other_item.get("status") != SUCCEEDED:
        return None
    return str(other)


def register(repo: StatusRepository, file: Mapping[str, Any], digest: str, key: str) -> str | None:
    """Record that ``file`` loaded ``digest`` (conditional put). Returns None when this file
    holds the entry (new, or already its own), else the file id that holds it."""
    partner, file_id = str(file["partner"]), str(file["file_id"])
    item = {
        **registry_key(partner, digest),
        "loaded_file_id": {"S": file_id},
        "partner": {"S": partner},
        "content_digest": {"S": digest},
        "digest_algorithm": {"S": CONTENT_DIGEST_ALGORITHM},
        "key": {"S": key},
        "registered_at": {"S": utc_now()},
    }
    try:
        with transient_errors(f"PutItem CONTENT#{partner}"):
            clients.dynamodb().put_item(
                TableName=repo.table_name,
                Item=item,
                ConditionExpression="attribute_not_exists(#pk) OR #by = :me",
                ExpressionAttributeNames={"#pk": "file_id", "#by": "loaded_file_id"},
                ExpressionAttributeValues={":me": {"S": file_id}},
            )
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        with transient_errors(f"GetItem CONTENT#{partner}"):
            resp = clients.dynamodb().get_item(
                TableName=repo.table_name, Key=registry_key(partner, digest), ConsistentRead=True
            )
        return str(resp.get("Item", {}).get("loaded_file_id", {}).get("S") or "?")
    return None


def finish_duplicate(
    repo: StatusRepository, file: Mapping[str, Any], digest: str, duplicate_of: str, allowed_from: set[str]
) -> FileResult:
    """End the file as DUPLICATE_CONTENT: source to processed/, scratch removed, status set;
    returns the result message (NotifyResult sends it). Idempotent (a retry finds the status
    already set and the source already moved)."""
    file_id, partner, bucket = str(file["file_id"]), str(file["partner"]), str(file["bucket"])
    done_key = processed_key(file)
    s3.move_object(bucket, str(file["key"]), done_key, source_version(file))
    s3.delete_prefix(bucket, scratch_prefix(file_id))  # gzip chunk bodies, chunk id lists
    repo.transition_file(
        file_id,
        allowed_from | {DUPLICATE_CONTENT},
        DUPLICATE_CONTENT,
        duplicate_of=duplicate_of,
        content_digest=digest,
        rows_total=0,
        rows_valid=0,
        rows_rejected=0,
        processed_key=done_key,
        key=done_key,
        failed_key=None,
        error=None,
        error_type=None,
        finished_at=utc_now(),
    )
    obs.logger.info("duplicate content: nothing published", extra={"duplicate_of": duplicate_of})
    return {
        "status": DUPLICATE_CONTENT,
        "file_id": file_id,
        "partner": partner,
        "duplicate_of": duplicate_of,
        "content_digest": digest,
        "rows_total": 0,
        "rows_valid": 0,
        "rows_rejected": 0,
        "processed_key": done_key,
        "message_group_id": partner,
        # Not the file id alone: a forced reprocess may succeed within SQS's 5-minute
        # de-duplication window and its SUCCEEDED message must not be dropped.
        "dedup_id": f"{file_id}-duplicate-content",
    }
