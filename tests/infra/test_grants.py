"""INF6/INF8: grants that no handler call exercises in the IAM coverage test, checked on the
synthesized template: each function's role writes its own log group, and every role that may
publish to a KMS-encrypted topic may use that topic's key (else SNS refuses the publish on AWS
while moto, which ignores IAM and KMS, accepts it)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import DR, PRIMARY
from .test_stack import as_list, props, ref_id, resources, role_statements

STACKS = (PRIMARY, DR)


def _allows(statements: list[dict[str, Any]], action: str, resource: Any) -> bool:
    return any(
        s["Effect"] == "Allow" and action in as_list(s["Action"]) and resource in as_list(s["Resource"])
        for s in statements
    )


def _role_id(arn: Any) -> str:
    return str(arn["Fn::GetAtt"][0])


@pytest.mark.parametrize("stack", STACKS)
def test_INF6_every_function_may_write_its_own_log_group(templates: dict[str, Any], stack: str) -> None:
    template = templates[stack]
    checked = 0
    for fn_id, fn in resources(template, "AWS::Lambda::Function").items():
        log_group = props(fn).get("LoggingConfig", {}).get("LogGroup")
        if log_group is None:
            continue  # no explicit log group: the function logs where its role lets it
        role_id = _role_id(props(fn)["Role"])
        managed = json.dumps(props(resources(template)[role_id]).get("ManagedPolicyArns", []))
        if "service-role/AWSLambdaBasicExecutionRole" in managed:
            continue  # CDK's provider framework: the managed policy writes any log group
        statements = role_statements(template, role_id)
        arn = {"Fn::GetAtt": [ref_id(log_group), "Arn"]}
        for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
            assert _allows(statements, action, arn), f"{fn_id} lacks {action} on its log group"
        checked += 1
    assert checked >= 6


@pytest.mark.parametrize("stack", STACKS)
def test_INF8_every_publisher_to_an_encrypted_topic_may_use_its_key(
    templates: dict[str, Any], stack: str
) -> None:
    template = templates[stack]
    keys = {
        topic_id: ref_id(props(topic)["KmsMasterKeyId"])
        for topic_id, topic in resources(template, "AWS::SNS::Topic").items()
        if "KmsMasterKeyId" in props(topic)
    }
    assert keys, "the alert topic is KMS-encrypted (INF8)"
    publishers = set()
    for role_id in resources(template, "AWS::IAM::Role"):
        statements = role_statements(template, role_id)
        for topic_id, key_id in keys.items():
            if not _allows(statements, "sns:Publish", {"Ref": topic_id}):
                continue
            publishers.add(role_id)
            key_arn = {"Fn::GetAtt": [key_id, "Arn"]}
            for action in ("kms:GenerateDataKey*", "kms:Decrypt"):
                assert _allows(statements, action, key_arn), (
                    f"{role_id} publishes to {topic_id} without {action}"
                )
    # The state machine publishes the alert itself (SnsPublish task).
    (machine,) = resources(template, "AWS::StepFunctions::StateMachine").values()
    assert _role_id(props(machine)["RoleArn"]) in publishers


@pytest.mark.parametrize("stack", STACKS)
def test_TBL1_finalize_may_read_and_rewrite_a_chunks_output_and_rejects(
    templates: dict[str, Any], stack: str
) -> None:
    """DATA4(c): Finalize rewrites the Parquet part and rejects CSV of a chunk holding a repeated
    transaction id (etl/handlers/dedupe.py), so it reads and writes output/ and rejected/, and
    may not delete rejects (TBL7); evaluated by the evaluator local mode enforces
    (etl_local/iam.py)."""
    from etl import contracts
    from etl_local import iam
    from infra.template_tools import resolve_intrinsics

    template = templates[stack]
    kinds = {lid: spec["Type"] for lid, spec in resources(template).items()}

    def resolver(logical_id: str, attribute: str | None) -> str:
        if kinds.get(logical_id) == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:aws:s3:::{logical_id}"
        return f"arn:test:{logical_id}:{attribute}"

    handler = contracts.ALL_FUNCTIONS["Finalize"][1]
    (fn,) = [
        f for f in resources(template, "AWS::Lambda::Function").values() if props(f)["Handler"] == handler
    ]
    role = _role_id(props(fn)["Role"])
    statements = iam.role_statements(template, role, lambda v: resolve_intrinsics(v, resolver))
    buckets = [lid for lid, kind in kinds.items() if kind == "AWS::S3::Bucket"]
    # DeleteObject on output/ only: a failed file's rejects under rejected/ are kept (TBL7).
    for prefix, actions in (
        (contracts.OUTPUT_PREFIX, ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")),
        (contracts.REJECTED_PREFIX, ("s3:GetObject", "s3:PutObject")),
    ):
        for action in actions:
            assert any(
                iam.is_allowed(
                    statements, iam.Need(action, f"arn:aws:s3:::{b}/{prefix}p/file_id=f/part-00002")
                )
                for b in buckets
            ), f"Finalize lacks {action} on {prefix}"
    rejects = f"{contracts.REJECTED_PREFIX}p/file_id=f/part-00002.csv"
    assert not any(
        iam.is_allowed(statements, iam.Need("s3:DeleteObject", f"arn:aws:s3:::{b}/{rejects}"))
        for b in buckets
    ), "Finalize may delete a partner's rejects (TBL7)"
