"""StartFiles: admission control (SPEC OPS2). Starts queued files while fewer than
``MAX_FILES_IN_FLIGHT`` executions of the state machine are RUNNING.

The EventBridge rule on ``incoming/`` sends each S3 ``Object Created`` event to the buffer queue
(``BUFFER_QUEUE_URL``) and wakes this function; a 1-minute schedule and the state machine's
execution-end events wake it too. Whatever the wake-up event says, one invocation does the same:

1. count the RUNNING executions (``ListExecutions``, plus the executions this container started
   in the last few minutes, checked with ``DescribeExecution``: ListExecutions is eventually
   consistent and may not list a start made a moment ago);
2. receive at most ``limit - running`` messages, start one execution per message with the S3
   event as the input (what RegisterFile has always received), delete the message;
3. repeat until the queue is empty, the limit is reached or time runs short.

Never lost: a message is deleted only after its StartExecution succeeded; a crash in between
makes it visible again after the visibility timeout. Never doubled: the execution name is
derived from the object and the event id, and StartExecution with the name of an execution that
already exists either returns it (same input, still running) or fails ``ExecutionAlreadyExists``
(treated as started). A second *event* for the same object (S3 and EventBridge deliver at least
once) is a second execution that RegisterFile ends in ``DuplicateIgnored``: harmless.
The bound holds because only one StartFiles runs at a time (reserved concurrency 1).

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from typing import Any

from etl import observability as obs
from etl.aws import clients
from etl.contracts import BUFFER_VISIBILITY_SECONDS

# Messages received at once (SQS's maximum) and how long a received message stays hidden
# (the queue's own visibility timeout is the same; a crash re-delivers after it).
BATCH = 10
VISIBILITY_SECONDS = BUFFER_VISIBILITY_SECONDS
# Stop receiving when less than this is left of the invocation.
RESERVE_MS = 60_000
# Starts this container remembers, to count them while ListExecutions may not show them yet.
RECENT_SECONDS = 300

# execution ARN -> time.monotonic() of its start (one StartFiles at a time: no lock needed).
_recent: dict[str, float] = {}


def max_files_in_flight() -> int:
    raw = os.environ.get("MAX_FILES_IN_FLIGHT", "").strip()
    value = int(raw) if raw else 0
    if value <= 0:
        raise ValueError(f"MAX_FILES_IN_FLIGHT must be a positive integer, got {raw!r}")
    return value


def execution_name(event: Mapping[str, Any]) -> str:
    """``s3-<object hash>-<event hash>`` (40 characters; execution names allow 80).

    The object part is the same for every event of one object version, so executions of one
    file sort together; the event part is the EventBridge event id, the same on every
    re-delivery of one event."""
    detail = event.get("detail") or {}
    obj = detail.get("object") or {}
    ident = "\0".join(
        [
            str((detail.get("bucket") or {}).get("name", "")),
            str(obj.get("key", "")),
            str(obj.get("version-id") or obj.get("etag") or ""),
        ]
    )
    delivery = str(event.get("id") or json.dumps(event, sort_keys=True))
    object_part = hashlib.sha256(ident.encode()).hexdigest()[:24]
    return f"s3-{object_part}-{hashlib.sha256(delivery.encode()).hexdigest()[:12]}"


def count_running(sfn: Any, state_machine_arn: str, limit: int) -> int:
    """RUNNING executions, counted up to ``limit`` (enough to decide)."""
    now = time.monotonic()
    for arn, started in list(_recent.items()):
        if now - started > RECENT_SECONDS:
            del _recent[arn]
    running: set[str] = set()
    paginator = sfn.get_paginator("list_executions")
    for page in paginator.paginate(stateMachineArn=state_machine_arn, statusFilter="RUNNING"):
        running.update(e["executionArn"] for e in page["executions"])
        if len(running) >= limit:
            return len(running)
    for arn in list(_recent):
        if arn in running:
            continue
        try:
            status = sfn.describe_execution(executionArn=arn)["status"]
        except sfn.exceptions.ExecutionDoesNotExist:  # e.g. the state machine was replaced
            status = "GONE"
        if status == "RUNNING":
            running.add(arn)
        else:
            del _recent[arn]
    return len(running)


def start(sfn: Any, state_machine_arn: str, event: Mapping[str, Any]) -> str:
    """Start the file's execution (idempotent per event, see the module docstring)."""
    name = execution_name(event)
    try:
        arn = str(
            sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(event))[
                "executionArn"
            ]
        )
    except sfn.exceptions.ExecutionAlreadyExists:
        obs.logger.info("execution %s already exists (a re-delivered message)", name)
        return ""
    _recent[arn] = time.monotonic()
    return arn


def _remaining_ms(context: Any) -> int:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return int(remaining()) if callable(remaining) else 15 * 60 * 1000


@obs.lambda_handler("StartFiles")
def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Admit queued files up to the limit; returns the counts (logged)."""
    limit = max_files_in_flight()
    queue_url = os.environ["BUFFER_QUEUE_URL"]
    state_machine_arn = os.environ["STATE_MACHINE_ARN"]
    sqs, sfn = clients.client("sqs"), clients.client("stepfunctions")
    started, skipped = 0, 0
    running = count_running(sfn, state_machine_arn, limit)
    while running < limit and _remaining_ms(context) > RESERVE_MS:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(BATCH, limit - running),
            VisibilityTimeout=VISIBILITY_SECONDS,
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            try:
                body = json.loads(message["Body"])
            except ValueError:
                body = None
            if not isinstance(body, dict):
                # Not an event the rule sent: left in the queue, it reaches the DLQ after
                # maxReceiveCount receives (alarmed), instead of failing an execution.
                obs.logger.error("buffer message %s is not an event; left for the DLQ", message["MessageId"])
                skipped += 1
                continue
            if start(sfn, state_machine_arn, body):
                started += 1
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        running = count_running(sfn, state_machine_arn, limit)
    outcome = {"limit": limit, "running": running, "started": started, "skipped": skipped}
    obs.logger.info("admitted %d file(s); %d running of %d", started, running, limit, extra=outcome)
    return outcome
