"""DR2/DR3 runtime switch in the synthesized templates: which functions read the region role,
with which default and grant; the workflow's Choices before the result message and the alert;
the announcement ledger write; no parameter resource (a deploy never flips the switch)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from etl import stack_outputs

from .conftest import DR, PRIMARY, SUFFIX
from .test_ops import _as_list, _role_statements
from .test_stack import definition, functions_by_step, props, ref_id, resources

PARAMETER = f"/transaction-etl/{SUFFIX}/region-role"
READERS = {"Finalize", "MarkFailed", "Reconcile"}


def test_DR3_parameter_name_is_the_shared_contract() -> None:
    assert stack_outputs.region_role_parameter(SUFFIX) == PARAMETER


@pytest.mark.parametrize(("stack", "default"), [(PRIMARY, "active"), (DR, "standby")])
def test_DR2_role_readers_get_parameter_default_and_grant(
    templates: dict[str, Any], stack: str, default: str
) -> None:
    template = templates[stack]
    for step, fn in functions_by_step(template).items():
        env = props(fn)["Environment"]["Variables"]
        statements = _role_statements(template, ref_id(props(fn)["Role"]))
        ssm = [s for s in statements if any(a.startswith("ssm:") for a in _as_list(s["Action"]))]
        if step not in READERS:
            assert not ssm, step  # (every function knows the name; only the readers may read it)
            continue
        assert env["REGION_ROLE_PARAMETER"] == PARAMETER, step
        assert env["DEFAULT_REGION_ROLE"] == default, step
        assert len(ssm) == 1 and _as_list(ssm[0]["Action"]) == ["ssm:GetParameter"], step
        # The one parameter, by ARN (no wildcard): parameter/transaction-etl/<suffix>/region-role
        assert f":parameter/transaction-etl/{SUFFIX}/region-role" in json.dumps(ssm[0]["Resource"]), step
    outputs = template["Outputs"]
    assert outputs[stack_outputs.REGION_ROLE_PARAMETER]["Value"] == PARAMETER


@pytest.mark.parametrize("stack", [PRIMARY, DR])
def test_DR3_cloudformation_does_not_own_the_switch(templates: dict[str, Any], stack: str) -> None:
    # A routine `cdk deploy` must never set the role: no SSM parameter resource in the stack.
    assert not resources(templates[stack], "AWS::SSM::Parameter")


@pytest.mark.parametrize("stack", [PRIMARY, DR])
def test_DR2_standby_skips_result_message_and_alert(templates: dict[str, Any], stack: str) -> None:
    states = definition(templates[stack])["States"]
    assert states["Finalize"]["Next"] == "ShouldAnnounce"
    announce = states["ShouldAnnounce"]
    assert announce["Type"] == "Choice" and announce["Default"] == "NotifyResult"
    assert announce["Choices"] == [
        {
            "And": [
                {"Variable": "$.result.announce", "IsPresent": True},
                {"Variable": "$.result.announce", "BooleanEquals": False},
            ],
            "Next": "NotAnnounced",
        }
    ]
    assert states["NotAnnounced"]["Type"] == "Succeed"  # the file SUCCEEDED either way
    assert states["MarkFailed"]["Next"] == "ShouldAlert"
    alert = states["ShouldAlert"]
    assert alert["Default"] == "AlertFailure"
    (choice,) = alert["Choices"]
    assert choice["Next"] == "FileFailed" and states["FileFailed"]["Type"] == "Fail"
    assert {"Variable": "$.failure.alert", "BooleanEquals": False} in choice["And"]


@pytest.mark.parametrize("stack", [PRIMARY, DR])
def test_DR3_ledger_marker_written_after_the_result_is_recorded(
    templates: dict[str, Any], stack: str
) -> None:
    template = templates[stack]
    states = definition(templates[stack])["States"]
    assert states["RecordNotified"]["Next"] == "RecordAnnounced"
    ledger = states["RecordAnnounced"]
    assert ledger["Resource"] == "arn:aws:states:::aws-sdk:s3:putObject"
    params = ledger["Parameters"]
    assert params["Key.$"] == "States.Format('announced/{}/{}.json', $.file.partner, $.file.file_id)"
    assert params["Body.$"] == "States.JsonToString($.result)"
    assert ledger["Catch"][0]["Next"] == "AnnouncedNotRecorded"
    assert states["AnnouncedNotRecorded"]["Type"] == "Fail"
    (machine,) = resources(template, "AWS::StepFunctions::StateMachine").values()
    role_id = ref_id(props(machine)["RoleArn"])
    puts = [s for s in _role_statements(template, role_id) if "s3:PutObject" in _as_list(s["Action"])]
    assert len(puts) == 1 and _as_list(puts[0]["Action"]) == ["s3:PutObject"]
    assert json.dumps(puts[0]["Resource"]).endswith('"/announced/*"]]}')
