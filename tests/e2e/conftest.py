"""End-to-end fixtures: one in-process emulator per test session, the real synthesized stack.

Each test gets a freshly reset emulator with the stack deployed again (deterministic names,
no state carried between tests). The retry clock records the state machine's backoff
intervals and never really sleeps; FULL jitter is pinned to its upper bound so intervals are
deterministic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from etl_cli.pipeline import FileReport, Pipeline
from etl_local import iam, lambda_runtime
from etl_local.deploy import LOCAL_SUFFIX, deploy, synth_primary_template
from etl_local.emulator import Emulator
from etl_local.harness import local_session

pytestmark = pytest.mark.e2e

SMALL_CHUNK = 64 * 1024
WAIT_TIMEOUT = 120.0


# SEC2: the partners e2e tests upload under without a schema file of their own, declared as a
# deployment declares them (context ``partners``, "schema": "default").
E2E_PARTNERS = {
    name: {"principal": "123456789012", "schema": "default"} for name in ("acme", "acme2", "globex")
}


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return synth_primary_template(LOCAL_SUFFIX, context={"partners": json.dumps(E2E_PARTNERS)})


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    emu = Emulator(retry_sleep=lambda seconds: None, retry_jitter="max", relay_interval=0.05)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


class Stack:
    """The deployed local stack plus helpers a test needs."""

    def __init__(self, emulator: Emulator, pipeline: Pipeline) -> None:
        self.emulator = emulator
        self.pipeline = pipeline
        self.outputs = pipeline.outputs
        self.s3 = pipeline.client("s3")
        self.sqs = pipeline.client("sqs")
        self.sfn = pipeline.client("stepfunctions")

    def upload(self, path: Path, partner: str = "default", name: str | None = None) -> dict[str, Any]:
        return self.pipeline.upload(path, partner, name=name)

    def wait(self, file_id: str, **kwargs: Any) -> FileReport:
        kwargs.setdefault("timeout", WAIT_TIMEOUT)
        kwargs.setdefault("poll", 0.1)
        return self.pipeline.wait_for_file(file_id, **kwargs)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = WAIT_TIMEOUT, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")

    def executions(self) -> list[dict[str, Any]]:
        return self.sfn.list_executions(stateMachineArn=self.outputs.state_machine_arn)["executions"]

    def wait_all_executions_stopped(self, count: int) -> list[dict[str, Any]]:
        def done() -> list[dict[str, Any]] | None:
            execs = self.executions()
            if len(execs) >= count and all(e["status"] != "RUNNING" for e in execs):
                return execs
            return None

        return self.wait_for(done, what=f"{count} stopped executions")

    def keys(self, prefix: str) -> list[str]:
        resp = self.s3.list_objects_v2(Bucket=self.outputs.bucket, Prefix=prefix)
        return sorted(o["Key"] for o in resp.get("Contents", []))

    def get_json(self, key: str) -> Any:
        return json.loads(self.s3.get_object(Bucket=self.outputs.bucket, Key=key)["Body"].read())

    def subscribe_alerts(self) -> str:
        """An SQS queue subscribed to the alert topic (raw delivery off: SNS envelope)."""
        url = self.sqs.create_queue(QueueName="e2e-alerts")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns = self.pipeline.client("sns")
        sns.subscribe(TopicArn=self.outputs.alerts_topic_arn, Protocol="sqs", Endpoint=arn)
        return url

    def receive(self, url: str, wait: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + wait
        messages: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            resp = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages += resp.get("Messages", [])
            if messages:
                return messages
            time.sleep(0.1)
        return messages

    def calls(self, step: str) -> list[lambda_runtime.Invocation]:
        return lambda_runtime.STATE.calls(self.outputs.functions[step])


@pytest.fixture
def stack(emulator: Emulator, template: dict[str, Any]) -> Iterator[Stack]:
    emulator.reset()
    # TBL1: every e2e test runs with the template's IAM roles enforced (etl_local/iam.py).
    assert iam.enforcing(), "the emulator is not enforcing IAM"
    session = local_session()
    outputs = deploy(template, session, emulator.endpoint, chunk_size_bytes=SMALL_CHUNK, stack_name="e2e")
    st = Stack(emulator, Pipeline(session, outputs))
    yield st
    # Never leave an execution running into the next test's reset.
    deadline = time.monotonic() + WAIT_TIMEOUT
    while time.monotonic() < deadline and any(e["status"] == "RUNNING" for e in st.executions()):
        time.sleep(0.1)
    # Forget the stack: the relay would keep firing its schedule (StartFiles) in the background
    # while other test files run in this worker process.
    emulator.reset()
