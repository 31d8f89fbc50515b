"""OPS2 StartFiles: admits queued files only while fewer than MAX_FILES_IN_FLIGHT run, never
loses or doubles a start (moto: executions stay RUNNING until stopped)."""

from __future__ import annotations

import copy
import json
from typing import Any

from etl.handlers import start_files

from .conftest import AdmissionAws, s3_event


def event(i: int, event_id: str | None = None) -> dict[str, Any]:
    e = s3_event("etl-data-test", f"incoming/default/f{i}.csv", {"ETag": f'"e{i}"', "VersionId": f"v{i}"}, 10)
    e["id"] = event_id or f"event-{i}"
    return e


def test_OPS2_starts_only_up_to_the_limit_and_leaves_the_rest_queued(admission: AdmissionAws) -> None:
    for i in range(5):
        admission.buffer(event(i))
    out = start_files.handler({"source": "aws.events"}, None)
    assert (out["started"], out["running"]) == (2, 2)
    assert len(admission.executions("RUNNING")) == 2
    assert admission.waiting() == 3
    # Full: a second wake-up starts nothing.
    assert start_files.handler({}, None)["started"] == 0
    assert admission.waiting() == 3
    # One ends: exactly one slot.
    admission.sfn.stop_execution(executionArn=admission.executions("RUNNING")[0]["executionArn"])
    assert start_files.handler({}, None)["started"] == 1
    assert len(admission.executions("RUNNING")) == 2 and admission.waiting() == 2


def test_OPS2_a_slot_taken_by_another_start_counts(admission: AdmissionAws) -> None:
    """A reprocess started outside the queue occupies a slot too."""
    admission.sfn.start_execution(
        stateMachineArn=admission.state_machine_arn, name="reprocess-x-2-1", input="{}"
    )
    for i in range(3):
        admission.buffer(event(i))
    assert start_files.handler({}, None)["started"] == 1
    assert admission.waiting() == 2


def test_OPS2_execution_input_is_the_s3_event_and_names_are_deterministic(admission: AdmissionAws) -> None:
    e = event(1)
    admission.buffer(e)
    start_files.handler({}, None)
    (execution,) = admission.executions()
    described = admission.sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == e  # what RegisterFile has always received
    assert execution["name"] == start_files.execution_name(e)
    assert len(execution["name"]) <= 80
    # Same object, another event (S3 delivered twice): same object part, another name.
    other = start_files.execution_name(event(1, "event-again"))
    assert other != execution["name"] and other[:27] == execution["name"][:27]


def test_OPS2_a_redelivered_event_starts_nothing_twice_and_is_removed(admission: AdmissionAws) -> None:
    e = event(7)
    admission.buffer(e)
    start_files.handler({}, None)
    (first,) = admission.executions()
    admission.sfn.stop_execution(executionArn=first["executionArn"])
    # The same message again (a StartFiles that crashed after StartExecution, before delete):
    admission.buffer(copy.deepcopy(e))
    out = start_files.handler({}, None)
    assert out["started"] == 0
    assert len(admission.executions()) == 1
    assert admission.waiting() == 0


def test_OPS2_a_message_that_is_not_an_event_is_left_for_the_dlq(admission: AdmissionAws) -> None:
    admission.buffer("not json")
    admission.buffer(event(1))
    out = start_files.handler({}, None)
    assert (out["started"], out["skipped"]) == (1, 1)
    assert admission.waiting() == 1  # invisible now; after maxReceiveCount receives: the DLQ


def test_OPS2_a_start_listexecutions_does_not_show_yet_is_still_counted(
    admission: AdmissionAws, monkeypatch: Any
) -> None:
    """ListExecutions is eventually consistent: starts made a moment ago are counted from the
    starter's own memory (checked with DescribeExecution)."""
    for i in range(4):
        admission.buffer(event(i))

    class Stale:
        """The stepfunctions client, with a ListExecutions that lags behind."""

        def __init__(self, client: Any) -> None:
            self._client = client
            self.exceptions = client.exceptions

        def get_paginator(self, name: str) -> Any:
            class Empty:
                def paginate(self, **_: Any) -> list[dict[str, Any]]:
                    return [{"executions": []}]

            return Empty()

        def __getattr__(self, name: str) -> Any:
            return getattr(self._client, name)

    from etl.aws import clients

    stale = Stale(clients.client("stepfunctions"))
    monkeypatch.setattr(
        clients, "client", lambda s, _c=clients.client: stale if s == "stepfunctions" else _c(s)
    )
    out = start_files.handler({}, None)
    assert out["started"] == 2 and out["running"] == 2
    assert start_files.handler({}, None)["started"] == 0
