"""The EventBridge -> Step Functions hop, which moto does not deliver.

At deploy time the real rule (its real ``EventPattern``) gets an SQS target, a *relay queue*
named ``etl-local-relay-<suffix>`` tagged with the rule's real target (the state machine ARN).
moto's S3 sends ``Object Created`` to the rule, the rule's pattern decides, and matched events
land in the relay queue. This loop starts one execution per delivered event, as EventBridge
does — a duplicate delivery is a second execution, and the workflow (RegisterFile's
conditional put) must make it a no-op. Execution names are deterministic: the object's
identity plus the delivery number (moto needs ``name=``; unnamed runs collide).
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

    def _clients(self) -> tuple[Any, Any]:
        import boto3

        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        return (
            session.client("sqs", endpoint_url=self.endpoint),
            session.client("stepfunctions", endpoint_url=self.endpoint),
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

    def _run(self) -> None:
        sqs, sfn = self._clients()
        while not self._stop.is_set():
            try:
                self.poll_once(sqs, sfn)
            except Exception as exc:  # keep relaying; the emulator may be resetting
                with self._lock:
                    self.errors.append(repr(exc))
            self._stop.wait(self.interval)

    def poll_once(self, sqs: Any, sfn: Any) -> int:
        started = 0
        urls = sqs.list_queues(QueueNamePrefix=RELAY_QUEUE_PREFIX).get("QueueUrls", [])
        for url in urls:
            target = self._targets.get(url)
            if target is None:
                target = sqs.list_queue_tags(QueueUrl=url).get("Tags", {}).get(TARGET_TAG)
                if not target:
                    continue
                self._targets[url] = target
            msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=5)
            for msg in msgs.get("Messages", []):
                event = as_s3_sends_it(json.loads(msg["Body"]))
                arn = self._start(sfn, target, event)
                with self._lock:
                    self.delivered.append(Delivery(url, target, event, arn))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
                started += 1
        return started

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
