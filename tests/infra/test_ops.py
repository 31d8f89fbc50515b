"""OPS1, OPS3, OPS4 on the synthesized templates: the reconcile rule and schedule, timeouts,
the alert topic's policy, which alarms page, the outbox states."""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest

from etl import contracts
from infra import monitoring
from infra.config import ConfigError, EtlConfig

from .conftest import DR, PRIMARY, SUFFIX, Synth
from .test_stack import all_states, definition, metric_names, props, ref_id, resources

STACKS = [PRIMARY, DR]
ACCOUNT_REF = {"Ref": "AWS::AccountId"}


def reconcile_function(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (k, r)
        for k, r in resources(template, "AWS::Lambda::Function").items()
        if props(r).get("Handler") == contracts.RECONCILE_FUNCTION[1]
    ]
    return found


def rules(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {props(r)["Name"]: props(r) for r in resources(template, "AWS::Events::Rule").values()}


def _target_is_reconcile(template: dict[str, Any], rule: dict[str, Any]) -> dict[str, Any]:
    fn_id, _ = reconcile_function(template)
    (target,) = rule["Targets"]
    assert ref_id(target["Arn"]) == fn_id
    dlq = props(resources(template)[ref_id(target["DeadLetterConfig"]["Arn"])])
    assert dlq["QueueName"] == f"etl-reconcile-dlq-{SUFFIX}" and dlq["SqsManagedSseEnabled"] is True
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] > 0
    return target


# ---- OPS1 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_OPS1_rule_on_this_state_machines_status_changes_reaches_reconcile(
    templates: dict[str, Any], stack: str
) -> None:
    template = templates[stack]
    rule = rules(template)[f"etl-execution-ended-{SUFFIX}"]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert sorted(pattern["detail"]["status"]) == ["ABORTED", "FAILED", "TIMED_OUT"]
    (machine,) = pattern["detail"]["stateMachineArn"]
    assert ref_id(machine) in resources(template, "AWS::StepFunctions::StateMachine")
    assert rule.get("State", "ENABLED") == "ENABLED"  # also on a standby: it runs no executions
    _target_is_reconcile(template, rule)


def test_OPS1_sweep_schedule_runs_reconcile_in_sweep_mode(
    primary: dict[str, Any], dr: dict[str, Any]
) -> None:
    rule = rules(primary)[f"etl-reconcile-sweep-{SUFFIX}"]
    assert rule["ScheduleExpression"] == f"rate({contracts.SWEEP_PERIOD_MINUTES} minutes)"
    assert rule["State"] == "ENABLED"
    target = _target_is_reconcile(primary, rule)
    assert target["Input"] == '{"mode":"sweep"}'
    # DR2: the warm standby processes every replicated file, so its sweep runs too (whether it
    # pages is the region-role switch's business, not the rule's).
    assert rules(dr)[f"etl-reconcile-sweep-{SUFFIX}"]["State"] == "ENABLED"


@pytest.mark.parametrize("stack", STACKS)
def test_OPS1_timeouts_on_the_state_machine_and_every_task(templates: dict[str, Any], stack: str) -> None:
    asl = definition(templates[stack])
    assert asl["TimeoutSeconds"] == contracts.EXECUTION_TIMEOUT_SECONDS
    tasks = [(n, s) for n, s, _ in all_states(asl["States"]) if s["Type"] == "Task"]
    assert len(tasks) == 11
    for name, state in tasks:
        assert 0 < state.get("TimeoutSeconds", 0) <= contracts.TASK_TIMEOUT_SECONDS, name
        if state["Resource"].startswith("arn:aws:lambda:") or "lambda:invoke" in state["Resource"]:
            # One function timeout plus invoke overhead, never less than the function may run.
            assert state["TimeoutSeconds"] == contracts.TASK_TIMEOUT_SECONDS, name
            assert state["TimeoutSeconds"] > contracts.FUNCTION_TIMEOUT_SECONDS, name
    # The arithmetic of docs/infrastructure.md: one Task's worst case (4 attempts timing out +
    # backoffs) fits many times into the execution's bound, and the stale bound outlasts it.
    assert contracts.TASK_WORST_CASE_SECONDS == 4 * contracts.TASK_TIMEOUT_SECONDS + 14
    assert (
        contracts.EXECUTION_TIMEOUT_SECONDS
        > contracts.TASK_WORST_CASE_SECONDS + 20 * contracts.TASK_TIMEOUT_SECONDS
    )
    assert contracts.STALE_UNKNOWN_EXECUTION_SECONDS > contracts.EXECUTION_TIMEOUT_SECONDS


def test_OPS1_stale_bound_reaches_the_reconcile_function_and_is_validated(
    primary: dict[str, Any], dr: dict[str, Any], variant_synth: Synth
) -> None:
    for template in (primary, dr):
        env = props(reconcile_function(template)[1])["Environment"]["Variables"]
        assert env["STALE_AFTER_SECONDS"] == str(contracts.STALE_AFTER_SECONDS) == "1800"
    variant = variant_synth.templates["EtlPipeline-qa-7"]
    assert props(reconcile_function(variant)[1])["Environment"]["Variables"]["STALE_AFTER_SECONDS"] == "2700"
    assert EtlConfig(stale_after_minutes=480).stale_after_minutes == 480
    for bad in (0, 481, -5):
        with pytest.raises(ConfigError, match=r"staleAfterMinutes must be 1-480"):
            EtlConfig(stale_after_minutes=bad)


def test_OPS1_reconcile_function_follows_INF6(primary: dict[str, Any]) -> None:
    _, fn = reconcile_function(primary)
    p = props(fn)
    assert p["FunctionName"] == f"etl-reconcile-{SUFFIX}"
    assert p["MemorySize"] == 3072 and p["Timeout"] == contracts.FUNCTION_TIMEOUT_SECONDS
    assert p["TracingConfig"] == {"Mode": "Active"}
    assert p["LoggingConfig"]["LogFormat"] == "JSON"
    log_group = props(resources(primary)[ref_id(p["LoggingConfig"]["LogGroup"])])
    assert log_group["LogGroupName"] == f"/aws/lambda/etl-reconcile-{SUFFIX}"
    assert log_group["RetentionInDays"] == 30
    dlq = props(resources(primary)[ref_id(p["DeadLetterConfig"]["TargetArn"])])
    assert dlq["QueueName"] == f"etl-reconcile-dlq-{SUFFIX}"
    env = p["Environment"]["Variables"]
    assert {"TABLE_NAME", "BUCKET_NAME", "ALERT_TOPIC_ARN", "RESULT_QUEUE_URL"} <= set(env)


def _role_statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    return [
        s
        for r in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in props(r)["Roles"]
        for s in props(r)["PolicyDocument"]["Statement"]
    ]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_OPS1_reconcile_role_is_least_privilege(primary: dict[str, Any]) -> None:
    _, fn = reconcile_function(primary)
    role_id = ref_id(props(fn)["Role"])
    statements = [s for s in _role_statements(primary, role_id) if s["Effect"] == "Allow"]
    actions = {a for s in statements for a in _as_list(s["Action"])}
    assert not any(a.endswith("*") and a != "kms:GenerateDataKey*" for a in actions), actions
    assert "states:DescribeExecution" in actions and "states:StartExecution" not in actions
    assert not {"s3:DeleteBucket", "dynamodb:DeleteTable", "dynamodb:Scan"} & actions
    by_action: dict[str, list[Any]] = {}
    for s in statements:
        for a in _as_list(s["Action"]):
            by_action.setdefault(a, []).extend(_as_list(s["Resource"]))
    (executions,) = by_action["states:DescribeExecution"]
    assert f"execution:etl-pipeline-{SUFFIX}:*" in str(executions)
    (topic_id,) = resources(primary, "AWS::SNS::Topic")
    assert [ref_id(r) for r in by_action["sns:Publish"]] == [topic_id]
    queues = {props(resources(primary)[ref_id(r)])["QueueName"] for r in by_action["sqs:SendMessage"]}
    # SEC4: the buffer queue, where the sweep re-delivers the events of unseen objects.
    assert queues == {f"etl-results-{SUFFIX}.fifo", f"etl-reconcile-dlq-{SUFFIX}", f"etl-buffer-{SUFFIX}"}
    s3_resources = {str(r) for a, rs in by_action.items() if a.startswith("s3:Put") for r in rs}
    # failed/: the quarantine; announced/: the DR3 ledger marker written after a re-send;
    # tables/: undoing a landed commit of a file it fails writes table metadata (TBL4).
    assert all(
        any(p in r for p in ("incoming/", "failed/", "announced/", "tables/")) for r in s3_resources
    ), s3_resources
    deletes = {str(r) for r in by_action["s3:DeleteObject"]}
    assert not any(p in r for r in deletes for p in ("processed/", "manifests/")), deletes
    assert any("/index/open-files" in str(r) for r in by_action["dynamodb:Query"])
    # INF11: the explicit deny every role carries.
    denies = [s for s in _role_statements(primary, role_id) if s["Effect"] == "Deny"]
    role = props(resources(primary)[role_id])
    denies += [
        s for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
    ]
    denied = {a for s in denies for a in _as_list(s["Action"])}
    assert {"s3:DeleteBucket", "dynamodb:DeleteTable"} <= denied


def test_OPS1_status_table_has_the_sparse_open_files_index(primary: dict[str, Any]) -> None:
    (table,) = resources(primary, "AWS::DynamoDB::Table").values()
    indexes = {i["IndexName"]: i for i in props(table)["GlobalSecondaryIndexes"]}
    assert [k["AttributeName"] for k in indexes[contracts.OPEN_INDEX]["KeySchema"]] == [
        contracts.OPEN_STATE,
        contracts.OPEN_SINCE,
    ]
    assert [k["AttributeName"] for k in indexes[contracts.PARTNER_INDEX]["KeySchema"]] == [
        "partner",
        "created_at",
    ]


def test_OPS1_stale_files_metric_is_on_the_dashboard_with_an_alarm(primary: dict[str, Any]) -> None:
    (dashboard,) = resources(primary, "AWS::CloudWatch::Dashboard").values()
    body = str(props(dashboard)["DashboardBody"])
    assert contracts.METRIC_STALE_FILES in body and contracts.METRIC_UNNOTIFIED_FILES in body
    (alarm,) = [
        props(a)
        for a in resources(primary, "AWS::CloudWatch::Alarm").values()
        if metric_names(props(a)) == {contracts.METRIC_STALE_FILES}
    ]
    assert contracts.METRICS_NAMESPACE in str(alarm)
    assert alarm["EvaluationPeriods"] == 2 and alarm["Threshold"] == 1
    assert alarm["AlarmActions"]


# ---- OPS3 ---------------------------------------------------------------------------------------
def _topic_policy_statements(template: dict[str, Any], topic_id: str) -> list[dict[str, Any]]:
    return [
        s
        for r in resources(template, "AWS::SNS::TopicPolicy").values()
        if {"Ref": topic_id} in props(r)["Topics"]
        for s in props(r)["PolicyDocument"]["Statement"]
    ]


def _alarm_arn_pattern(value: Any, region: str) -> str:
    """The ArnLike condition value with the account left as a wildcard-free marker."""
    parts = value["Fn::Join"][1] if isinstance(value, dict) else [value]
    text = "".join(p if isinstance(p, str) else ("<ACCOUNT>" if p == ACCOUNT_REF else "<?>") for p in parts)
    return text.replace("<ACCOUNT>", "123456789012")


@pytest.mark.parametrize("stack", STACKS)
def test_OPS3_every_alarm_action_topic_lets_cloudwatch_publish(
    templates: dict[str, Any], default_synth: Any, stack: str
) -> None:
    template = templates[stack]
    region = default_synth.regions[stack]
    alarms = [props(a) for a in resources(template, "AWS::CloudWatch::Alarm").values()]
    checked = 0
    for alarm in alarms:
        for action in alarm.get("AlarmActions", []):
            topic_id = ref_id(action)
            allows = [
                s
                for s in _topic_policy_statements(template, topic_id)
                if s["Effect"] == "Allow"
                and s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
                and "sns:Publish" in _as_list(s["Action"])
            ]
            assert allows, f"{alarm['AlarmName']}: topic {topic_id} does not let CloudWatch publish"
            (statement,) = allows
            condition = statement["Condition"]
            assert condition["StringEquals"]["aws:SourceAccount"] == ACCOUNT_REF
            pattern = _alarm_arn_pattern(condition["ArnLike"]["aws:SourceArn"], region)
            alarm_arn = f"arn:aws:cloudwatch:{region}:123456789012:alarm:{alarm['AlarmName']}"
            assert fnmatch.fnmatchcase(alarm_arn, pattern), (alarm_arn, pattern)
            assert not fnmatch.fnmatchcase(alarm_arn.replace(f"etl-alarm-{SUFFIX}", "someone-else"), pattern)
            checked += 1
    assert checked >= 5
    # The topic is KMS-encrypted: the key policy lets CloudWatch use the key, same conditions.
    (key,) = resources(template, "AWS::KMS::Key").values()
    (kms_statement,) = [
        s
        for s in props(key)["KeyPolicy"]["Statement"]
        if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(kms_statement["Action"])
    assert kms_statement["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT_REF


def test_OPS3_one_failure_pages_once(primary: dict[str, Any]) -> None:
    """A single failed file pages through its own alert (AlertFailure / reconcile); an alarm
    that fires on that same single failure only shows on the dashboard. Paging alarms: the
    systemic failure rate, stale files, dead-letter queues (the admission buffer's DLQ
    included), a file waiting long in the admission buffer. ChunkThrottles is dashboard-only:
    throttled chunks are retried and a file that still fails pages by its own alert."""
    alarms = {props(a)["AlarmName"]: props(a) for a in resources(primary, "AWS::CloudWatch::Alarm").values()}
    paging = {name.rsplit("-", 1)[-1] for name, a in alarms.items() if a.get("AlarmActions")}
    assert paging == {
        "failurerate",
        "stalefiles",
        "unseenfiles",  # SEC4: an event went missing (the sweep re-delivered it)
        "triggerdlqdepth",
        "resultdlqdepth",
        "reconciledlqdepth",
        "bufferdlqdepth",
        "bufferoldestmessage",
        # DR1: the other region's copy is behind or missing objects; no per-file alert says so.
        "replicationlatency",
        "replicationfailed",
        # TBL6: the daily table maintenance failed (no file alert would say so).
        "maintaintableserrors",
    }
    assert set(monitoring.DASHBOARD_ONLY_ALARMS) == {"FailedExecutions", "ChunkThrottles"}
    throttles = alarms[f"etl-alarm-{SUFFIX}-chunkthrottles"]
    assert not throttles.get("AlarmActions") and not throttles.get("OKActions")
    silent = alarms[f"etl-alarm-{SUFFIX}-failedexecutions"]
    assert not silent.get("AlarmActions") and not silent.get("OKActions")
    (expression,) = [
        m["Expression"] for m in alarms[f"etl-alarm-{SUFFIX}-failurerate"]["Metrics"] if "Expression" in m
    ]
    # One failed execution out of one started is 100%: the rate must need several failures.
    assert (
        f"failed >= {monitoring.SYSTEMIC_MIN_FAILURES}" in expression
        and monitoring.SYSTEMIC_MIN_FAILURES >= 2
    )


def test_OPS3_alert_carries_message_attributes(primary: dict[str, Any]) -> None:
    alert = definition(primary)["States"]["AlertFailure"]
    attributes = alert["Parameters"]["MessageAttributes"]
    assert set(attributes) == {"file_id", "partner", "status", "error_type"}
    for name, value in attributes.items():
        assert value == {"DataType": "String", "StringValue.$": f"$.failure.attributes.{name}"}


# ---- OPS4 ---------------------------------------------------------------------------------------
def test_OPS4_a_result_that_cannot_be_sent_leaves_the_file_succeeded(primary: dict[str, Any]) -> None:
    states = definition(primary)["States"]
    notify = states["NotifyResult"]
    # Not caught by MarkFailed (which would flip the SUCCEEDED file to FAILED).
    (catch,) = notify["Catch"]
    assert catch["Next"] == "RecordResultNotSent" and catch["ErrorEquals"] == ["States.ALL"]
    record = states["RecordResultNotSent"]
    assert record["Resource"] == "arn:aws:states:::dynamodb:updateItem"
    assert record["Parameters"]["UpdateExpression"] == "SET #notified = :no, #error = :error"
    assert record["Parameters"]["ExpressionAttributeValues"][":no"] == {"BOOL": False}
    assert states[record["Next"]] == states["ResultNotSent"] and states["ResultNotSent"]["Type"] == "Fail"
    done = states["RecordNotified"]
    assert done["Parameters"]["ExpressionAttributeValues"][":yes"] == {"BOOL": True}
    assert "REMOVE #open, #since" in done["Parameters"]["UpdateExpression"]
    assert states[done["Catch"][0]["Next"]]["Error"] == "NotifiedNotRecorded"
    # The normal message's dedup id is the file id; re-sends use <file_id>#<attempt>.
    assert notify["Parameters"]["MessageDeduplicationId.$"] == "$.result.dedup_id"
