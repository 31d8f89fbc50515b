"""INF13: cdk-nag (AwsSolutions + Serverless) and cfn-lint on the synthesized templates."""

from __future__ import annotations

import json
import tempfile
from typing import Any

import pytest
from cfnlint.api import lint

from infra.template_tools import placeholder_resolver, with_resolved_definitions

from .conftest import DR, PRIMARY, SUFFIX, Synth

ACK_KEY = "aws:cdk:acknowledged-rules"


def test_INF13_cdk_nag_zero_unacknowledged_findings(default_synth: Synth) -> None:
    # cdk-nag 3 runs as a policy-validation plugin: a finding makes app.synth() raise, so the
    # fixture synthesizing at all is the main assertion; the report must also be clean.
    report = json.loads((default_synth.outdir / "validation-report.json").read_text())
    for plugin in report["pluginReports"]:
        assert plugin["conclusion"] == "success", plugin["pluginName"]
        assert [
            v for v in plugin["violations"] if v["ruleName"].startswith(("AwsSolutions", "Serverless"))
        ] == []


def test_INF13_cdk_nag_really_fails_on_a_new_finding() -> None:
    """The check can fail: an unacknowledged wildcard grant breaks the synth."""
    from aws_cdk import aws_iam as iam

    from infra.application import build_app

    app = build_app({"environmentSuffix": SUFFIX}, outdir=tempfile.mkdtemp(prefix="etl-nag-neg-"))
    stack = app.node.find_child(PRIMARY)
    role = iam.Role(stack, "Sloppy", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    role.add_to_policy(iam.PolicyStatement(actions=["s3:*"], resources=["*"]))
    with pytest.raises(Exception, match=r"AwsSolutions-IAM5"):
        app.synth()


def acknowledgements(default_synth: Synth) -> list[tuple[str, str, str]]:
    found = []
    for construct in default_synth.app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == ACK_KEY:
                found += [(construct.node.path, rule, reason) for rule, reason in entry.data.items()]
    return found


def test_INF13_every_acknowledgement_is_specific_and_reasoned(default_synth: Synth) -> None:
    acks = acknowledgements(default_synth)
    assert acks
    for path, rule, reason in acks:
        assert rule.startswith(("AwsSolutions::AwsSolutions-", "Serverless::Serverless-")), (path, rule)
        assert len(reason) >= 40, (path, rule)
        # No stack-wide acknowledgement: each sits on the construct that has the finding.
        assert path.count("/") >= 2, (path, rule)
        if "IAM5" in rule:
            assert "[" in rule, f"IAM5 acknowledged without naming the finding at {path}"


@pytest.mark.parametrize("stack", [PRIMARY, DR])
def test_INF13_cfn_lint_zero_errors_and_warnings_with_resolved_definition(
    templates: dict[str, Any], stack: str
) -> None:
    region = "eu-west-1" if stack == DR else "us-east-1"
    template = with_resolved_definitions(
        templates[stack], placeholder_resolver(templates[stack], region=region)
    )
    matches = lint(json.dumps(template), regions=[region])
    assert [str(m) for m in matches] == []


def test_INF13_cfn_lint_sees_inside_the_resolved_definition(primary: dict[str, Any]) -> None:
    """Guard: a broken state in the resolved Definition is reported (cfn-lint really looks)."""
    template = with_resolved_definitions(primary, placeholder_resolver(primary))
    machine = next(
        r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"
    )
    machine["Properties"]["Definition"]["States"]["ProcessChunks"]["MaxConcurrency"] = "ten"
    matches = lint(json.dumps(template), regions=["us-east-1"])
    assert any(m.rule.id == "E3601" and "ten" in str(m) for m in matches), [str(m) for m in matches]
