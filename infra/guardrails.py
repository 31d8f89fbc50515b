"""INF10-INF12 as Aspects: tags, a Deny on every IAM role, nothing retained on delete.

Aspects see every construct, including the ones CDK adds on its own (the auto-delete-objects
custom-resource provider is a raw ``CfnResource`` whose properties are a plain dict), which is
why these rules live here instead of in the constructs that create roles.
"""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import (
    Annotations,
    Aspects,
    CfnDeletionPolicy,
    CfnResource,
    IAspect,
    IResolvable,
    IResolveContext,
    Stack,
    Tags,
    Token,
)
from aws_cdk import aws_iam as iam
from constructs import Construct, IConstruct

TAGS = {"Environment": "Production", "Project": "ETL"}

DENY_POLICY_NAME = "DenyDestructiveDataDeletes"
# INF11: nothing in the stacks deletes its bucket or table.
# SEC3: nor destroys an object version (DR5: moves leave delete markers), rewrites a bucket's
# policy, lifecycle or versioning, or deletes a table backup. A bug or a misrouted call
# in any function then meets an explicit Deny, whatever an Allow elsewhere says.
DENIED_ACTIONS = (
    "s3:DeleteBucket",
    "dynamodb:DeleteTable",
    "s3:DeleteObjectVersion",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketVersioning",
    "dynamodb:DeleteBackup",
)
# The one exception (SEC3): CDK's auto-delete-objects provider empties a bucket when its stack
# is destroyed (INF12). It sets a bucket policy that refuses new writes, then deletes every
# version; its Allow is the bucket policy CDK writes (s3:DeleteObject*, s3:PutBucketPolicy),
# and an explicit Deny here would override it. It keeps these two and is denied the rest.
AUTO_DELETE_PROVIDER_PREFIX = "Custom::S3AutoDeleteObjects"
AUTO_DELETE_NEEDS = ("s3:DeleteObjectVersion", "s3:PutBucketPolicy")


def deny_policy(actions: tuple[str, ...] = DENIED_ACTIONS) -> dict[str, Any]:
    """The inline policy appended to a role: one Deny of ``actions`` on every resource."""
    statement = {
        "Sid": "DenyDestructiveChanges",
        "Effect": "Deny",
        "Action": list(actions),
        "Resource": "*",
    }
    return {
        "PolicyName": DENY_POLICY_NAME,
        "PolicyDocument": {"Version": "2012-10-17", "Statement": [statement]},
    }


DENY_POLICY = deny_policy()
AUTO_DELETE_DENY_POLICY = deny_policy(tuple(a for a in DENIED_ACTIONS if a not in AUTO_DELETE_NEEDS))


def _is_auto_delete_provider_role(node: IConstruct) -> bool:
    scope = node.node.scope
    return scope is not None and scope.node.id.startswith(AUTO_DELETE_PROVIDER_PREFIX)


# Raw CfnResources (custom-resource providers) bypass the TagManager; tag these types by hand.
RAW_TAGGABLE_TYPES = ("AWS::IAM::Role", "AWS::Lambda::Function")
FORBIDDEN_DELETION_POLICIES = (
    CfnDeletionPolicy.RETAIN,
    CfnDeletionPolicy.SNAPSHOT,
    CfnDeletionPolicy.RETAIN_EXCEPT_ON_CREATE,
)


def apply_tags(scope: Construct) -> None:
    """INF10: real AWS tags on every taggable resource under ``scope``."""
    for key, value in TAGS.items():
        Tags.of(scope).add(key, value)


def _has_deny(policies: list[Any]) -> bool:
    for policy in policies:
        name = policy.get("PolicyName") if isinstance(policy, dict) else getattr(policy, "policy_name", None)
        if name == DENY_POLICY_NAME:
            return True
    return False


@jsii.implements(IResolvable)
class _AppendDenyAtRender:
    """Resolves a role's original ``Policies`` (often a Lazy) at render time and appends ours."""

    def __init__(self, original: Any, policy: dict[str, Any]) -> None:
        self._original = original
        self._policy = policy

    @property
    def creation_stack(self) -> list[str]:
        return []

    @property
    def type_hint(self) -> str | None:
        return None

    def resolve(self, context: IResolveContext) -> Any:
        resolved = context.resolve(self._original) if self._original is not None else None
        if resolved is None:
            return [self._policy]
        if not isinstance(resolved, list):
            raise ValueError(f"role Policies resolved to {resolved!r}, not a list")
        return resolved if _has_deny(resolved) else [*resolved, self._policy]

    def to_string(self) -> str:
        return Token.as_string(self)


@jsii.implements(IAspect)
class DenyDataDeletionOnEveryRole:
    """INF11 + SEC3: every ``AWS::IAM::Role`` gets an inline Deny of ``DENIED_ACTIONS`` (the
    auto-delete provider's role: all but ``AUTO_DELETE_NEEDS``).

    L2 roles render through ``CfnRole.policies`` (a plain list, or nothing); the provider roles
    CDK synthesizes for custom resources are raw ``CfnResource`` objects whose ``Policies`` is a
    Lazy, so for them the original value is resolved at render time and the Deny appended.
    Existing inline policies are always kept.
    """

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, CfnResource) or node.cfn_resource_type != "AWS::IAM::Role":
            return
        policy = AUTO_DELETE_DENY_POLICY if _is_auto_delete_provider_role(node) else DENY_POLICY
        if isinstance(node, iam.CfnRole):
            existing = node.policies
            if Token.is_unresolved(existing):
                node.add_property_override("Policies", _AppendDenyAtRender(existing, policy))
                return
            current = list(existing or [])  # type: ignore[arg-type]
            if not _has_deny(current):
                node.policies = [
                    *current,
                    iam.CfnRole.PolicyProperty(
                        policy_name=DENY_POLICY_NAME, policy_document=policy["PolicyDocument"]
                    ),
                ]
            return
        properties = node._cfn_properties  # raw CfnResource: plain dict of CFN properties
        if not isinstance(properties, dict):
            raise ValueError(f"unexpected raw role properties at {node.node.path}")
        node.add_property_override("Policies", _AppendDenyAtRender(properties.get("Policies"), policy))


@jsii.implements(IAspect)
class TagRawResources:
    """INF10 for raw CfnResources: Tags.of() only reaches resources with a TagManager."""

    def visit(self, node: IConstruct) -> None:
        if (
            isinstance(node, CfnResource)
            and type(node) is CfnResource  # L1 classes have a TagManager; raw ones do not
            and node.cfn_resource_type in RAW_TAGGABLE_TYPES
        ):
            properties = node._cfn_properties
            tags = list(properties.get("Tags") or []) if isinstance(properties, dict) else []
            present = {t.get("Key") for t in tags if isinstance(t, dict)}
            tags += [{"Key": k, "Value": v} for k, v in TAGS.items() if k not in present]
            node.add_property_override("Tags", tags)


@jsii.implements(IAspect)
class ForbidRetainedResources:
    """INF12: fail the synth if any resource would survive ``cdk destroy``."""

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, CfnResource):
            return
        options = node.cfn_options
        for label, policy in (
            ("DeletionPolicy", options.deletion_policy),
            ("UpdateReplacePolicy", options.update_replace_policy),
        ):
            if policy in FORBIDDEN_DELETION_POLICIES:
                Annotations.of(node).add_error(
                    f"{label} {policy.name} on {node.cfn_resource_type}: "
                    "every resource must be destroyable (INF12)"
                )
        if getattr(node, "deletion_protection_enabled", None) is True:
            Annotations.of(node).add_error("DynamoDB deletion protection is on (INF12)")


def drop_redundant_role_dependency(owner: IConstruct, role: IConstruct) -> None:
    """Keep ``DependsOn`` only on the role's DefaultPolicy (cfn-lint W3005).

    CDK makes a function/state machine depend on its role *and* the role's default policy; the
    ``Fn::GetAtt Role.Arn`` already orders the role, so only the policy dependency is needed
    (the first invocation must see the permissions). Call after the last grant.
    """
    resource = owner.node.default_child
    policy = role.node.try_find_child("DefaultPolicy")
    if not isinstance(resource, CfnResource):
        raise ValueError(f"{owner.node.path} has no CloudFormation resource")
    cfn_policy = policy.node.default_child if policy is not None else None
    if isinstance(cfn_policy, CfnResource):
        resource.add_override("DependsOn", [cfn_policy.logical_id])
    else:
        resource.add_deletion_override("DependsOn")


@jsii.implements(IAspect)
class DropProviderRoleDependency:
    """The auto-delete-objects provider's handler: its DependsOn repeats its Role's GetAtt."""

    def visit(self, node: IConstruct) -> None:
        if (
            type(node) is CfnResource
            and node.cfn_resource_type == "AWS::Lambda::Function"
            and node.node.id == "Handler"
            and node.node.scope is not None
            and node.node.scope.node.id.startswith("Custom::")
        ):
            node.add_deletion_override("DependsOn")


def apply_guardrails(stack: Stack) -> None:
    """Tags plus the three aspects on one stack."""
    apply_tags(stack)
    Aspects.of(stack).add(DenyDataDeletionOnEveryRole())
    Aspects.of(stack).add(TagRawResources())
    Aspects.of(stack).add(ForbidRetainedResources())
    Aspects.of(stack).add(DropProviderRoleDependency())
