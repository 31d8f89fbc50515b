"""OPS2 admission control and OPS6(c) checks on the synthesized templates."""

from __future__ import annotations

from typing import Any

import pytest

from etl import contracts
from infra.config import ConfigError, EtlConfig

from .conftest import DR, PRIMARY, SUFFIX
from .test_stack import as_list, functions_by_step, literal_text, props, ref_id, resources, role_statements

STACKS = (PRIMARY, DR)


def queue(template: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (lid, r)
        for lid, r in resources(template, "AWS::SQS::Queue").items()
        if props(r).get("QueueName") == f"etl-{name}-{SUFFIX}"
    ]
    return found


def rule(template: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [
        props(r)
        for r in resources(template, "AWS::Events::Rule").values()
        if props(r)["Name"] == f"etl-{name}-{SUFFIX}"
    ]
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_OPS2_buffer_queue_is_encrypted_with_a_dead_letter_queue(
    templates: dict[str, Any], stack: str
) -> None:
    template = templates[stack]
    _, buffer = queue(template, "buffer")
    dlq_id, dlq = queue(template, "buffer-dlq")
    p = props(buffer)
    assert p["SqsManagedSseEnabled"] is True and props(dlq)["SqsManagedSseEnabled"] is True
    assert ref_id(p["RedrivePolicy"]["deadLetterTargetArn"]) == dlq_id
    assert 1 < p["RedrivePolicy"]["maxReceiveCount"] <= 10
    assert p["VisibilityTimeout"] == contracts.BUFFER_VISIBILITY_SECONDS
    assert p["MessageRetentionPeriod"] == 14 * 24 * 3600
    # The rule may send to it (CDK's SqsQueue target writes the queue policy).
    policies = [props(q) for q in resources(template, "AWS::SQS::QueuePolicy").values()]
    senders = [
        s
        for q in policies
        for s in q["PolicyDocument"]["Statement"]
        if s.get("Principal") == {"Service": "events.amazonaws.com"} and s["Action"] == "sqs:SendMessage"
    ]
    assert any(literal_text(s["Resource"]) == "<ref>" for s in senders)


@pytest.mark.parametrize("stack", STACKS)
def test_OPS2_reserved_concurrency_chunks_sized_from_max_files_in_flight(
    templates: dict[str, Any], stack: str
) -> None:
    fns = functions_by_step(templates[stack])
    reserved = {step: props(fn).get("ReservedConcurrentExecutions") for step, fn in fns.items()}
    assert reserved["ProcessChunk"] == 50 * 10  # default maxFilesInFlight x MaxConcurrency
    assert reserved["StartFiles"] == 1  # one admission decision at a time
    assert reserved["MaintainTables"] == 1  # TBL6: one maintenance run at a time
    fixed = ("ProcessChunk", "StartFiles", "MaintainTables")
    assert {s: r for s, r in reserved.items() if s not in fixed} == dict.fromkeys(set(reserved) - set(fixed))
    # AWS keeps 100 of the default 1,000 unreserved.
    assert sum(r for r in reserved.values() if r) <= 1000 - 100
    env = props(fns["StartFiles"])["Environment"]["Variables"]
    assert env["MAX_FILES_IN_FLIGHT"] == "50"
    assert ref_id(env["STATE_MACHINE_ARN"]) in resources(templates[stack], "AWS::StepFunctions::StateMachine")
    assert ref_id(env["BUFFER_QUEUE_URL"]) == queue(templates[stack], "buffer")[0]


def test_OPS2_max_files_in_flight_is_bounded_by_the_account_limit() -> None:
    assert EtlConfig().max_files_in_flight == 50
    assert EtlConfig(max_files_in_flight=89).chunk_reserved_concurrency == 890  # 890 + 1 + 100 <= 1000
    for bad in (0, 90, -1):
        with pytest.raises(ConfigError, match=r"maxFilesInFlight must be 1-89"):
            EtlConfig(max_files_in_flight=bad)
    # After a quota increase the bound moves with lambdaConcurrencyLimit.
    assert (
        EtlConfig(max_files_in_flight=189, lambda_concurrency_limit=2000).chunk_reserved_concurrency == 1890
    )
    with pytest.raises(ConfigError, match="lambdaConcurrencyLimit"):
        EtlConfig(lambda_concurrency_limit=50)


def test_OPS2_starter_may_only_receive_delete_list_start_and_describe(primary: dict[str, Any]) -> None:
    fn = functions_by_step(primary)["StartFiles"]
    statements = [s for s in role_statements(primary, ref_id(props(fn)["Role"])) if s["Effect"] == "Allow"]
    granted: dict[str, set[str]] = {}
    for s in statements:
        for action in as_list(s["Action"]):
            if action.startswith(("logs:", "xray:")):
                continue
            granted.setdefault(action, set()).update(literal_text(r) for r in as_list(s["Resource"]))
    buffer_id, _ = queue(primary, "buffer")
    (machine_id,) = resources(primary, "AWS::StepFunctions::StateMachine")
    assert set(granted) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "states:ListExecutions",
        "states:StartExecution",
        "states:DescribeExecution",
    }
    for s in statements:
        actions = set(as_list(s["Action"]))
        if actions & {"sqs:ReceiveMessage", "sqs:DeleteMessage"}:
            assert [ref_id(r) for r in as_list(s["Resource"])] == [buffer_id]
        if actions & {"states:ListExecutions", "states:StartExecution"}:
            assert [ref_id(r) for r in as_list(s["Resource"])] == [machine_id]
    (executions,) = granted["states:DescribeExecution"]
    assert executions.endswith(f":execution:etl-pipeline-{SUFFIX}:*")


@pytest.mark.parametrize("stack", STACKS)
def test_OPS2_starter_is_woken_by_new_files_ending_executions_and_a_schedule(
    templates: dict[str, Any], stack: str
) -> None:
    template = templates[stack]
    starter = functions_by_step(template)["StartFiles"]
    starter_id = next(k for k, v in resources(template).items() if v is starter)
    (machine_id,) = resources(template, "AWS::StepFunctions::StateMachine")
    end = rule(template, "admit-on-execution-end")
    assert end["EventPattern"]["source"] == ["aws.states"]
    assert end["EventPattern"]["detail-type"] == ["Step Functions Execution Status Change"]
    assert [ref_id(a) for a in end["EventPattern"]["detail"]["stateMachineArn"]] == [machine_id]
    assert set(end["EventPattern"]["detail"]["status"]) == {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
    schedule = rule(template, "admit-every-minute")
    assert schedule["ScheduleExpression"] == "rate(1 minute)"
    for r in (end, schedule, rule(template, "incoming")):
        assert starter_id in [ref_id(t["Arn"]) for t in r["Targets"]]
    # EventBridge may invoke it (one permission per rule).
    permissions = [
        props(p)
        for p in resources(template, "AWS::Lambda::Permission").values()
        if ref_id(props(p)["FunctionName"]) == starter_id
    ]
    assert {p["Principal"] for p in permissions} == {"events.amazonaws.com"} and len(permissions) == 3


def test_OPS2_alarms_on_chunk_throttles_and_oldest_waiting_file_are_on_the_dashboard(
    primary: dict[str, Any],
) -> None:
    alarms = {props(a)["AlarmName"]: props(a) for a in resources(primary, "AWS::CloudWatch::Alarm").values()}

    def stat(alarm: dict[str, Any]) -> dict[str, Any]:
        if "MetricName" in alarm:
            return {k: alarm[k] for k in ("MetricName", "Dimensions", "Statistic")}
        (m,) = alarm["Metrics"]
        metric = m["MetricStat"]["Metric"]
        return {
            "MetricName": metric["MetricName"],
            "Dimensions": metric["Dimensions"],
            "Statistic": m["MetricStat"]["Stat"],
        }

    throttles = alarms[f"etl-alarm-{SUFFIX}-chunkthrottles"]
    assert stat(throttles)["MetricName"] == "Throttles" and throttles["Threshold"] == 1
    chunk_id = next(
        k for k, v in resources(primary).items() if v is functions_by_step(primary)["ProcessChunk"]
    )
    assert [ref_id(d["Value"]) for d in stat(throttles)["Dimensions"]] == [chunk_id]
    oldest = alarms[f"etl-alarm-{SUFFIX}-bufferoldestmessage"]
    assert stat(oldest)["MetricName"] == "ApproximateAgeOfOldestMessage" and oldest["Threshold"] == 1800
    assert stat(oldest)["Statistic"] == "Maximum"
    buffer_id, _ = queue(primary, "buffer")
    (dimension,) = stat(oldest)["Dimensions"]
    assert dimension["Value"] == {"Fn::GetAtt": [buffer_id, "QueueName"]}
    dlq = alarms[f"etl-alarm-{SUFFIX}-bufferdlqdepth"]
    assert stat(dlq)["MetricName"] == "ApproximateNumberOfMessagesVisible"
    (dashboard,) = resources(primary, "AWS::CloudWatch::Dashboard").values()
    body = literal_text(props(dashboard)["DashboardBody"])
    for needle in (
        "ApproximateAgeOfOldestMessage",
        "ConcurrentExecutions",
        "Files waiting",
    ):
        assert needle in body, needle
    widget_alarms = [a for a in props(dashboard)["DashboardBody"]["Fn::Join"][1] if isinstance(a, dict)]
    assert sum(1 for a in widget_alarms if "Fn::GetAtt" in a) >= len(alarms)
