"""DR1 / DR3 / INF2 (infrastructure side): replication both ways, its role, its alarms, the upload
access point, the region-role switch CloudFormation does not own, drActive retired."""

from __future__ import annotations

import json
from typing import Any

import pytest

from etl import contracts
from etl import stack_outputs as out
from infra.config import ConfigError

from .conftest import DR, PRIMARY, SUFFIX, Synth
from .test_stack import as_list, props, resources

ACCOUNT = "123456789012"
FORWARD_PREFIXES = {"incoming/", "processed/", "failed/", "manifests/", "announced/"}
REVERSE_PREFIXES = {"incoming/", "announced/"}
PRIMARY_BUCKET = f"etl-data-{SUFFIX}-{ACCOUNT}-us-east-1"
DR_BUCKET = f"etl-data-{SUFFIX}-{ACCOUNT}-eu-west-1"
INF11_DENY = {"s3:DeleteBucket", "dynamodb:DeleteTable"}


def text(value: Any) -> Any:
    """Resolve Fn::Join / pseudo parameters to plain text; other references become <Id.Attr>."""
    if isinstance(value, list):
        return [text(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(str(text(p)) for p in parts)
    if "Ref" in value:
        return {"AWS::AccountId": ACCOUNT, "AWS::Partition": "aws", "AWS::Region": "<region>"}.get(
            value["Ref"], f"<{value['Ref']}>"
        )
    if "Fn::GetAtt" in value:
        return "<{}.{}>".format(*value["Fn::GetAtt"])
    return {k: text(v) for k, v in value.items()}


def arn(bucket: str, key: str = "") -> str:
    return f"arn:aws:s3:::{bucket}" + (f"/{key}" if key else "")


def data_bucket_id(template: dict[str, Any]) -> str:
    (lid,) = [
        lid
        for lid, r in resources(template, "AWS::S3::Bucket").items()
        if text(props(r)["BucketName"]).startswith("etl-data-")
    ]
    return lid


def role_by_description(template: dict[str, Any], start: str) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (lid, r)
        for lid, r in resources(template, "AWS::IAM::Role").items()
        if str(props(r).get("Description", "")).startswith(start)
    ]
    return found


def check_rule(rule: dict[str, Any], destination_bucket: str) -> str:
    assert rule["Status"] == "Enabled"
    assert rule["DeleteMarkerReplication"] == {"Status": "Disabled"}
    destination = rule["Destination"]
    assert destination["Bucket"] == arn(destination_bucket)
    assert destination["ReplicationTime"] == {"Status": "Enabled", "Time": {"Minutes": 15}}
    assert destination["Metrics"] == {"Status": "Enabled", "EventThreshold": {"Minutes": 15}}
    prefix: str = rule["Filter"]["Prefix"]
    assert set(rule["Filter"]) == {"Prefix"}
    return prefix


# ---- DR1: what replicates ----------------------------------------------------------------------
def test_DR1_forward_rules_replicate_every_prefix_to_eu_west_1_with_rtc_and_metrics(
    primary: dict[str, Any],
) -> None:
    config = text(props(resources(primary)[data_bucket_id(primary)])["ReplicationConfiguration"])
    rules = config["Rules"]
    prefixes = [check_rule(rule, DR_BUCKET) for rule in rules]
    assert sorted(prefixes) == sorted(FORWARD_PREFIXES)
    assert [r["Id"] for r in rules] == ["replicate-" + p.rstrip("/") for p in prefixes]
    assert len({r["Priority"] for r in rules}) == len(rules)
    forward_id, _ = role_by_description(primary, "S3 replication us-east-1")
    assert config["Role"] == f"<{forward_id}.Arn>"


def reverse_rules(primary: dict[str, Any]) -> dict[str, Any]:
    """The custom resource that puts the reverse rules (DR7 adds another Custom::AWS)."""
    (resource,) = [
        r for lid, r in resources(primary, "Custom::AWS").items() if lid.startswith("ReplicationReverse")
    ]
    return resource


def reverse_call(primary: dict[str, Any], phase: str) -> dict[str, Any]:
    resource = reverse_rules(primary)
    call: dict[str, Any] = json.loads(text(props(resource)[phase]))
    return call


def test_DR1_reverse_rules_put_incoming_and_announced_back_from_eu_west_1(primary: dict[str, Any]) -> None:
    for phase in ("Create", "Update"):
        call = reverse_call(primary, phase)
        assert (call["service"], call["action"], call["region"]) == (
            "S3",
            "putBucketReplication",
            "eu-west-1",
        )
        assert call["parameters"]["Bucket"] == DR_BUCKET
        rules = call["parameters"]["ReplicationConfiguration"]["Rules"]
        assert sorted(check_rule(rule, PRIMARY_BUCKET) for rule in rules) == sorted(REVERSE_PREFIXES)
        assert all(r["ID"] == "replicate-" + r["Filter"]["Prefix"].rstrip("/") for r in rules)
        reverse_id, _ = role_by_description(primary, "S3 replication eu-west-1")
        assert call["parameters"]["ReplicationConfiguration"]["Role"] == f"<{reverse_id}.Arn>"
    delete = reverse_call(primary, "Delete")
    assert (delete["action"], delete["region"], delete["parameters"]) == (
        "deleteBucketReplication",
        "eu-west-1",
        {"Bucket": DR_BUCKET},
    )
    # The destination (the primary bucket) exists before the rule is put.
    resource = reverse_rules(primary)
    assert data_bucket_id(primary) in resource.get("DependsOn", [])


def test_DR1_dr_stack_never_touches_replication_and_primary_deploys_after_it(
    dr: dict[str, Any], default_synth: Synth
) -> None:
    """The DR template holds no replication, so deploying it leaves the reverse rules alone; the
    primary (owner of every cross-region link) depends on the DR stack, whose bucket S3 needs."""
    assert "ReplicationConfiguration" not in props(resources(dr)[data_bucket_id(dr)])
    # Its one SDK call is DR7's (alarm actions off at creation), never replication.
    calls = [json.loads(text(props(r)["Create"]))["action"] for r in resources(dr, "Custom::AWS").values()]
    assert calls == ["disableAlarmActions"]
    assert not resources(dr, "AWS::S3::MultiRegionAccessPoint")
    primary_artifact = default_synth.assembly.get_stack_by_name(PRIMARY)
    assert DR in [d.id for d in primary_artifact.dependencies]
    dr_artifact = default_synth.assembly.get_stack_by_name(DR)
    assert PRIMARY not in [d.id for d in dr_artifact.dependencies]


# ---- DR1: the replication roles ----------------------------------------------------------------
def allow_statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        s
        for p in props(role).get("Policies", [])
        for s in p["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow"
    ]


def grants(statements: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (action, resource)
        for s in statements
        for action in as_list(s["Action"])
        for resource in as_list(text(s["Resource"]))
    }


@pytest.mark.parametrize(
    ("direction", "source", "destination", "prefixes"),
    [
        ("us-east-1", PRIMARY_BUCKET, DR_BUCKET, FORWARD_PREFIXES),
        ("eu-west-1", DR_BUCKET, PRIMARY_BUCKET, REVERSE_PREFIXES),
    ],
)
def test_DR1_INF11_replication_role_is_least_privilege_with_the_deny(
    primary: dict[str, Any], direction: str, source: str, destination: str, prefixes: set[str]
) -> None:
    role_id, role = role_by_description(primary, f"S3 replication {direction}")
    expected = {(a, arn(source)) for a in ("s3:GetReplicationConfiguration", "s3:ListBucket")}
    expected |= {
        (a, arn(source, p + "*"))
        for a in ("s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging")
        for p in prefixes
    }
    expected |= {
        (a, arn(destination, p + "*")) for a in ("s3:ReplicateObject", "s3:ReplicateTags") for p in prefixes
    }
    # Exactly these: any widened action, resource or condition-free extra statement fails here.
    assert grants(allow_statements(role)) == expected
    assert all("Condition" not in s for s in allow_statements(role))
    # Nothing else grants to the role: no managed policies, no separate AWS::IAM::Policy.
    assert not props(role).get("ManagedPolicyArns")
    attached = [
        p
        for p in resources(primary, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in props(p).get("Roles", [])
    ]
    assert attached == []
    # Only S3, for this account's source bucket, may assume it.
    (trust,) = props(role)["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "s3.amazonaws.com"}
    assert text(trust["Condition"]) == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": arn(source)},
    }
    denies = [
        s for p in props(role)["Policies"] for s in p["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
    ]
    assert any(set(as_list(d["Action"])) >= INF11_DENY and d["Resource"] == "*" for d in denies)


def test_DR1_reverse_rule_writer_may_only_put_that_configuration_and_pass_that_role(
    primary: dict[str, Any],
) -> None:
    reverse_id, _ = role_by_description(primary, "S3 replication eu-west-1")
    resource = reverse_rules(primary)
    (mrap_id,) = resources(primary, "AWS::S3::MultiRegionAccessPoint")
    function = resources(primary)[props(resource)["ServiceToken"]["Fn::GetAtt"][0]]
    writer_role_id = props(function)["Role"]["Fn::GetAtt"][0]
    statements = [
        s
        for p in resources(primary, "AWS::IAM::Policy").values()
        if {"Ref": writer_role_id} in props(p)["Roles"]
        for s in props(p)["PolicyDocument"]["Statement"]
    ]
    assert grants(statements) == {
        ("s3:PutReplicationConfiguration", arn(DR_BUCKET)),
        ("iam:PassRole", f"<{reverse_id}.Arn>"),
        # DR7: the same (stack-singleton) function submits the initial access point routes.
        ("s3:SubmitMultiRegionAccessPointRoutes", f"arn:aws:s3::{ACCOUNT}:accesspoint/<{mrap_id}.Alias>"),
    }
    (pass_role,) = [s for s in statements if s["Action"] == "iam:PassRole"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "s3.amazonaws.com"}}
    writer_role = resources(primary)[writer_role_id]
    denies = [
        s
        for p in props(writer_role)["Policies"]
        for s in p["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny"
    ]
    assert any(set(as_list(d["Action"])) >= INF11_DENY for d in denies)


# ---- DR1: lag metric and alarms ----------------------------------------------------------------
def alarm(template: dict[str, Any], what: str) -> dict[str, Any]:
    (found,) = [
        props(r)
        for r in resources(template, "AWS::CloudWatch::Alarm").values()
        if props(r)["AlarmName"] == f"etl-alarm-{SUFFIX}-{what}"
    ]
    return found


@pytest.mark.parametrize(
    ("stack", "source", "destination", "prefixes"),
    [
        (PRIMARY, PRIMARY_BUCKET, DR_BUCKET, FORWARD_PREFIXES),
        (DR, DR_BUCKET, PRIMARY_BUCKET, REVERSE_PREFIXES),
    ],
)
def test_DR1_replication_lag_and_failures_alarm_to_the_alert_topic_in_the_source_region(
    templates: dict[str, Any], stack: str, source: str, destination: str, prefixes: set[str]
) -> None:
    template = templates[stack]
    (topic_id,) = resources(template, "AWS::SNS::Topic")
    for what, metric_name, stat, threshold in (
        ("replicationlatency", "ReplicationLatency", "Maximum", 900),
        ("replicationfailed", "OperationsFailedReplication", "Sum", 1),
    ):
        found = alarm(template, what)
        assert found["AlarmActions"] == [{"Ref": topic_id}], what
        assert found["Threshold"] == threshold
        assert found["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        (expression,) = [m for m in found["Metrics"] if "Expression" in m]
        stats = [m["MetricStat"] for m in found["Metrics"] if "MetricStat" in m]
        assert sorted(expression["Expression"].split("(", 1)[1].strip("[])").split(", ")) == sorted(
            m["Id"] for m in found["Metrics"] if "MetricStat" in m
        )
        rules = set()
        for s in stats:
            assert (s["Metric"]["Namespace"], s["Metric"]["MetricName"], s["Stat"]) == (
                "AWS/S3",
                metric_name,
                stat,
            )
            dims = {d["Name"]: text(d["Value"]) for d in s["Metric"]["Dimensions"]}
            assert (dims["SourceBucket"], dims["DestinationBucket"]) == (source, destination)
            rules.add(dims["RuleId"])
        assert rules == {"replicate-" + p.rstrip("/") for p in prefixes}
    dashboard = json.dumps(
        text(props(next(iter(resources(template, "AWS::CloudWatch::Dashboard").values()))))
    )
    for metric_name in ("ReplicationLatency", "OperationsPendingReplication", "OperationsFailedReplication"):
        assert metric_name in dashboard


# ---- DR3: the upload access point --------------------------------------------------------------
def test_DR3_one_multi_region_access_point_over_both_buckets(primary: dict[str, Any]) -> None:
    (mrap,) = resources(primary, "AWS::S3::MultiRegionAccessPoint").values()
    p = props(mrap)
    assert p["Name"] == f"etl-uploads-{SUFFIX}"
    assert p["Regions"] == [
        {"Bucket": {"Ref": data_bucket_id(primary)}},
        {"Bucket": p["Regions"][1]["Bucket"]},
    ]
    assert text(p["Regions"][1]["Bucket"]) == DR_BUCKET
    assert p["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    # Routing is not a CloudFormation property (etl dr promote/demote set it at run time).
    assert set(p) == {"Name", "Regions", "PublicAccessBlockConfiguration"}


def test_DR3_SEC1_access_point_has_no_policy_without_partners(primary: dict[str, Any]) -> None:
    # SEC1: the policy names each partner's role (tests/infra/test_dr_sec.py); with no partner
    # in context there is none, so S3 refuses every request through the access point.
    assert not resources(primary, "AWS::S3::MultiRegionAccessPointPolicy")
    assert contracts.INCOMING_PREFIX == "incoming/"


@pytest.mark.parametrize("stack", [PRIMARY, DR])
def test_DR3_outputs_give_the_cli_the_switch_peer_and_access_point(
    templates: dict[str, Any], stack: str
) -> None:
    outputs = {k: text(v["Value"]) for k, v in templates[stack]["Outputs"].items()}
    is_primary = stack == PRIMARY
    assert outputs[out.REGION_ROLE_PARAMETER] == out.region_role_parameter_name(SUFFIX)
    assert outputs[out.REGION_ROLE_PARAMETER] == f"/transaction-etl/{SUFFIX}/region-role"
    assert outputs[out.DEFAULT_REGION_ROLE] == ("active" if is_primary else "standby")
    assert outputs[out.PEER_REGION] == ("eu-west-1" if is_primary else "us-east-1")
    assert outputs[out.PEER_BUCKET_NAME] == (DR_BUCKET if is_primary else PRIMARY_BUCKET)
    assert outputs[out.UPLOAD_ACCESS_POINT_NAME] == f"etl-uploads-{SUFFIX}"
    if is_primary:
        (mrap_id,) = resources(templates[stack], "AWS::S3::MultiRegionAccessPoint")
        assert outputs[out.UPLOAD_ACCESS_POINT_ALIAS] == f"<{mrap_id}.Alias>"
        assert outputs[out.UPLOAD_ACCESS_POINT_ARN] == f"arn:aws:s3::{ACCOUNT}:accesspoint/<{mrap_id}.Alias>"
    else:
        assert out.UPLOAD_ACCESS_POINT_ALIAS not in outputs


# ---- DR3: the region-role switch is not CloudFormation's --------------------------------------
@pytest.mark.parametrize("stack", [PRIMARY, DR])
def test_DR3_region_role_parameter_is_not_owned_by_cloudformation(
    templates: dict[str, Any], stack: str
) -> None:
    """No SSM parameter and no custom resource sets the switch: a routine deploy cannot flip it.
    Functions get its name and their region's default (used while the parameter is absent)."""
    template = templates[stack]
    name = out.region_role_parameter_name(SUFFIX)
    assert not resources(template, "AWS::SSM::Parameter")
    for lid, resource in resources(template).items():
        if (
            resource["Type"].startswith("Custom::")
            or resource["Type"] == "AWS::CloudFormation::CustomResource"
        ):
            assert name not in json.dumps(resource), lid
    functions = [
        r
        for r in resources(template, "AWS::Lambda::Function").values()
        if str(props(r).get("Handler", "")).startswith("etl.handlers.")
    ]
    assert len(functions) >= len(contracts.ALL_FUNCTIONS)
    default = "active" if stack == PRIMARY else "standby"
    for function in functions:
        env = props(function)["Environment"]["Variables"]
        if props(function)["Handler"] == "etl.handlers.ensure_tables.handler":
            continue
        assert (env["REGION_ROLE_PARAMETER"], env["DEFAULT_REGION_ROLE"]) == (name, default)


# ---- drActive retired --------------------------------------------------------------------------
def test_DR3_synth_with_drActive_fails_with_the_replacement_command() -> None:
    from infra.application import build_app

    with pytest.raises(ConfigError, match="etl dr promote"):
        build_app({"environmentSuffix": SUFFIX, "drActive": "true"}, policy_checks=False)
