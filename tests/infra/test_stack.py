"""Template assertions per requirement id (SPEC INF1-INF12, L2, L3) on the synthesized stacks."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from collections.abc import Iterator
from typing import Any

import pytest

from etl import contracts
from etl.errors import PermanentError
from infra.template_tools import placeholder_resolver, state_machine_definition, with_resolved_definitions

from .conftest import DR, PRIMARY, SUFFIX, Synth

STACKS = (PRIMARY, DR)


def _subclass_names(cls: type) -> set[str]:
    """``cls`` and every class below it (the whole tree, not only direct subclasses)."""
    return {cls.__name__}.union(*(_subclass_names(sub) for sub in cls.__subclasses__()))


def permanent_errors() -> set[str]:
    """Every PermanentError class in etl/, wherever defined (SourceMissing lives in etl.aws.s3,
    SchemaError in etl.core.schema): import every module first, then walk the class tree."""
    import etl

    for module in pkgutil.walk_packages(etl.__path__, "etl."):
        importlib.import_module(module.name)
    return _subclass_names(PermanentError)


PERMANENT_ERRORS = permanent_errors()


def test_permanent_error_list_is_the_whole_class_tree() -> None:
    # Defined outside etl/errors.py or below a direct subclass: missed by __subclasses__() alone.
    assert {"SourceMissing", "SourceChanged", "SchemaError", "TooManyRejects"} <= PERMANENT_ERRORS


# ---- helpers ----------------------------------------------------------------------------------
def resources(template: dict[str, Any], kind: str | None = None) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if kind is None or resource["Type"] == kind
    }


def props(resource: dict[str, Any]) -> dict[str, Any]:
    return resource.get("Properties", {})


def literal_text(value: Any) -> str:
    """The literal characters of a value (strings inside Fn::Join etc.), references dropped."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(literal_text(v) for v in value)
    if isinstance(value, dict):
        if "Ref" in value or "Fn::GetAtt" in value:
            return "<ref>"
        return "".join(literal_text(v) for v in value.values())
    return str(value)


def definition(template: dict[str, Any], region: str = "us-east-1") -> dict[str, Any]:
    return state_machine_definition(template, placeholder_resolver(template, region=region))


def all_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, state, scope states) for every state, descending into Map item processors."""
    for name, state in states.items():
        yield name, state, states
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from all_states(processor["States"])


def functions_by_step(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    by_name = {
        props(r)["FunctionName"]: r
        for r in resources(template, "AWS::Lambda::Function").values()
        if "FunctionName" in props(r)
    }
    return {step: by_name[f"etl-{short}-{SUFFIX}"] for step, (short, _) in contracts.ALL_FUNCTIONS.items()}


def ref_id(value: Any) -> str:
    if isinstance(value, dict) and "Ref" in value:
        return value["Ref"]
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return value["Fn::GetAtt"][0]
    raise AssertionError(f"not a reference: {value!r}")


# ---- INF1 -------------------------------------------------------------------------------------
NAME_KEYS_NOT_RESOURCE_NAMES = {"PolicyName", "DisplayName", "MetricName", "AttributeName"}


def named_values(template: dict[str, Any]) -> Iterator[tuple[str, str, str, Any]]:
    for logical_id, resource in resources(template).items():
        for key, value in props(resource).items():
            # A bare Ref/GetAtt points at another resource's name, which is checked itself.
            is_reference = isinstance(value, dict) and ("Ref" in value or "Fn::GetAtt" in value)
            if key.endswith("Name") and key not in NAME_KEYS_NOT_RESOURCE_NAMES and not is_reference:
                yield logical_id, resource["Type"], key, value


@pytest.mark.parametrize("stack", STACKS)
def test_INF1_every_named_resource_carries_the_suffix(templates: dict[str, Any], stack: str) -> None:
    found = list(named_values(templates[stack]))
    kinds = {kind for _, kind, _, _ in found}
    # Guard against a vacuous pass: every kind of named resource we create is walked.
    assert {
        "AWS::S3::Bucket",
        "AWS::DynamoDB::Table",
        "AWS::Lambda::Function",
        "AWS::SQS::Queue",
        "AWS::SNS::Topic",
        "AWS::StepFunctions::StateMachine",
        "AWS::Logs::LogGroup",
        "AWS::CloudWatch::Dashboard",
        "AWS::CloudWatch::Alarm",
        "AWS::Events::Rule",
        "AWS::Athena::WorkGroup",
        "AWS::Athena::NamedQuery",
        "AWS::Lambda::LayerVersion",
    } <= kinds
    offenders = [(lid, key, value) for lid, _, key, value in found if SUFFIX not in literal_text(value)]
    assert offenders == []


def test_INF1_fixed_names_follow_the_contract(primary: dict[str, Any]) -> None:
    names = {literal_text(v) for _, _, _, v in named_values(primary)}
    for expected in (
        f"etl-status-{SUFFIX}",
        f"etl-results-{SUFFIX}.fifo",
        f"etl-results-dlq-{SUFFIX}.fifo",
        f"etl-alerts-{SUFFIX}",
        f"etl-pipeline-{SUFFIX}",
        f"etl-incoming-{SUFFIX}",
        f"etl-trigger-dlq-{SUFFIX}",
        f"/aws/vendedlogs/states/etl-pipeline-{SUFFIX}",
        f"etl-{SUFFIX}-us-east-1",
    ):
        assert expected in names
    buckets = [literal_text(props(r)["BucketName"]) for r in resources(primary, "AWS::S3::Bucket").values()]
    assert f"etl-data-{SUFFIX}-<ref>-<ref>" in buckets


def test_INF1_suffix_is_validated() -> None:
    from infra.config import ConfigError, EtlConfig

    for bad in ("", "PR42", "pr_42", "-pr42", "a" * 17):
        with pytest.raises(ConfigError, match="environmentSuffix"):
            EtlConfig(environment_suffix=bad)


# ---- INF2 -------------------------------------------------------------------------------------
def test_INF2_two_stacks_primary_us_east_1_and_dr_eu_west_1(default_synth: Synth) -> None:
    assert default_synth.regions == {PRIMARY: "us-east-1", DR: "eu-west-1"}


# The rules that make a stack take files: the S3 rule and admission control's wake-ups (OPS2).
INTAKE_RULES = ("incoming", "admit-on-execution-end", "admit-every-minute")


def intake_rules(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    by_name = {props(r)["Name"]: props(r) for r in resources(template, "AWS::Events::Rule").values()}
    suffix = template["Description"].rsplit("(", 1)[1].rstrip(")")
    return {short: by_name[f"etl-{short}-{suffix}"] for short in INTAKE_RULES}


def _shape(template: dict[str, Any]) -> list[tuple[str, str]]:
    # CDK names a Lambda permission for an EventBridge rule after the stack: compare by type.
    return sorted(
        ("<permission>" if r["Type"] == "AWS::Lambda::Permission" else k, r["Type"])
        for k, r in resources(template).items()
    )


# Resources only the primary stack has: the cross-region links it owns (infra/replication.py,
# infra/access_point.py) and CDK's AwsCustomResource singleton that puts the reverse rules.
PRIMARY_ONLY_PREFIXES = ("Replication", "UploadAccessPoint", "InitialRoutes", "Partners")
# ... and the DR stack's own: DR7's custom resource that turns the standby's alarm actions off.
DR_ONLY_PREFIXES = ("StandbyDefaults",)


def test_INF2_DR2_dr_is_the_same_pipeline_with_every_intake_rule_enabled(
    primary: dict[str, Any], dr: dict[str, Any]
) -> None:
    primary_shape = [(k, t) for k, t in _shape(primary) if not k.startswith(PRIMARY_ONLY_PREFIXES)]
    assert primary_shape == [(k, t) for k, t in _shape(dr) if not k.startswith(DR_ONLY_PREFIXES)]
    assert len(primary_shape) < len(_shape(primary)), "the primary-only resources were not found"
    for template in (primary, dr):
        assert {n: r["State"] for n, r in intake_rules(template).items()} == dict.fromkeys(
            INTAKE_RULES, "ENABLED"
        )


def test_INF2_synth_needs_no_lookups(default_synth: Synth) -> None:
    manifest = json.loads((default_synth.outdir / "manifest.json").read_text())
    assert not manifest.get("missing"), "a context lookup would need AWS credentials at synth"
    assert not (default_synth.outdir / "cdk.context.json").exists()


# ---- INF3 -------------------------------------------------------------------------------------
def data_bucket(template: dict[str, Any]) -> dict[str, Any]:
    (bucket,) = [
        r
        for r in resources(template, "AWS::S3::Bucket").values()
        if literal_text(props(r)["BucketName"]).startswith("etl-data-")
    ]
    return props(bucket)


@pytest.mark.parametrize("stack", STACKS)
def test_INF3_bucket_versioned_sse_s3_private_eventbridge(templates: dict[str, Any], stack: str) -> None:
    bucket = data_bucket(templates[stack])
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
    assert "LoggingConfiguration" in bucket


def test_INF3_lifecycle_processed_to_glacier_after_30_days(primary: dict[str, Any]) -> None:
    rules = {r["Id"]: r for r in data_bucket(primary)["LifecycleConfiguration"]["Rules"]}
    archive = rules["archive-processed"]
    assert archive["Prefix"] == "processed/" and archive["Status"] == "Enabled"
    assert archive["Transitions"] == [{"StorageClass": "GLACIER", "TransitionInDays": 30}]
    assert rules["expire-scratch"]["Prefix"] == "scratch/"
    assert rules["expire-scratch"]["ExpirationInDays"] == 3
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    assert rules["abort-incomplete-multipart"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}


@pytest.mark.parametrize("stack", STACKS)
def test_INF3_every_bucket_denies_non_tls_requests(templates: dict[str, Any], stack: str) -> None:
    buckets = set(resources(templates[stack], "AWS::S3::Bucket"))
    enforced = set()
    for policy in resources(templates[stack], "AWS::S3::BucketPolicy").values():
        for statement in props(policy)["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny" and statement.get("Condition") == {
                "Bool": {"aws:SecureTransport": "false"}
            }:
                enforced.add(ref_id(props(policy)["Bucket"]))
    assert enforced == buckets


# ---- INF4 -------------------------------------------------------------------------------------
def test_INF4_OPS2_rule_buffers_incoming_objects_and_wakes_the_starter_with_dlq_and_retry(
    primary: dict[str, Any],
) -> None:
    rule = intake_rules(primary)["incoming"]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": contracts.INCOMING_PREFIX}]
    (bucket_ref,) = pattern["detail"]["bucket"]["name"]
    assert ref_id(bucket_ref) in {
        k
        for k, r in resources(primary, "AWS::S3::Bucket").items()
        if literal_text(props(r)["BucketName"]).startswith("etl-data-")
    }
    # OPS2: the event goes to the admission buffer queue and wakes StartFiles, which starts
    # the state machine (never directly: a burst would exceed the account's concurrency).
    targets = {
        props(resources(primary)[ref_id(t["Arn"])]).get("QueueName")
        or props(resources(primary)[ref_id(t["Arn"])]).get("FunctionName"): t
        for t in rule["Targets"]
    }
    assert set(targets) == {f"etl-buffer-{SUFFIX}", f"etl-start-files-{SUFFIX}"}
    for target in targets.values():
        dlq = resources(primary)[ref_id(target["DeadLetterConfig"]["Arn"])]
        assert props(dlq)["QueueName"] == f"etl-trigger-dlq-{SUFFIX}"
        assert props(dlq)["SqsManagedSseEnabled"] is True


@pytest.mark.parametrize("stack", STACKS)
def test_INF4_every_rule_target_has_a_dead_letter_queue_and_a_retry_policy(
    templates: dict[str, Any], stack: str
) -> None:
    rules = resources(templates[stack], "AWS::Events::Rule")
    assert rules
    for logical_id, rule in rules.items():
        for target in props(rule)["Targets"]:
            assert "Arn" in target.get("DeadLetterConfig", {}), (logical_id, target["Id"])
            assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1, logical_id
            assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] > 0, logical_id


# ---- INF5 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_INF5_standard_state_machine_with_all_logging_and_tracing(
    templates: dict[str, Any], stack: str
) -> None:
    template = templates[stack]
    (machine,) = resources(template, "AWS::StepFunctions::StateMachine").values()
    p = props(machine)
    assert p["StateMachineType"] == "STANDARD"
    assert p["TracingConfiguration"] == {"Enabled": True}
    assert p["LoggingConfiguration"]["Level"] == "ALL"
    assert p["LoggingConfiguration"]["IncludeExecutionData"] is True
    (destination,) = p["LoggingConfiguration"]["Destinations"]
    log_group = resources(template)[ref_id(destination["CloudWatchLogsLogGroup"]["LogGroupArn"])]
    assert props(log_group)["RetentionInDays"] == 30


def test_INF5_map_state_inline_with_max_concurrency_10(primary: dict[str, Any]) -> None:
    states = definition(primary)["States"]
    maps = [s for _, s, _ in all_states(states) if s["Type"] == "Map"]
    assert len(maps) == 1
    (chunk_map,) = maps
    assert chunk_map["MaxConcurrency"] == 10
    assert chunk_map["ItemsPath"] == "$.plan.chunks"
    assert chunk_map["ItemSelector"] == {
        "file.$": "$.file",
        "header.$": "$.header",
        "chunk.$": "$$.Map.Item.Value",
    }
    assert chunk_map["ResultPath"] is None
    assert chunk_map["ItemProcessor"].get("ProcessorConfig", {}).get("Mode", "INLINE") == "INLINE"


@pytest.mark.parametrize("stack", STACKS)
def test_INF5_every_task_retries_at_most_3_times_with_backoff(templates: dict[str, Any], stack: str) -> None:
    states = definition(templates[stack])["States"]
    tasks = [(n, s) for n, s, _ in all_states(states) if s["Type"] == "Task"]
    # six Lambda steps + NotifyResult + AlertFailure + the outbox's two DynamoDB updates (OPS4)
    # + RecordAnnounced (the DR3 ledger marker, an S3 PutObject)
    assert len(tasks) == 11
    for name, state in tasks:
        assert state.get("Retry"), f"{name} has no Retry"
        for retrier in state["Retry"]:
            assert retrier["MaxAttempts"] <= 3, name
            assert retrier["BackoffRate"] > 1, name
            assert retrier["IntervalSeconds"] >= 1, name
            assert not PERMANENT_ERRORS & set(retrier["ErrorEquals"]), f"{name} retries a permanent error"
            assert "States.ALL" not in retrier["ErrorEquals"], name


def test_INF5_TBL4_lambda_tasks_retry_service_errors_timeouts_and_transient_error(
    primary: dict[str, Any],
) -> None:
    """TBL4: a function that timed out or whose sandbox died is retried (every step is
    idempotent; Finalize dying after its commit must get to finish it)."""
    states = {n: s for n, s, _ in all_states(definition(primary)["States"])}
    for step in contracts.HANDLERS:
        (retrier,) = states[step]["Retry"]
        assert set(retrier["ErrorEquals"]) == {
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException",
            "Sandbox.Timedout",
            "Lambda.Unknown",
            "TransientError",
        }
        assert (retrier["IntervalSeconds"], retrier["MaxAttempts"], retrier["BackoffRate"]) == (2, 3, 2)
        assert retrier["JitterStrategy"] == "FULL"


def reaches_fail(name: str, scope: dict[str, Any], seen: set[str] | None = None) -> bool:
    """True if every path from state ``name`` (Next/Default/Choices, no Catch) ends in Fail."""
    seen = seen or set()
    if name in seen:
        return False
    seen = seen | {name}
    state = scope[name]
    if state["Type"] == "Fail":
        return True
    if state["Type"] in ("Succeed",) or state.get("End"):
        return False
    successors = [state["Next"]] if "Next" in state else []
    successors += [c["Next"] for c in state.get("Choices", [])]
    successors += [state["Default"]] if "Default" in state else []
    return bool(successors) and all(reaches_fail(s, scope, seen) for s in successors)


@pytest.mark.parametrize("stack", STACKS)
def test_INF5_every_catch_ends_in_a_fail_state(templates: dict[str, Any], stack: str) -> None:
    states = definition(templates[stack])["States"]
    top_level = dict(states)
    catching = []
    for name, state, scope in all_states(states):
        if state["Type"] in ("Task", "Map"):
            if scope is top_level:
                assert state.get("Catch"), f"{name} has no Catch"
            for catcher in state.get("Catch", []):
                assert catcher["ErrorEquals"] == ["States.ALL"]
                assert reaches_fail(catcher["Next"], scope), f"{name}'s Catch does not end in Fail"
                catching.append(name)
    assert {
        "RegisterFile",
        "ValidateHeader",
        "PlanChunks",
        "ProcessChunks",
        "Finalize",
        "NotifyResult",
        "MarkFailed",
        "AlertFailure",
    } <= set(catching)


def test_INF5_workflow_follows_the_contract(primary: dict[str, Any]) -> None:
    asl = definition(primary)
    states = asl["States"]
    assert asl["StartAt"] == "RegisterFile"
    assert states["RegisterFile"]["Parameters"] == {"event.$": "$", "execution_arn.$": "$$.Execution.Id"}
    assert states["RegisterFile"]["ResultPath"] == "$.file"
    assert states["IsDuplicate"]["Choices"] == [
        {"Variable": "$.file.duplicate", "BooleanEquals": True, "Next": "DuplicateIgnored"}
    ]
    assert states["DuplicateIgnored"]["Type"] == "Succeed"
    assert [states[s]["ResultPath"] for s in ("ValidateHeader", "PlanChunks", "Finalize")] == [
        "$.header",
        "$.plan",
        "$.result",
    ]
    assert states["Finalize"]["Next"] == "ShouldAnnounce"
    assert states["ShouldAnnounce"]["Default"] == "NotifyResult"
    notify = states["NotifyResult"]
    assert notify["Resource"] == "arn:aws:states:::sqs:sendMessage"
    assert notify["Parameters"]["MessageBody.$"] == "$.result"
    assert notify["Parameters"]["MessageGroupId.$"] == "$.result.message_group_id"
    assert notify["Parameters"]["MessageDeduplicationId.$"] == "$.result.dedup_id"
    assert notify["Next"] == "RecordNotified"  # OPS4: then the DR3 ledger, then FileSucceeded
    assert states["RecordNotified"]["Next"] == "RecordAnnounced"
    assert states[states["RecordAnnounced"]["Next"]]["Type"] == "Succeed"
    mark = states["MarkFailed"]
    assert "Parameters" not in mark and "InputPath" not in mark  # the whole state goes in
    assert mark["ResultPath"] == "$.failure" and mark["Next"] == "ShouldAlert"
    assert states["ShouldAlert"]["Default"] == "AlertFailure"
    alert = states["AlertFailure"]
    assert alert["Resource"] == "arn:aws:states:::sns:publish"
    assert alert["Parameters"]["Subject.$"] == "$.failure.subject"
    assert alert["Parameters"]["Message.$"] == "$.failure.message"
    assert states[alert["Next"]] == states["FileFailed"] and states["FileFailed"]["Type"] == "Fail"
    for name, state, _ in all_states(states):
        if state["Type"] == "Task" and name in contracts.HANDLERS:
            assert state["Resource"].startswith("arn:aws:lambda:"), name
    text = json.dumps(asl)
    assert "JSONata" not in text and '"Assign"' not in text and "QueryLanguage" not in text


def test_DATA4_duplicate_content_skips_the_chunks_and_ends_through_finalize(primary: dict[str, Any]) -> None:
    """PlanChunks -> IsDuplicateContent: a plan marked duplicate_content goes straight to
    Finalize (which ends the file DUPLICATE_CONTENT) and NotifyResult, never to the Map."""
    states = definition(primary)["States"]
    assert states["PlanChunks"]["Next"] == "IsDuplicateContent"
    choice = states["IsDuplicateContent"]
    assert choice["Type"] == "Choice"
    assert choice["Choices"] == [
        {
            "And": [
                {"Variable": "$.plan.duplicate_content", "IsPresent": True},
                {"Variable": "$.plan.duplicate_content", "BooleanEquals": True},
            ],
            "Next": "Finalize",
        }
    ]
    assert choice["Default"] == "ProcessChunks"
    assert states["ProcessChunks"]["Next"] == "Finalize"
    assert states["Finalize"]["Next"] == "ShouldAnnounce"
    assert states["ShouldAnnounce"]["Default"] == "NotifyResult"
    assert states["NotifyResult"]["Next"] == "RecordNotified"
    assert states[states["RecordAnnounced"]["Next"]]["Type"] == "Succeed"


def test_INF5_no_cdk_default_retry_sneaks_in(primary: dict[str, Any]) -> None:
    """LambdaInvoke adds MaxAttempts 6 unless retry_on_service_exceptions=False."""
    states = definition(primary)["States"]
    for name, state, _ in all_states(states):
        for retrier in state.get("Retry", []):
            assert retrier["MaxAttempts"] != 6, name


# ---- INF6 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_INF6_every_function_has_3072mb_900s_tracing_and_30_day_log_group(
    templates: dict[str, Any], stack: str
) -> None:
    template = templates[stack]
    fns = functions_by_step(template)
    assert len(fns) == len(contracts.ALL_FUNCTIONS) == 9
    for step, fn in fns.items():
        p = props(fn)
        assert p["MemorySize"] == 3072, step
        assert p["Timeout"] == 900, step
        assert p["TracingConfig"] == {"Mode": "Active"}, step
        assert p["LoggingConfig"]["LogFormat"] == "JSON", step
        assert p["Runtime"] == "python3.13", step
        assert p["Handler"] == contracts.ALL_FUNCTIONS[step][1], step
        log_group = resources(template)[ref_id(p["LoggingConfig"]["LogGroup"])]
        assert log_group["Type"] == "AWS::Logs::LogGroup"
        assert props(log_group)["RetentionInDays"] == 30
        assert props(log_group)["LogGroupName"] == f"/aws/lambda/{p['FunctionName']}"
        assert log_group.get("DeletionPolicy") == "Delete"


ROLE_ENV = ("REGION_ROLE_PARAMETER", "DEFAULT_REGION_ROLE")


def test_INF6_environment_matches_the_contract(primary: dict[str, Any]) -> None:
    for step, fn in functions_by_step(primary).items():
        env = props(fn)["Environment"]["Variables"]
        own = {
            "StartFiles": {"BUFFER_QUEUE_URL", "STATE_MACHINE_ARN", "MAX_FILES_IN_FLIGHT"},
            # SEC4: the sweep re-delivers events of unseen objects into the buffer queue.
            "Reconcile": {"ALERT_TOPIC_ARN", "RESULT_QUEUE_URL", "STALE_AFTER_SECONDS", "BUFFER_QUEUE_URL"},
            "ValidateHeader": {contracts.DEFAULT_SCHEMA_PARTNERS_ENV},  # SEC2
            # TBL6: the maintenance bounds.
            "MaintainTables": {"SNAPSHOT_RETENTION_DAYS", "MIN_SNAPSHOTS", "ORPHAN_AGE_HOURS"},
        }
        assert set(env) - own.get(step, set()) == {
            "BUCKET_NAME",
            "TABLE_NAME",
            "CHUNK_SIZE_BYTES",
            "MAX_RECORD_BYTES",
            "POWERTOOLS_SERVICE_NAME",
            "POWERTOOLS_METRICS_NAMESPACE",
            "POWERTOOLS_LOG_LEVEL",
            "ARROW_DEFAULT_MEMORY_POOL",
            "GLUE_DATABASE",
            "REGION_ROLE_PARAMETER",  # SPEC DR3: the region-role switch and its default
            "DEFAULT_REGION_ROLE",
        }, step
        assert env["GLUE_DATABASE"] == contracts.glue_database(SUFFIX)  # SPEC DATA1
        assert env["ARROW_DEFAULT_MEMORY_POOL"] == "system"  # PERF2 peak memory
        assert env["CHUNK_SIZE_BYTES"] == str(contracts.DEFAULT_CHUNK_SIZE_BYTES)
        assert env["MAX_RECORD_BYTES"] == str(contracts.DEFAULT_MAX_RECORD_BYTES)
        assert env["POWERTOOLS_SERVICE_NAME"] == "transaction-etl"
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "TransactionEtl"
        assert ref_id(env["TABLE_NAME"]) in resources(primary, "AWS::DynamoDB::Table")


def test_PERF4_bench_init_runs_in_the_chunk_functions_environment(primary: dict[str, Any]) -> None:
    """benchmarks/bench_init.py measures a cold start in the ProcessChunk function's environment:
    the same variables, and the same values where they are literals (Powertools reads them at
    import; resource names are references and placeholders in the benchmark)."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
    try:
        bench_init = importlib.import_module("bench_init")
    finally:
        sys.path.pop(0)
    env = props(functions_by_step(primary)["ProcessChunk"])["Environment"]["Variables"]
    assert set(bench_init.FUNCTION_ENV) == set(env)
    names = ("BUCKET_NAME", "TABLE_NAME", "GLUE_DATABASE", "REGION_ROLE_PARAMETER")  # per deployment
    literal = {k: v for k, v in env.items() if isinstance(v, str) and k not in names}
    assert {k: bench_init.FUNCTION_ENV[k] for k in literal} == literal
    assert not set(bench_init.RUNTIME_VARIABLES) & set(env)
    assert "LAMBDA_TASK_ROOT" in bench_init.LAMBDA_ENV  # the X-Ray SDK and Powertools check it


def role_statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    statements = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if role_id in [ref_id(r) for r in props(policy)["Roles"]]:
            statements += props(policy)["PolicyDocument"]["Statement"]
    role = resources(template)[role_id]
    for inline in props(role).get("Policies", []):
        statements += inline["PolicyDocument"]["Statement"]
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


EXPECTED_PREFIXES = {
    # processed/ for reading: a forced reprocess of a DUPLICATE_CONTENT file (DATA4) reads it there.
    "RegisterFile": {"incoming/", "failed/", "processed/"},
    "ValidateHeader": {"incoming/", "failed/", "processed/"},
    "PlanChunks": {"incoming/", "failed/", "processed/", "scratch/", "output/", "rejected/"},
    "ProcessChunk": {"incoming/", "failed/", "processed/", "scratch/", "output/", "rejected/", "tables/"},
    "Finalize": {
        "incoming/",
        "failed/",
        "processed/",
        "manifests/",
        "scratch/",
        "output/",
        "rejected/",
        "tables/",
        "announced/",  # DR3: HeadObject of the ledger marker
    },
    # TBL7: a failed file's rejects under rejected/ are kept, so neither may touch them.
    "MarkFailed": {"incoming/", "failed/", "processed/", "scratch/", "output/", "tables/"},
    "StartFiles": set(),
    "Reconcile": {"incoming/", "failed/", "scratch/", "output/", "tables/", "announced/"},
    "MaintainTables": {"tables/"},  # TBL6: the tables' own objects only
}
WRITERS = {
    "PlanChunks": {"scratch/"},
    "ProcessChunk": {"output/", "rejected/", "scratch/", "tables/"},
    # DATA4(c): cross-chunk duplicates rewrite a chunk's output/ Parquet and rejected/ CSV (TBL1).
    "Finalize": {"processed/", "manifests/", "tables/", "output/", "rejected/"},
    # TBL4: undoing a landed commit writes new table metadata under tables/.
    "MarkFailed": {"failed/", "tables/"},
    "Reconcile": {"failed/", "announced/", "tables/"},
    "MaintainTables": {"tables/"},
}


def test_INF6_least_privilege_roles_scoped_to_prefixes_and_table(primary: dict[str, Any]) -> None:
    table_id = next(iter(resources(primary, "AWS::DynamoDB::Table")))
    for step, fn in functions_by_step(primary).items():
        statements = [
            s for s in role_statements(primary, ref_id(props(fn)["Role"])) if s["Effect"] == "Allow"
        ]
        prefixes, written = set(), set()
        for statement in statements:
            actions = as_list(statement["Action"])
            assert not any(a.endswith(":*") or a == "*" for a in actions), (step, actions)
            for resource in as_list(statement["Resource"]):
                text = literal_text(resource)
                if resource == "*":
                    assert set(actions) <= {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, step
                elif text.startswith("<ref>/index/") and all(a.startswith("dynamodb:") for a in actions):
                    # Reconcile queries the status table's two indexes (OPS1/OPS3).
                    assert step == "Reconcile" and set(actions) == {"dynamodb:Query"}, step
                elif text.startswith("<ref>/"):
                    prefix = text[len("<ref>/") :].rstrip("*")
                    prefixes.add(prefix)
                    if "s3:PutObject" in actions:
                        written.add(prefix)
                elif any(a.startswith("dynamodb:") for a in actions):
                    assert ref_id(resource) == table_id, step
                    assert "dynamodb:DeleteTable" not in actions and "dynamodb:Scan" not in actions
        assert prefixes == EXPECTED_PREFIXES[step], step
        assert written == WRITERS.get(step, set()), step


def test_INF6_code_asset_is_only_the_etl_package(default_synth: Synth) -> None:
    fn = functions_by_step(default_synth.primary)["RegisterFile"]
    asset_hash = re.match(r"^([0-9a-f]{64})\.zip$", literal_text(props(fn)["Code"]["S3Key"])).group(1)
    asset_dir = default_synth.outdir / f"asset.{asset_hash}"
    top = sorted(p.name for p in asset_dir.iterdir())
    assert top == ["etl"]
    files = [p.relative_to(asset_dir).as_posix() for p in asset_dir.rglob("*")]
    assert "etl/contracts.py" in files and "etl/errors.py" in files
    # The schemas are data files the handlers load at run time.
    assert "etl/schemas/default.json" in files and "etl/schemas/data/iso4217_active.json" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc") or "/." in f]


# ---- L2 / L3 ----------------------------------------------------------------------------------
def test_L3_layers_are_ssm_dynamic_parameters_no_hardcoded_arns(primary: dict[str, Any]) -> None:
    from infra.functions import ICEBERG_STEPS

    parameters = primary["Parameters"]
    for step, fn in functions_by_step(primary).items():
        layers = props(fn)["Layers"]
        assert len(layers) == 2
        pandas = parameters[ref_id(layers[0])]
        assert pandas["Type"] == "AWS::SSM::Parameter::Value<String>"
        assert pandas["Default"] == "/aws/service/aws-sdk-pandas/3.17.1/py3.13/x86_64/layer-arn"
        if step in ICEBERG_STEPS:
            # DATA7: Powertools comes with the pyiceberg layer (built from uv.lock) on these.
            assert resources(primary)[ref_id(layers[1])]["Type"] == "AWS::Lambda::LayerVersion", step
            continue
        powertools = parameters[ref_id(layers[1])]
        assert powertools["Type"] == "AWS::SSM::Parameter::Value<String>"
        assert powertools["Default"] == "/aws/service/powertools/python/x86_64/python3.13/latest"
    assert not re.search(r"arn:aws:lambda:[a-z0-9-]+:\d{12}:layer", json.dumps(primary))


def test_L3_layer_parameters_follow_runtime_and_architecture() -> None:
    from infra.config import EtlConfig

    config = EtlConfig(lambda_runtime="python3.12", architecture="arm64", sdk_pandas_version="3.16.1")
    assert config.sdk_pandas_layer_parameter == "/aws/service/aws-sdk-pandas/3.16.1/py3.12/arm64/layer-arn"
    assert config.powertools_layer_parameter == "/aws/service/powertools/python/arm64/python3.12/latest"


def test_L2_python39_synthesizes_with_a_deprecation_warning() -> None:
    from aws_cdk.assertions import Annotations, Match

    from .conftest import synth

    result = synth({"environmentSuffix": SUFFIX, "lambdaRuntime": "python3.9"}, policy_checks=False)
    for fn in functions_by_step(result.primary).values():
        assert props(fn)["Runtime"] == "python3.9"
    stack = result.app.node.find_child(PRIMARY)
    Annotations.from_stack(stack).has_warning(
        "*", Match.string_like_regexp("deprecated python3\\.9 on 2025-12-15")
    )


def test_L2_current_runtime_has_no_deprecation_warning(default_synth: Synth) -> None:
    from aws_cdk.assertions import Annotations, Match

    stack = default_synth.app.node.find_child(PRIMARY)
    assert Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp("deprecated")) == []


def test_L2_runtime_outside_the_supported_range_is_rejected() -> None:
    from infra.config import ConfigError, EtlConfig

    for bad in ("python3.8", "nodejs22.x", "python3.15"):
        with pytest.raises(ConfigError, match="lambdaRuntime"):
            EtlConfig(lambda_runtime=bad)


# ---- INF7 / INF8 ------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_INF7_status_table_keys_billing_pitr_encryption(templates: dict[str, Any], stack: str) -> None:
    (table,) = resources(templates[stack], "AWS::DynamoDB::Table").values()
    p = props(table)
    assert p["TableName"] == f"etl-status-{SUFFIX}"
    assert p["KeySchema"] == [
        {"AttributeName": "file_id", "KeyType": "HASH"},
        {"AttributeName": "chunk_id", "KeyType": "RANGE"},
    ]
    assert {"AttributeName": "file_id", "AttributeType": "S"} in p["AttributeDefinitions"]
    assert {"AttributeName": "chunk_id", "AttributeType": "S"} in p["AttributeDefinitions"]
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert p["SSESpecification"]["SSEEnabled"] is True
    assert p.get("DeletionProtectionEnabled", False) is False
    assert table["DeletionPolicy"] == "Delete"


@pytest.mark.parametrize("stack", STACKS)
def test_INF8_result_fifo_queue_with_dlq_and_encrypted_alert_topic(
    templates: dict[str, Any], stack: str
) -> None:
    template = templates[stack]
    queues = {
        props(q)["QueueName"]: (lid, props(q)) for lid, q in resources(template, "AWS::SQS::Queue").items()
    }
    _, results = queues[f"etl-results-{SUFFIX}.fifo"]
    dlq_id, dlq = queues[f"etl-results-dlq-{SUFFIX}.fifo"]
    assert results["FifoQueue"] is True and dlq["FifoQueue"] is True
    assert results["ContentBasedDeduplication"] is False
    assert ref_id(results["RedrivePolicy"]["deadLetterTargetArn"]) == dlq_id
    for _, queue in queues.values():
        assert queue["SqsManagedSseEnabled"] is True
    queue_ids = {lid for lid, _ in queues.values()}
    ssl_enforced = set()
    for policy in resources(template, "AWS::SQS::QueuePolicy").values():
        for statement in props(policy)["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny" and statement.get("Condition") == {
                "Bool": {"aws:SecureTransport": "false"}
            }:
                ssl_enforced |= {ref_id(q) for q in props(policy)["Queues"]}
    assert ssl_enforced == queue_ids
    ((_topic_id, topic),) = resources(template, "AWS::SNS::Topic").items()
    assert props(topic)["TopicName"] == f"etl-alerts-{SUFFIX}"
    key = resources(template)[ref_id(props(topic)["KmsMasterKeyId"])]
    assert key["Type"] == "AWS::KMS::Key" and props(key)["EnableKeyRotation"] is True
    (topic_policy,) = resources(template, "AWS::SNS::TopicPolicy").values()
    assert any(
        s["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(s.get("Condition", {}))
        for s in props(topic_policy)["PolicyDocument"]["Statement"]
    )


# ---- INF9 -------------------------------------------------------------------------------------
def test_INF9_dashboard_shows_executions_failure_rate_functions_rows_and_dlqs(
    primary: dict[str, Any],
) -> None:
    (dashboard,) = resources(primary, "AWS::CloudWatch::Dashboard").values()
    body = literal_text(props(dashboard)["DashboardBody"])
    for needle in (
        "ExecutionsStarted",
        "ExecutionsSucceeded",
        "ExecutionsFailed",
        "100 * failed / started",
        "ExecutionTime",
        "Invocations",
        "Errors",
        "Throttles",
        "Duration",
        "RowsProcessed",
        "RowsRejected",
        "BytesProcessed",
        "ChunkDurationMs",
        "FilesSucceeded",
        "FilesFailed",
        "TransactionEtl",
        "transaction-etl",
        "ApproximateNumberOfMessagesVisible",
    ):
        assert needle in body, needle


def metric_names(alarm: dict[str, Any]) -> set[str]:
    if "MetricName" in alarm:
        return {alarm["MetricName"]}
    return {m["MetricStat"]["Metric"]["MetricName"] for m in alarm.get("Metrics", []) if "MetricStat" in m}


def test_INF9_alarms_on_failure_rate_failed_executions_and_dlq_depth_notify_sns(
    primary: dict[str, Any],
) -> None:
    """The INF9 alarms exist; which of them page is OPS3's decision (tests/infra/test_ops.py):
    FailedExecutions and ChunkThrottles show on the dashboard only, the others notify the topic."""
    (topic_id,) = resources(primary, "AWS::SNS::Topic")
    alarms = {props(a)["AlarmName"]: props(a) for a in resources(primary, "AWS::CloudWatch::Alarm").values()}
    assert {
        f"etl-alarm-{SUFFIX}-{n}"
        for n in (
            "failurerate",
            "failedexecutions",
            "triggerdlqdepth",
            "resultdlqdepth",
            "bufferdlqdepth",
            "reconciledlqdepth",
            "stalefiles",
            "chunkthrottles",
            "bufferoldestmessage",
        )
    } <= set(alarms)
    for name, alarm in alarms.items():
        if not name.endswith(("-failedexecutions", "-chunkthrottles")):
            assert [ref_id(a) for a in alarm["AlarmActions"]] == [topic_id], name
    assert any(
        "100 * failed / started" in m.get("Expression", "")
        for m in alarms[f"etl-alarm-{SUFFIX}-failurerate"]["Metrics"]
    )
    assert metric_names(alarms[f"etl-alarm-{SUFFIX}-failedexecutions"]) == {"ExecutionsFailed"}
    for dlq in ("triggerdlqdepth", "resultdlqdepth"):
        assert metric_names(alarms[f"etl-alarm-{SUFFIX}-{dlq}"]) == {"ApproximateNumberOfMessagesVisible"}


def test_INF9_alert_key_lets_cloudwatch_publish(primary: dict[str, Any]) -> None:
    (key,) = resources(primary, "AWS::KMS::Key").values()
    statements = props(key)["KeyPolicy"]["Statement"]
    assert any(s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"} for s in statements)


# ---- INF10-INF12 ------------------------------------------------------------------------------
def cfn_taggable(kind: str) -> bool:
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    if kind.startswith("Custom::") or kind == "AWS::CloudFormation::CustomResource":
        return False
    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", kind).schema
    return "Tags" in schema.get("properties", {})


@pytest.mark.parametrize("stack", STACKS)
def test_INF10_environment_and_project_tags_on_every_taggable_resource(
    templates: dict[str, Any], stack: str
) -> None:
    checked = 0
    for logical_id, resource in resources(templates[stack]).items():
        if not cfn_taggable(resource["Type"]):
            continue
        tags = props(resource).get("Tags")
        pairs = ({t["Key"]: t["Value"] for t in tags} if isinstance(tags, list) else tags) or {}
        assert pairs.get("Environment") == "Production", logical_id
        assert pairs.get("Project") == "ETL", logical_id
        checked += 1
    assert checked >= 30


def deny_statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        s
        for p in props(role).get("Policies", [])
        for s in p["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny"
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_INF11_every_iam_role_denies_bucket_and_table_deletion(templates: dict[str, Any], stack: str) -> None:
    roles = resources(templates[stack], "AWS::IAM::Role")
    assert any("AutoDeleteObjects" in lid for lid in roles), "custom-resource provider role not walked"
    for logical_id, role in roles.items():
        denies = deny_statements(role)
        assert any(
            set(as_list(d["Action"])) >= {"s3:DeleteBucket", "dynamodb:DeleteTable"} and d["Resource"] == "*"
            for d in denies
        ), logical_id


def test_INF11_deny_is_appended_not_replacing_existing_inline_policies() -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_s3 as s3

    from infra.guardrails import apply_guardrails

    app = cdk.App()
    stack = cdk.Stack(app, "GuardrailProbe")
    iam.Role(
        stack,
        "WithInline",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        inline_policies={
            "Keep": iam.PolicyDocument(
                statements=[iam.PolicyStatement(actions=["s3:GetObject"], resources=["arn:aws:s3:::b/*"])]
            )
        },
    )
    s3.Bucket(stack, "B", removal_policy=cdk.RemovalPolicy.DESTROY, auto_delete_objects=True)
    apply_guardrails(stack)
    template = app.synth().get_stack_by_name("GuardrailProbe").template
    roles = resources(template, "AWS::IAM::Role")
    (with_inline,) = [r for lid, r in roles.items() if lid.startswith("WithInline")]
    assert [p["PolicyName"] for p in props(with_inline)["Policies"]] == ["Keep", "DenyDestructiveDataDeletes"]
    (provider,) = [r for lid, r in roles.items() if "AutoDeleteObjects" in lid]
    assert props(provider)["ManagedPolicyArns"], "provider role lost its managed policy"
    assert deny_statements(provider)


@pytest.mark.parametrize("stack", STACKS)
def test_INF12_nothing_is_retained_or_protected(templates: dict[str, Any], stack: str) -> None:
    for logical_id, resource in resources(templates[stack]).items():
        assert resource.get("DeletionPolicy", "Delete") == "Delete", logical_id
        assert resource.get("UpdateReplacePolicy", "Delete") == "Delete", logical_id
        assert props(resource).get("DeletionProtectionEnabled") in (None, False), logical_id
    auto_delete = resources(templates[stack], "Custom::S3AutoDeleteObjects")
    emptied = {ref_id(props(r)["BucketName"]) for r in auto_delete.values()}
    assert emptied == set(resources(templates[stack], "AWS::S3::Bucket"))


def test_INF12_a_retained_resource_fails_the_guardrail() -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_sqs as sqs
    from aws_cdk.assertions import Annotations, Match

    from infra.guardrails import apply_guardrails

    app = cdk.App()
    stack = cdk.Stack(app, "RetainProbe")
    sqs.Queue(stack, "Kept", removal_policy=cdk.RemovalPolicy.RETAIN)
    apply_guardrails(stack)
    app.synth()
    Annotations.from_stack(stack).has_error("*", Match.string_like_regexp("DeletionPolicy RETAIN"))


# ---- outputs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_outputs_let_the_operator_cli_find_every_resource(templates: dict[str, Any], stack: str) -> None:
    outputs = templates[stack]["Outputs"]
    expected = {
        "BucketName",
        "TableName",
        "StateMachineArn",
        "ResultQueueUrl",
        "AlertTopicArn",
        "TriggerRuleName",
        "TriggerDlqUrl",
        "DashboardName",
        "BufferQueueUrl",
        "BufferDlqUrl",
        "MaxFilesInFlight",
    } | {f"{step}FunctionName" for step in contracts.ALL_FUNCTIONS}
    assert expected <= set(outputs)
    assert outputs["PipelineRole"]["Value"] == ("primary" if stack == PRIMARY else "dr")


def test_resolved_definition_is_embedded_for_linting(primary: dict[str, Any]) -> None:
    resolved = with_resolved_definitions(primary, placeholder_resolver(primary))
    (machine,) = resources(resolved, "AWS::StepFunctions::StateMachine").values()
    assert "DefinitionString" not in props(machine)
    assert props(machine)["Definition"]["StartAt"] == "RegisterFile"
    assert "DefinitionString" in props(
        next(iter(resources(primary, "AWS::StepFunctions::StateMachine").values()))
    )


def test_L2_L3_INF6_context_knobs_reach_functions_layers_and_nag(variant_synth: Synth) -> None:
    """Runtime, architecture and chunk sizes are context values; cdk-nag still passes (synth ran)."""
    template = variant_synth.templates["EtlPipeline-qa-7"]
    fns = [
        r
        for r in resources(template, "AWS::Lambda::Function").values()
        if props(r).get("Handler") in {handler for _, handler in contracts.ALL_FUNCTIONS.values()}
    ]
    assert len(fns) == len(contracts.ALL_FUNCTIONS)
    parameters = template["Parameters"]
    for fn in fns:
        p = props(fn)
        assert p["Runtime"] == "python3.14" and p["Architectures"] == ["arm64"]
        assert p["Environment"]["Variables"]["CHUNK_SIZE_BYTES"] == str(64 * 1024 * 1024)
        assert p["Environment"]["Variables"]["MAX_RECORD_BYTES"] == str(8 * 1024 * 1024)
        layers = [parameters.get(ref_id(layer), {}).get("Default") for layer in p["Layers"]]
        assert layers[0] == "/aws/service/aws-sdk-pandas/3.17.1/py3.14/arm64/layer-arn"
        assert layers[1] in ("/aws/service/powertools/python/arm64/python3.14/latest", None)
    (layer,) = resources(template, "AWS::Lambda::LayerVersion").values()
    assert props(layer)["CompatibleArchitectures"] == ["arm64"]
    assert props(layer)["CompatibleRuntimes"] == ["python3.14"]
    (subscription,) = resources(template, "AWS::SNS::Subscription").values()
    assert props(subscription)["Protocol"] == "email"
    dlq = resources(template)[ref_id(props(subscription)["RedrivePolicy"]["deadLetterTargetArn"])]
    assert props(dlq)["QueueName"] == "etl-alerts-dlq-qa-7"
    assert all("qa-7" in literal_text(v) for _, _, _, v in named_values(template))


def test_DATA1_only_finalize_may_commit_and_only_to_the_two_tables(primary: dict[str, Any]) -> None:
    """Glue actions: Finalize, (TBL6) the table maintenance and (TBL4) MarkFailed/reconcile alone
    (GetDatabase/GetTable/UpdateTable), on the catalog, the environment's database and its
    tables (transactions, rejects, the load audit table; the failure path updates transactions
    only);
    no wildcard, no CreateTable/DeleteTable."""
    db = contracts.glue_database(SUFFIX)
    for step, fn in functions_by_step(primary).items():
        statements = [
            s for s in role_statements(primary, ref_id(props(fn)["Role"])) if s["Effect"] == "Allow"
        ]
        glue = [s for s in statements if any(a.startswith("glue:") for a in as_list(s["Action"]))]
        if step not in ("Finalize", contracts.MAINTAIN_STEP, "MarkFailed", contracts.RECONCILE_STEP):
            assert glue == [], step
            continue
        pairs = {
            (action, literal_text(r).rsplit(":", 1)[-1])
            for s in glue
            for action in as_list(s["Action"])
            for r in as_list(s["Resource"])
        }
        tables = [
            f"table/{db}/transactions",
            f"table/{db}/transaction_rejects",
            f"table/{db}/transaction_loads",
        ]
        # TBL4: MarkFailed and reconcile read the two tables holding file data and only ever
        # undo a landed commit of transactions.
        failure_path = step in ("MarkFailed", contracts.RECONCILE_STEP)
        read = tables[:2] if failure_path else tables
        written = tables[:1] if failure_path else tables
        # GetDatabase is checked against the catalog and the database only (OPS5: nothing more).
        assert pairs == {
            *(("glue:GetDatabase", t) for t in ["catalog", f"database/{db}"]),
            *(("glue:GetTable", t) for t in ["catalog", f"database/{db}", *read]),
            *(("glue:UpdateTable", t) for t in ["catalog", f"database/{db}", *written]),
        }
