"""The announcement ledger (SPEC DR3): which files' result messages went downstream.

After a region sends a file's result message it writes ``announced/<partner>/<file_id>.json``
(the message) into its data bucket; S3 replication copies ``announced/`` to the other region.
A region about to announce a file first looks for the marker in its own bucket: present means
the other region (or this one) announced it already, so downstream never receives a file twice
across a failover. The workflow writes the marker itself after NotifyResult (an S3 PutObject
task, infra/workflow.py); the re-send path (etl/handlers/reconcile.py) writes it here.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from etl.aws import s3
from etl.aws.s3 import SourceMissing
from etl.contracts import ANNOUNCED_PREFIX


def marker_key(partner: str, file_id: str) -> str:
    return f"{ANNOUNCED_PREFIX}{partner}/{file_id}.json"


def is_announced(bucket: str, partner: str, file_id: str, status: str | None = None) -> bool:
    """True when the ledger holds the file (announced here, or replicated from the other region)
    with a message of ``status`` (any status when None). The status matters because a file may
    legitimately be announced twice with different outcomes: a DUPLICATE_CONTENT file loaded
    later by ``etl reprocess --force`` announces SUCCEEDED after its DUPLICATE_CONTENT message."""
    try:
        body = s3.get_bytes(bucket, marker_key(partner, file_id))
    except SourceMissing:
        return False
    if status is None:
        return True
    try:
        return bool(json.loads(body).get("status") == status)
    except (ValueError, AttributeError):
        return True  # an unreadable marker still says "announced": never risk a second message


def record_announced(bucket: str, partner: str, file_id: str, message: Mapping[str, Any]) -> str:
    """Write the marker (the message that was sent); idempotent. Returns its key."""
    key = marker_key(partner, file_id)
    s3.put_bytes(bucket, key, json.dumps(message, sort_keys=True).encode("utf-8"), "application/json")
    return key
