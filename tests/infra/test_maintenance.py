"""TBL6 on the synthesized templates: the MaintainTables function (both stacks), its daily
schedule, least-privilege role and error alarm."""

from __future__ import annotations

import json
from typing import Any

import pytest

from etl import contracts
from etl.aws import maintenance

from .conftest import DR, PRIMARY, SUFFIX
from .test_stack import as_list, literal_text, props, ref_id, resources, role_statements

STACKS = (PRIMARY, DR)
DATABASE = contracts.glue_database(SUFFIX)
HANDLER = contracts.MAINTAIN_FUNCTION[1]


def function(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (lid, r)
        for lid, r in resources(template, "AWS::Lambda::Function").items()
        if props(r).get("Handler") == HANDLER
    ]
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_TBL6_maintenance_function_in_both_stacks_with_safe_bounds(
    templates: dict[str, Any], stack: str
) -> None:
    template = templates[stack]
    _, fn = function(template)
    p = props(fn)
    assert p["FunctionName"] == f"etl-{contracts.MAINTAIN_FUNCTION[0]}-{SUFFIX}"
    assert (p["MemorySize"], p["Timeout"], p["TracingConfig"]) == (3072, 900, {"Mode": "Active"})
    assert p["ReservedConcurrentExecutions"] == 1  # two runs would race each other's expiry
    env = p["Environment"]["Variables"]
    assert env["GLUE_DATABASE"] == DATABASE
    assert float(env[maintenance.ENV_ORPHAN_AGE_HOURS]) * 3600 >= maintenance.MIN_ORPHAN_AGE_SECONDS
    assert float(env[maintenance.ENV_RETENTION_DAYS]) * 86400 >= maintenance.MIN_SNAPSHOT_RETENTION_SECONDS
    assert int(env[maintenance.ENV_MIN_SNAPSHOTS]) >= 1
    # pyiceberg: the same layers as Finalize (the pyiceberg layer, not the Powertools one).
    layers = json.dumps(p["Layers"])
    assert "IcebergLayer" in layers and "Powertools" not in layers
    log_group = resources(template)[ref_id(p["LoggingConfig"]["LogGroup"])]
    assert props(log_group)["RetentionInDays"] == 30


@pytest.mark.parametrize("stack", STACKS)
def test_TBL6_daily_schedule_targets_the_function_with_retries_and_a_dlq(
    templates: dict[str, Any], stack: str
) -> None:
    template = templates[stack]
    fn_id, _ = function(template)
    rules = [
        r
        for r in resources(template, "AWS::Events::Rule").values()
        if any(ref_id(t["Arn"]) == fn_id for t in props(r).get("Targets", []))
    ]
    assert len(rules) == 1
    p = props(rules[0])
    assert p["ScheduleExpression"] == "cron(17 */6 * * ? *)"
    assert p.get("State", "ENABLED") == "ENABLED"
    (target,) = p["Targets"]
    assert json.loads(target["Input"]) == {"mode": "scheduled"}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 4
    assert "DeadLetterConfig" in target


def test_TBL6_maintenance_role_is_least_privilege(primary: dict[str, Any]) -> None:
    _, fn = function(primary)
    statements = [s for s in role_statements(primary, ref_id(props(fn)["Role"])) if s["Effect"] == "Allow"]
    actions = {a for s in statements for a in as_list(s["Action"])}
    assert not {a for a in actions if a.startswith(("dynamodb:", "states:", "sns:", "ssm:"))}
    glue = [s for s in statements if as_list(s["Action"])[0].startswith("glue:")]
    on_tables = next(s for s in glue if "glue:UpdateTable" in as_list(s["Action"]))
    assert sorted(as_list(on_tables["Action"])) == ["glue:GetTable", "glue:UpdateTable"]
    tables = sorted(literal_text(r).rsplit(":", 1)[-1] for r in as_list(on_tables["Resource"]))
    assert tables == sorted(
        ["catalog", f"database/{DATABASE}", *(f"table/{DATABASE}/{t}" for t in contracts.DATASET_TABLES)]
    )
    s3 = [s for s in statements if as_list(s["Action"])[0].startswith("s3:")]
    objects = next(s for s in s3 if "s3:DeleteObject" in as_list(s["Action"]))
    assert sorted(as_list(objects["Action"])) == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    assert [literal_text(r) for r in as_list(objects["Resource"])] == ["<ref>/tables/*"]
    listing = next(s for s in s3 if "s3:ListBucket" in as_list(s["Action"]))
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["tables/*"]}}


@pytest.mark.parametrize("stack", STACKS)
def test_TBL6_a_failed_maintenance_run_pages(templates: dict[str, Any], stack: str) -> None:
    template = templates[stack]
    fn_id, _ = function(template)
    alarms = [
        a
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
        if props(a).get("MetricName") == "Errors"
        and any(ref_id(d["Value"]) == fn_id for d in props(a).get("Dimensions", []))
    ]
    assert len(alarms) == 1
    p = props(alarms[0])
    assert (p["Threshold"], p["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert "AlertTopic" in json.dumps(p["AlarmActions"])


def test_TBL6_the_orphan_floor_outlasts_any_in_flight_load() -> None:
    # A data file is unreferenced from ProcessChunk's write until Finalize commits (at most an
    # execution), or until the sweep deletes a lost execution's data.
    assert maintenance.MIN_ORPHAN_AGE_SECONDS > contracts.STALE_UNKNOWN_EXECUTION_SECONDS
    assert maintenance.MIN_ORPHAN_AGE_SECONDS > contracts.EXECUTION_TIMEOUT_SECONDS
    assert maintenance.ORPHAN_AGE_SECONDS >= maintenance.MIN_ORPHAN_AGE_SECONDS
