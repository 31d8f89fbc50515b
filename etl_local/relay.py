"""The EventBridge -> Step Functions hop, which moto does not deliver.

At deploy time the real rule (its real ``EventPattern``) gets an SQS target, a *relay queue*
named ``etl-local-relay-<suffix>`` tagged with the rule's real target (the state machine ARN).
moto's S3 sends ``Object Created`` to the rule, the rule's pattern decides, and matched events
land in the relay queue. This loop starts one execution per delivered event, as EventBridge
does — a duplicate delivery is a second execution, and the workflow (RegisterFile's
conditional put) must make it a no-op. Execution names are deterministic: the object's
identity plus the delivery number (moto needs ``name=``; unnamed runs collide).

A rule whose target is a Lambda function (the reconcile rule) gets a relay queue too; its
events are delivered by invoking the function (asynchronously on AWS; here one at a time).

Emulation of ``Step Functions Execution Status Change`` (SPEC OPS1), which moto does not emit:
the relay watches the executions of the state machines it starts and, when one ends FAILED,
TIMED_OUT or ABORTED, puts the event AWS would send (``source`` aws.states, ``detail`` with
executionArn, stateMachineArn, name, status, startDate, stopDate, input, output, error,
cause) on the default bus. The real rule's pattern decides and the event reaches the rule's
target through its relay queue, exactly like the S3 events. Every such ending is announced
once per relay lifetime.
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

RELAY_QUEUE_PREFIX = "etl-local-relay-"
TARGET_TAG = "etl-local-target"
STATUS_CHANGE = "Step Functions Execution Status Change"
ENDED_BADLY = ("FAILED", "TIMED_OUT", "ABORTED")


def _epoch_ms(value: Any) -> int | None:
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return int(value.timestamp() * 1000)
    return int(value)


def status_change_detail(execution: dict[str, Any]) -> dict[str, Any]:
    """``detail`` of the status-change event, from DescribeExecution's answer."""
    return {
        "executionArn": execution["executionArn"],
        "stateMachineArn": execution["stateMachineArn"],
        "name": execution.get("name"),
        "status": execution["status"],
        "startDate": _epoch_ms(execution.get("startDate")),
        "stopDate": _epoch_ms(execution.get("stopDate")),
        "input": execution.get("input"),
        "output": execution.get("output"),
        "inputDetails": {"included": True},
        "outputDetails": {"included": execution.get("output") is not None},
        "error": execution.get("error"),
        "cause": execution.get("cause"),
    }


def execution_name_prefix(event: dict[str, Any]) -> str:
    detail = event.get("detail") or {}
    obj = detail.get("object") or {}
    ident = "\0".join(
        [
            str((detail.get("bucket") or {}).get("name", "")),
            str(obj.get("key", "")),
            str(obj.get("version-id") or obj.get("etag") or obj.get("eTag") or ""),
        ]
    )
    return "s3-" + hashlib.sha256(ident.encode()).hexdigest()[:24]


def as_s3_sends_it(event: dict[str, Any]) -> dict[str, Any]:
    """Two differences between moto 5.2's S3 event and S3's own: moto names the object's ETag
    ``eTag`` (S3: ``etag``), and moto sends the raw key where S3 URL-encodes it in its event
    notifications ("red flower.jpg" -> "red+flower.jpg"). Encoding it here makes local runs
    exercise the handler's decoding (RUN8: keys with spaces or non-ASCII)."""
    obj = (event.get("detail") or {}).get("object")
    if isinstance(obj, dict):
        if "eTag" in obj and "etag" not in obj:
            obj["etag"] = obj.pop("eTag")
        if isinstance(obj.get("key"), str):
            obj["key"] = urllib.parse.quote_plus(obj["key"], safe="/")
    return event


@dataclass
class Delivery:
    queue_url: str
    state_machine_arn: str
    event: dict[str, Any]
    execution_arn: str


@dataclass
class Relay:
    endpoint: str
    interval: float = 0.2
    delivered: list[Delivery] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _counts: dict[str, int] = field(default_factory=dict)
    _targets: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Status-change emulation: state machines seen as targets, endings already announced.
    announced: list[dict[str, Any]] = field(default_factory=list)
    _machines: set[str] = field(default_factory=set)
    _announced: set[str] = field(default_factory=set)

    def _clients(self) -> tuple[Any, Any]:
        sqs, sfn, _, _ = self._all_clients()
        return sqs, sfn

    def _all_clients(self) -> tuple[Any, Any, Any, Any]:
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        # A reconcile invocation may take a while (it moves objects): no client-side timeout.
        slow = Config(read_timeout=900, retries={"max_attempts": 1})
        return (
            session.client("sqs", endpoint_url=self.endpoint),
            session.client("stepfunctions", endpoint_url=self.endpoint),
            session.client("events", endpoint_url=self.endpoint),
            session.client("lambda", endpoint_url=self.endpoint, config=slow),
        )

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="etl-local-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def clear(self) -> None:
        with self._lock:
            self.delivered.clear()
            self.errors.clear()
            self._counts.clear()
            self._targets.clear()
            self.announced.clear()
            self._machines.clear()
            self._announced.clear()

    def _run(self) -> None:
        sqs, sfn, events, lam = self._all_clients()
        while not self._stop.is_set():
            try:
                self.poll_once(sqs, sfn, lam)
                self.announce_endings(sfn, events)
            except Exception as exc:  # keep relaying; the emulator may be resetting
                with self._lock:
                    self.errors.append(repr(exc))
            self._stop.wait(self.interval)

    def announce_endings(self, sfn: Any, events: Any) -> int:
        """Put a status-change event on the bus for every execution of a watched state machine
        that ended FAILED, TIMED_OUT or ABORTED since the last poll."""
        sent = 0
        for machine in sorted(self._machines):
            for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine):
                for summary in page["executions"]:
                    arn = summary["executionArn"]
                    if summary["status"] not in ENDED_BADLY or arn in self._announced:
                        continue
                    detail = status_change_detail(sfn.describe_execution(executionArn=arn))
                    events.put_events(
                        Entries=[
                            {
                                "Source": "aws.states",
                                "DetailType": STATUS_CHANGE,
                                "Detail": json.dumps(detail),
                                "Resources": [arn],
                            }
                        ]
                    )
                    with self._lock:
                        self._announced.add(arn)
                        self.announced.append(detail)
                    sent += 1
        return sent

    def poll_once(self, sqs: Any, sfn: Any, lam: Any = None) -> int:
        started = 0
        urls = sqs.list_queues(QueueNamePrefix=RELAY_QUEUE_PREFIX).get("QueueUrls", [])
        for url in urls:
            target = self._targets.get(url)
            if target is None:
                target = sqs.list_queue_tags(QueueUrl=url).get("Tags", {}).get(TARGET_TAG)
                if not target:
                    continue
                self._targets[url] = target
            if ":states:" in target:
                self._machines.add(target)
            msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)
            for msg in msgs.get("Messages", []):
                event = json.loads(msg["Body"])
                if ":lambda:" in target:
                    arn = self._invoke(lam, target, event)
                else:
                    event = as_s3_sends_it(event)
                    arn = self._start(sfn, target, event)
                with self._lock:
                    self.delivered.append(Delivery(url, target, event, arn))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
                started += 1
        return started

    def _invoke(self, lam: Any, function_arn: str, event: dict[str, Any]) -> str:
        """Deliver to a Lambda target. A function error is recorded (EventBridge would retry
        and then dead-letter it; the tests look at ``errors``)."""
        if lam is None:
            raise RuntimeError("a Lambda target needs the lambda client")
        resp = lam.invoke(FunctionName=function_arn, Payload=json.dumps(event).encode())
        if resp.get("FunctionError"):
            with self._lock:
                self.errors.append(f"{function_arn}: {resp['Payload'].read().decode()[:500]}")
        return function_arn

    def _start(self, sfn: Any, state_machine_arn: str, event: dict[str, Any]) -> str:
        prefix = execution_name_prefix(event)
        if prefix not in self._counts:
            existing = 0
            paginator = sfn.get_paginator("list_executions")
            for page in paginator.paginate(stateMachineArn=state_machine_arn):
                existing += sum(1 for e in page["executions"] if e["name"].startswith(prefix + "-"))
            self._counts[prefix] = existing
        self._counts[prefix] += 1
        name = f"{prefix}-{self._counts[prefix]}"
        resp = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(event))
        return str(resp["executionArn"])
