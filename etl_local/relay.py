"""EventBridge deliveries moto does not make: to Step Functions and Lambda targets, and schedules.

At deploy time every enabled rule whose targets the emulator runs (a state machine, a Python
Lambda function, an SQS queue) gets one SQS target instead, a *relay queue*
``etl-local-relay-<hash>`` tagged with the rule's real targets (``etl-local-target-<i>``).
moto's S3 sends ``Object Created`` to the rule, the rule's real ``EventPattern`` decides, and
matched events land in the relay queue. This loop delivers each one to every real target, in
the template's order, as EventBridge does:

- SQS queue (the admission buffer, SPEC OPS2): ``SendMessage`` with the event as the body;
- Lambda function (StartFiles): a synchronous ``Invoke`` from this one thread, so invocations of
  a function never overlap, which is what its reserved concurrency of 1 guarantees on AWS
  (moto's own SQS event-source mappings and Lambda targets are not used: they run per message
  inside the sender's request and ignore reserved concurrency);
- state machine: ``StartExecution`` with a deterministic name (the object's identity plus the
  delivery number; moto needs ``name=``). A duplicate delivery is a second execution, and the
  workflow (RegisterFile's conditional put) makes it a no-op.

A schedule rule (``rate(1 minute)``) has no pattern: its relay queue carries the expression in
``etl-local-schedule`` and this loop invokes its targets every ``schedule_interval`` seconds
(compressed time: a local run does not wait a minute). Before delivery an S3 event is made to
look as S3 sends it (:func:`as_s3_sends_it`).

Emulation of ``Step Functions Execution Status Change`` (SPEC OPS1), which moto does not emit:
the relay watches the executions of every state machine in the emulator (StartFiles starts
them, not the relay) and, when one ends FAILED, TIMED_OUT or ABORTED, puts the event AWS would
send (``source`` aws.states, ``detail`` with executionArn, stateMachineArn, name, status,
startDate, stopDate, input, output, error, cause) on the default bus. Every rule's real pattern
decides, and the event reaches each matching rule's targets through its relay queue (the
reconcile function and StartFiles' wake-up alike), exactly like the S3 events. Every such ending
is announced once per relay lifetime.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

RELAY_QUEUE_PREFIX = "etl-local-relay-"
# Tags of a relay queue: "etl-local-target-0", "-1" ... (the rule's targets in order) and, for
# a schedule rule, its expression.
TARGET_TAG = "etl-local-target"
SCHEDULE_TAG = "etl-local-schedule"
RULE_TAG = "etl-local-rule"
# DR4: the regions the relay serves, and the SSM parameter (in us-east-1 of the emulator) that
# lists the regions in a simulated outage: their rules deliver nothing and their executions'
# endings are not announced until the outage ends (etl_local/replication.py reads it too).
REGIONS = ("us-east-1", "eu-west-1")
OUTAGE_PARAMETER = "/etl-local/outage"


def regions_in_outage(ssm: Any) -> set[str]:
    """The regions the emulator treats as down (``OUTAGE_PARAMETER``, comma-separated)."""
    try:
        value = ssm.get_parameter(Name=OUTAGE_PARAMETER)["Parameter"]["Value"]
    except Exception:  # absent (ParameterNotFound) or the emulator resetting: no outage
        return set()
    return {r.strip() for r in str(value).split(",") if r.strip() and r.strip() != "-"}


def target_tags(targets: list[str]) -> dict[str, str]:
    return {f"{TARGET_TAG}-{i}": arn for i, arn in enumerate(targets)}


def scheduled_event(
    rule_arn: str, region: str = "us-east-1", account: str = "123456789012"
) -> dict[str, Any]:
    """What EventBridge sends a schedule rule's target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


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
    target: str  # the real target's ARN
    event: dict[str, Any]
    result: str  # execution ARN, message id or the invocation's status


@dataclass
class _RelayQueue:
    targets: list[str]
    schedule: str | None
    rule_arn: str
    last_fired: float = 0.0


@dataclass
class Relay:
    endpoint: str
    interval: float = 0.2
    schedule_interval: float = 1.0
    delivered: list[Delivery] = field(default_factory=list)
    scheduled: list[Delivery] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _counts: dict[str, int] = field(default_factory=dict)
    _queues: dict[str, _RelayQueue] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _clients_cache: dict[str, Any] = field(default_factory=dict)
    # Status-change emulation: state machines watched, endings already announced.
    announced: list[dict[str, Any]] = field(default_factory=list)
    _machines: set[str] = field(default_factory=set)
    _announced: set[str] = field(default_factory=set)

    def client(self, service: str, region: str = "us-east-1") -> Any:
        found = self._clients_cache.get(f"{service}@{region}")
        if found is None:
            import boto3
            from botocore.config import Config

            session = boto3.session.Session(
                aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
            )
            # A handler may run for a while (StartFiles, a reconcile): no client-side timeout
            # or retry of a synchronous invoke (a retry would be a second invocation).
            config = Config(read_timeout=900, retries={"total_max_attempts": 1})
            found = session.client(service, endpoint_url=self.endpoint, config=config)
            self._clients_cache[f"{service}@{region}"] = found
        return found

    def _clients(self, region: str = "us-east-1") -> tuple[Any, Any]:
        return self.client("sqs", region), self.client("stepfunctions", region)

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
            self._queues.clear()
            self.scheduled.clear()
            self.announced.clear()
            self._machines.clear()
            self._announced.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                down = regions_in_outage(self.client("ssm"))
                for region in REGIONS:
                    if region in down:
                        continue  # DR4: a regional outage delivers nothing
                    sqs, sfn = self._clients(region)
                    self.poll_once(sqs, sfn)
                    self.announce_endings(sfn, self.client("events", region))
            except Exception as exc:  # keep relaying; the emulator may be resetting
                with self._lock:
                    self.errors.append(repr(exc))
            self._stop.wait(self.interval)

    def announce_endings(self, sfn: Any, events: Any) -> int:
        """Put a status-change event on the bus for every execution of a state machine that
        ended FAILED, TIMED_OUT or ABORTED since the last poll. Every state machine of the
        emulator is watched, as AWS emits the event for all of them (executions are started by
        StartFiles, so the relay cannot learn the machines from its own deliveries)."""
        sent = 0
        for page in sfn.get_paginator("list_state_machines").paginate():
            for machine in page["stateMachines"]:
                self._machines.add(machine["stateMachineArn"])
        here = f":{sfn.meta.region_name}:"
        for machine in sorted(m for m in self._machines if here in m):
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

    def _relay_queue(self, sqs: Any, url: str) -> _RelayQueue | None:
        # Both regions' stacks have the same names, hence the same queue URLs: key by region.
        cache_key = f"{sqs.meta.region_name}|{url}"
        found = self._queues.get(cache_key)
        if found is None:
            tags = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
            targets = [
                tags[k]
                for k in sorted(
                    (k for k in tags if k.startswith(TARGET_TAG)),
                    key=lambda k: int(k.rsplit("-", 1)[1]) if k.rsplit("-", 1)[1].isdigit() else -1,
                )
            ]
            if not targets:
                return None
            found = _RelayQueue(targets, tags.get(SCHEDULE_TAG), tags.get(RULE_TAG, ""), time.monotonic())
            self._queues[cache_key] = found
        return found

    def poll_once(self, sqs: Any, sfn: Any) -> int:
        started = 0
        urls = sqs.list_queues(QueueNamePrefix=RELAY_QUEUE_PREFIX).get("QueueUrls", [])
        for url in urls:
            relay = self._relay_queue(sqs, url)
            if relay is None:
                continue
            if relay.schedule is not None:
                if time.monotonic() - relay.last_fired >= self.schedule_interval:
                    relay.last_fired = time.monotonic()
                    event = scheduled_event(relay.rule_arn)
                    for target in relay.targets:
                        result = self._deliver(sfn, target, event)
                        with self._lock:
                            self.scheduled.append(Delivery(url, target, event, result))
                continue
            msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)
            for msg in msgs.get("Messages", []):
                event = as_s3_sends_it(json.loads(msg["Body"]))
                for target in relay.targets:
                    result = self._deliver(sfn, target, event)
                    with self._lock:
                        self.delivered.append(Delivery(url, target, event, result))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
                started += 1
        return started

    def _deliver(self, sfn: Any, target: str, event: dict[str, Any]) -> str:
        """One event to one real target (in the target's region), the way EventBridge would."""
        service = target.split(":")[2] if target.count(":") >= 5 else ""
        region = target.split(":")[3] if target.count(":") >= 5 else "us-east-1"
        if service == "states":
            return self._start(self.client("stepfunctions", region), target, event)
        if service == "sqs":
            sqs = self.client("sqs", region)
            url = sqs.get_queue_url(QueueName=target.rsplit(":", 1)[1])["QueueUrl"]
            return str(sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))["MessageId"])
        if service == "lambda":
            resp = self.client("lambda", region).invoke(
                FunctionName=target, Payload=json.dumps(event).encode()
            )
            payload = resp["Payload"].read().decode("utf-8", "replace")
            if resp.get("FunctionError"):
                with self._lock:
                    self.errors.append(f"{target}: {payload[:500]}")
                return "FunctionError"
            return "OK"
        raise ValueError(f"the relay cannot deliver to {target}")

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
