"""SEC4: no file goes unseen. Part of the reconcile sweep (etl/handlers/reconcile.py).

S3 and EventBridge deliver "Object Created" at least once, but a rule disabled for a moment,
a target failing past its retries into a DLQ nobody drains, or an operator's mistake can leave
an object under ``incoming/`` that no execution ever saw: no status item, no alert, nothing.
The sweep lists ``incoming/`` and, for every object older than the stale bound whose file id
(key + version id) has no status item, puts the event S3 would have sent into the admission
buffer queue (``BUFFER_QUEUE_URL``, infra/admission.py): the file is then processed like any
other. A late original event and the re-delivered one meet in RegisterFile, which starts one
processing (the second ends DuplicateIgnored). The ``UnseenFiles`` metric (0 included) counts
them; its alarm pages, because an event went missing somewhere.

Objects moved to ``processed/``/``failed/`` are hidden behind delete markers (DR5), so the
listing holds only files not yet finished; at most ``MAX_CHECKED_PER_SWEEP`` are checked.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import datetime
import json
import os
import urllib.parse
from typing import Any

from etl import contracts
from etl import observability as obs
from etl.aws import clients, s3
from etl.aws.errors import transient_errors
from etl.aws.status import StatusRepository
from etl.core.identity import file_id_for

MAX_CHECKED_PER_SWEEP = 1000
DETECTED_BY = "reconcile sweep (scheduled): object under incoming/ without a status item"


def object_created_event(bucket: str, key: str, info: s3.ObjectInfo, region: str) -> dict[str, Any]:
    """The EventBridge "Object Created" event S3 sends for this object (key URL-encoded as S3
    encodes it, so RegisterFile decodes it exactly once)."""
    obj: dict[str, Any] = {
        "key": urllib.parse.quote_plus(key, safe="/"),
        "size": info.size,
        "etag": info.etag,
    }
    if info.version_id:
        obj["version-id"] = info.version_id
    file_id = file_id_for(key, info.version_id, info.etag)
    return {
        "version": "0",
        "id": f"sweep-{file_id}",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": obj,
            "reason": "PutObject",
            "requester": DETECTED_BY,
        },
    }


def find_unseen(
    repo: StatusRepository, bucket: str, older_than: datetime.datetime
) -> list[tuple[str, s3.ObjectInfo]]:
    """Objects under incoming/ last modified before ``older_than`` with no status item."""
    unseen: list[tuple[str, s3.ObjectInfo]] = []
    checked = 0
    for key, modified in s3.list_modified(bucket, contracts.INCOMING_PREFIX):
        if modified >= older_than or key.endswith("/"):
            continue
        if checked >= MAX_CHECKED_PER_SWEEP:
            obs.logger.warning(
                "unseen-object check stopped after %d objects; the next sweep goes on", checked
            )
            break
        checked += 1
        try:
            info = s3.head(bucket, key)
        except s3.SourceMissing:  # moved meanwhile
            continue
        if repo.get_file(file_id_for(key, info.version_id, info.etag)) is None:
            unseen.append((key, info))
    return unseen


def sweep_unseen(repo: StatusRepository, now: datetime.datetime, older_than_seconds: int) -> dict[str, Any]:
    """Find the unseen objects, emit UnseenFiles, re-deliver their events to the buffer."""
    bucket = os.environ["BUCKET_NAME"]
    unseen = find_unseen(repo, bucket, now - datetime.timedelta(seconds=older_than_seconds))
    obs.add_metric(contracts.METRIC_UNSEEN_FILES, len(unseen))
    redelivered = []
    if unseen:
        queue_url = os.environ["BUFFER_QUEUE_URL"]
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        for key, info in unseen:
            event = object_created_event(bucket, key, info, region)
            with transient_errors(f"SendMessage {queue_url}"):
                clients.client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(event))
            obs.logger.warning("re-delivered the event of an unseen object", extra={"key": key})
            redelivered.append(key)
    return {"unseen": redelivered}
