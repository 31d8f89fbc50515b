"""TBL1: local mode enforces IAM. A grant the pipeline needs, removed from the deployed role,
makes the local pipeline fail the file with AWS's AccessDenied, as the deployment would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from etl_local import iam
from etl_local.datagen import generate_csv

from .conftest import Stack

pytestmark = pytest.mark.e2e


def _without(stack: Stack, role_arn: str, action: str, resource_part: str) -> None:
    """Remove ``action`` on resources containing ``resource_part`` from the deployed role (the
    template's statements, an inline policy of the role in the emulator's IAM)."""
    statements = iam.ROLES.statements(role_arn)
    assert statements is not None, role_arn
    kept: list[dict[str, Any]] = []
    removed = 0
    for s in statements:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        if action in actions and any(resource_part in r for r in resources):
            removed += 1
            others = [a for a in actions if a != action]
            if others:
                kept.append({**s, "Action": others})
            narrower = [r for r in resources if resource_part not in r]
            if narrower:
                kept.append({**s, "Action": action, "Resource": narrower})
            continue
        kept.append(s)
    assert removed, f"{role_arn} has no {action} on *{resource_part}*"
    # Through the IAM API, as an operator would edit the deployed role on AWS.
    stack.pipeline.client("iam").put_role_policy(
        RoleName=role_arn.rsplit("/", 1)[1],
        PolicyName=iam.TEMPLATE_POLICY,
        PolicyDocument=iam.policy_document(kept),
    )


def _role_of(stack: Stack, step: str) -> str:
    lam = stack.pipeline.client("lambda")
    return str(lam.get_function_configuration(FunctionName=stack.outputs.functions[step])["Role"])


def _upload(stack: Stack, tmp_path: Path) -> Any:
    path = tmp_path / "day.csv"
    generate_csv(path, rows=400, seed=5, bad_row_share=0.0)
    return stack.upload(path, "default")


def test_TBL1_enforcement_is_on_in_every_e2e_stack(stack: Stack) -> None:
    assert iam.enforcing()
    assert iam.ROLES.statements(_role_of(stack, "Finalize"))


def test_TBL1_a_function_missing_a_grant_fails_the_file_with_AccessDenied(
    stack: Stack, tmp_path: Path
) -> None:
    """Finalize without s3:PutObject on manifests/: the manifest write is refused, the file
    fails in Finalize with the message AWS gives."""
    role = _role_of(stack, "Finalize")
    _without(stack, role, "s3:PutObject", "/manifests/")
    rep = stack.wait(_upload(stack, tmp_path)["file_id"])
    assert rep.status == "FAILED"
    error = rep.error or ""
    assert "AccessDenied" in error, error
    role_name = role.rsplit("/", 1)[1]
    assert f"assumed-role/{role_name}/{stack.outputs.functions['Finalize']} is not authorized" in error
    assert "s3:PutObject on resource: arn:aws:s3:::" in error and "/manifests/" in error


def test_TBL1_the_state_machine_missing_a_grant_fails_the_execution(stack: Stack, tmp_path: Path) -> None:
    """The state machine's role without lambda:InvokeFunction on Finalize: the Task's call is
    refused by the Step Functions integration itself (moto's parser), as on AWS."""
    sfn = stack.pipeline.client("stepfunctions")
    role = sfn.describe_state_machine(stateMachineArn=stack.outputs.state_machine_arn)["roleArn"]
    _without(stack, role, "lambda:InvokeFunction", stack.outputs.functions["Finalize"])
    info = _upload(stack, tmp_path)
    execs = stack.wait_all_executions_stopped(1)
    assert stack.calls("Finalize") == []
    history = sfn.get_execution_history(executionArn=execs[0]["executionArn"], maxResults=1000)["events"]
    role_name = role.rsplit("/", 1)[1]
    refusal = (
        f"User: arn:aws:sts::123456789012:assumed-role/{role_name}/StepFunctions is not authorized to "
        f"perform: lambda:InvokeFunction on resource: arn:aws:lambda:us-east-1:123456789012:function:"
        f"{stack.outputs.functions['Finalize']}"
    )
    assert refusal in repr(history)
    # The Task's Catch sends the file to MarkFailed (moto's parser names the error "Exception"
    # where AWS says Lambda.AWSLambdaException; the cause is AWS's message).
    rep = stack.wait(info["file_id"])
    assert rep.status == "FAILED" and refusal in (rep.error or "")
