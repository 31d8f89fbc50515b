"""TBL1: the local IAM evaluator (etl_local/iam.py) decides as AWS does, and the emulator's
hooks refuse a call the calling function's role does not allow, like AWS refuses it."""

from __future__ import annotations

import concurrent.futures
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

# Local mode is the developer's tool: it runs on the project's Python (3.11+), not on the 3.9
# Lambda runtime that `make test-runtimes` also checks etl/ on.
if sys.version_info < (3, 10):
    pytest.skip("etl_local runs on Python 3.10+", allow_module_level=True)

from etl_local import iam
from etl_local.iam import Need

BUCKET = "arn:aws:s3:::data"


def _allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def test_TBL1_explicit_deny_beats_any_allow() -> None:
    need = Need("s3:GetObject", f"{BUCKET}/output/a.parquet")
    statements = [
        _allow("s3:*"),
        {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"{BUCKET}/output/*"},
        _allow("s3:GetObject", f"{BUCKET}/output/*"),
    ]
    assert iam.evaluate(statements, need) == iam.EXPLICIT_DENY
    assert iam.evaluate(statements[:1] + statements[2:], need) == iam.ALLOW
    assert iam.evaluate([], need) == iam.IMPLICIT_DENY


def test_TBL1_not_action_and_not_resource() -> None:
    everything_but_delete = {"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": f"{BUCKET}/*"}
    assert iam.is_allowed([everything_but_delete], Need("s3:PutObject", f"{BUCKET}/k"))
    assert not iam.is_allowed([everything_but_delete], Need("s3:DeleteObject", f"{BUCKET}/k"))
    outside_output = {"Effect": "Allow", "Action": "s3:GetObject", "NotResource": f"{BUCKET}/output/*"}
    assert iam.is_allowed([outside_output], Need("s3:GetObject", f"{BUCKET}/scratch/k"))
    assert not iam.is_allowed([outside_output], Need("s3:GetObject", f"{BUCKET}/output/k"))
    deny_outside = {"Effect": "Deny", "Action": "*", "NotResource": f"{BUCKET}/output/*"}
    statements = [_allow("s3:GetObject"), deny_outside]
    assert iam.evaluate(statements, Need("s3:GetObject", f"{BUCKET}/scratch/k")) == iam.EXPLICIT_DENY
    assert iam.evaluate(statements, Need("s3:GetObject", f"{BUCKET}/output/k")) == iam.ALLOW


def test_TBL1_wildcards_actions_ignore_case_resources_do_not() -> None:
    assert iam.is_allowed([_allow("S3:getobject*")], Need("s3:GetObjectVersion", f"{BUCKET}/k"))
    assert iam.is_allowed([_allow("dynamodb:?etItem")], Need("dynamodb:GetItem", "t"))
    assert not iam.is_allowed([_allow("dynamodb:?etItem")], Need("dynamodb:BatchGetItem", "t"))
    assert not iam.is_allowed(
        [_allow("s3:GetObject", f"{BUCKET}/Output/*")], Need("s3:GetObject", f"{BUCKET}/output/k")
    )
    # `[` is literal in IAM (fnmatch would read a character class).
    assert not iam.is_allowed([_allow("s3:GetObject", f"{BUCKET}/[ab]")], Need("s3:GetObject", f"{BUCKET}/a"))
    assert iam.is_allowed([_allow("s3:GetObject", f"{BUCKET}/[ab]")], Need("s3:GetObject", f"{BUCKET}/[ab]"))
    # `*` spans slashes.
    assert iam.is_allowed(
        [_allow("s3:GetObject", f"{BUCKET}/output/*")], Need("s3:GetObject", f"{BUCKET}/output/a/b/c")
    )


def test_TBL1_s3_prefix_conditions() -> None:
    like = _allow("s3:ListBucket", BUCKET, Condition={"StringLike": {"s3:prefix": ["scratch/*", "output/*"]}})
    assert iam.is_allowed([like], Need("s3:ListBucket", BUCKET, "scratch/abc/"))
    assert not iam.is_allowed([like], Need("s3:ListBucket", BUCKET, "manifests/"))
    assert not iam.is_allowed([like], Need("s3:ListBucket", BUCKET, ""))  # the whole bucket
    assert not iam.is_allowed([like], Need("s3:ListBucket", BUCKET))  # no prefix key at all
    equals = _allow("s3:ListBucket", BUCKET, Condition={"StringEquals": {"s3:prefix": "scratch/*"}})
    assert not iam.is_allowed([equals], Need("s3:ListBucket", BUCKET, "scratch/abc/"))  # no wildcards
    assert iam.is_allowed([equals], Need("s3:ListBucket", BUCKET, "scratch/*"))
    not_like = _allow("s3:ListBucket", BUCKET, Condition={"StringNotLike": {"s3:prefix": "tables/*"}})
    assert iam.is_allowed([not_like], Need("s3:ListBucket", BUCKET, "output/"))
    assert not iam.is_allowed([not_like], Need("s3:ListBucket", BUCKET, "tables/x"))
    assert iam.is_allowed([not_like], Need("s3:ListBucket", BUCKET))  # absent key: negation holds
    passed = _allow(
        "iam:PassRole", "arn:r", Condition={"StringEquals": {"iam:PassedToService": "s3.amazonaws.com"}}
    )
    assert iam.is_allowed(
        [passed], Need("iam:PassRole", "arn:r", keys=(("iam:PassedToService", "s3.amazonaws.com"),))
    )
    assert not iam.is_allowed([passed], Need("iam:PassRole", "arn:r"))


@pytest.mark.parametrize(
    "condition",
    [
        {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
        {"StringLike": {"aws:PrincipalTag/team": "etl"}},
        {"StringEqualsIfExists": {"s3:prefix": "x"}},
        {"Bool": {"aws:SecureTransport": "true"}},
    ],
)
def test_TBL1_an_unsupported_condition_fails_loudly(condition: dict[str, Any]) -> None:
    statement = _allow("s3:ListBucket", BUCKET, Condition=condition)
    with pytest.raises(iam.UnsupportedCondition, match="not supported by the local evaluator"):
        iam.evaluate([statement], Need("s3:ListBucket", BUCKET, "x/"))
    # ... also when the statement would not match anyway (a Deny must never be skipped silently)
    deny = {"Effect": "Deny", "Action": "s3:ListBucket", "Resource": BUCKET, "Condition": condition}
    with pytest.raises(iam.UnsupportedCondition):
        iam.evaluate([deny], Need("s3:ListBucket", BUCKET, "x/"))


def test_TBL1_every_condition_in_the_synthesized_templates_is_evaluated() -> None:
    """The operators and keys the project's roles use are all supported (else local mode would
    fail on them): primary and DR stack."""
    from etl_local.deploy import LOCAL_SUFFIX, synth_primary_template

    seen = set()
    for dr in (False, True):
        template = synth_primary_template(LOCAL_SUFFIX, dr=dr)
        for lid, spec in template["Resources"].items():
            if spec["Type"] != "AWS::IAM::Role":
                continue
            statements = iam.role_statements(template, lid, lambda v: v)
            for s in statements:
                for operator, block in (s.get("Condition") or {}).items():
                    seen |= {(operator, key) for key in block}
                iam._conditions_hold(s, {})  # raises UnsupportedCondition if not
    assert ("StringLike", "s3:prefix") in seen


def test_TBL1_needs_map_calls_to_what_aws_authorizes() -> None:
    copy = iam.Call(
        "X",
        "s3",
        "CopyObject",
        {"Bucket": "b", "Key": "processed/k", "CopySource": "b/incoming/k?versionId=v1"},
    )
    assert set(iam.needs(copy)) == {
        Need("s3:PutObject", "arn:aws:s3:::b/processed/k"),
        Need("s3:PutObjectTagging", "arn:aws:s3:::b/processed/k"),
        Need("s3:GetObjectVersion", "arn:aws:s3:::b/incoming/k"),
        Need("s3:GetObjectVersionTagging", "arn:aws:s3:::b/incoming/k"),
    }
    tx = iam.Call(
        "X",
        "dynamodb",
        "TransactWriteItems",
        {"TransactItems": [{"Update": {"TableName": "t"}}, {"ConditionCheck": {"TableName": "u"}}]},
    )
    assert iam.needs(tx) == [
        Need("dynamodb:UpdateItem", "arn:aws:dynamodb:us-east-1:123456789012:table/t"),
        Need("dynamodb:ConditionCheckItem", "arn:aws:dynamodb:us-east-1:123456789012:table/u"),
    ]
    invoke = iam.Call("SM", "lambda", "Invoke", {"FunctionName": "etl-finalize-local"}, region="eu-west-1")
    assert iam.needs(invoke) == [
        Need("lambda:InvokeFunction", "arn:aws:lambda:eu-west-1:123456789012:function:etl-finalize-local")
    ]
    with pytest.raises(iam.UnknownCall):
        iam.needs(iam.Call("X", "s3", "PutBucketPolicy", {"Bucket": "b"}))


# ---- the hooks on the handlers' clients -----------------------------------------------------

ROLE = "arn:aws:iam::123456789012:role/fn-role"
FN = iam.Principal(ROLE, "etl-fn-local")


def _put_policy(statements: list[dict[str, Any]]) -> None:
    """The role's policy in the emulator's IAM, where the deploy puts it (etl_local/deploy.py)."""
    boto3.client("iam").put_role_policy(
        RoleName="fn-role", PolicyName=iam.TEMPLATE_POLICY, PolicyDocument=iam.policy_document(statements)
    )


@pytest.fixture
def enforced(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """IAM enforcement installed (as the emulator installs it) on moto's in-process mock."""
    from etl.aws import clients

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="data")
        iam.install()
        try:
            boto3.client("iam").create_role(RoleName="fn-role", AssumeRolePolicyDocument="{}")
            _put_policy(
                [
                    _allow(["s3:GetObject", "s3:PutObject"], f"{BUCKET}/output/*"),
                    _allow("s3:ListBucket", BUCKET, Condition={"StringLike": {"s3:prefix": "output/*"}}),
                ]
            )
            yield clients.s3()
        finally:
            iam.uninstall()
            clients.reset_clients()


def test_TBL1_a_refused_call_fails_like_AWS(enforced: Any) -> None:
    with iam.acting_as(FN):
        enforced.put_object(Bucket="data", Key="output/a", Body=b"x")
        with pytest.raises(ClientError) as refused:
            enforced.put_object(Bucket="data", Key="processed/a", Body=b"x")
    error = refused.value.response
    assert error["Error"]["Code"] == "AccessDenied"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error["Error"]["Message"] == (
        "User: arn:aws:sts::123456789012:assumed-role/fn-role/etl-fn-local is not authorized to "
        "perform: s3:PutObject on resource: arn:aws:s3:::data/processed/a because no "
        "identity-based policy allows the s3:PutObject action"
    )
    # The operator (test/CLI code outside any function) is not subject to the roles.
    enforced.put_object(Bucket="data", Key="processed/a", Body=b"x")


def test_TBL1_a_missing_key_answers_403_without_list_permission(enforced: Any) -> None:
    _put_policy([*(iam.ROLES.statements(ROLE) or []), _allow("s3:GetObject", f"{BUCKET}/scratch/*")])
    with iam.acting_as(FN):
        with pytest.raises(ClientError) as listed:
            enforced.head_object(Bucket="data", Key="output/missing")
        assert listed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        with pytest.raises(ClientError) as unlisted:
            enforced.head_object(Bucket="data", Key="scratch/missing")
    assert unlisted.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_TBL1_calls_on_pool_threads_are_charged_to_the_submitting_function(enforced: Any) -> None:
    def write(key: str) -> Any:
        return enforced.put_object(Bucket="data", Key=key, Body=b"x")

    with iam.acting_as(FN), concurrent.futures.ThreadPoolExecutor(2) as pool:
        assert pool.submit(write, "output/p")
        with pytest.raises(ClientError, match="AccessDenied"):
            list(pool.map(write, ["processed/p"]))


def test_TBL1_handler_code_outside_any_invocation_is_not_silently_allowed(enforced: Any) -> None:
    from etl.handlers import common

    with pytest.raises(iam.Unattributed, match="outside any function invocation"):
        exec(  # code whose module is etl.handlers.*: what a handler's unattributed call looks like
            "client.put_object(Bucket='data', Key='processed/b', Body=b'x')",
            {"__name__": common.__name__, "client": enforced},
        )
    with iam.operator():
        exec(
            "client.put_object(Bucket='data', Key='processed/b', Body=b'x')",
            {"__name__": common.__name__, "client": enforced},
        )


def test_TBL1_a_role_the_emulator_does_not_know_is_refused(enforced: Any) -> None:
    ghost = iam.Principal("arn:aws:iam::123456789012:role/ghost", "fn")
    with iam.acting_as(ghost), pytest.raises(iam.Unattributed, match="not deployed"):
        enforced.put_object(Bucket="data", Key="output/a", Body=b"x")


def test_TBL1_the_state_machine_integrations_are_wrapped_while_enforced(enforced: Any) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_sqs,
    )

    assert lambda_eval_utils.boto_client_for is iam._state_machine_client
    assert state_task_service_sqs.boto_client_for is iam._state_machine_client


def test_TBL1_the_parser_patch_fails_loudly_if_moto_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.stepfunctions.parser.asl.utils import boto_client

    monkeypatch.setattr(boto_client, "boto_client_for", lambda region, service: None)
    with pytest.raises(iam.PatchTargetChanged, match="signature"):
        iam.check_patch_targets()
    monkeypatch.delattr(boto_client, "boto_client_for")
    with pytest.raises(iam.PatchTargetChanged, match="no longer exists"):
        iam.check_patch_targets()
