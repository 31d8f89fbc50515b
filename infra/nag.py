"""cdk-nag v3 wiring: the policy packs and a small helper to acknowledge one finding.

cdk-nag 3 runs as CDK policy-validation plugins: any unacknowledged finding makes the synth
fail with a validation report. Acknowledgements are per finding
(``AwsSolutions-IAM5[Resource::...]``), never a whole rule, and each carries a reason.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, CfnElement, Stack, Validations
from cdk_nag import AwsSolutionsChecks, ServerlessChecks
from constructs import IConstruct

PACKS = ("AwsSolutions", "Serverless")


def add_policy_checks(app: App) -> None:
    """INF13: AwsSolutions + Serverless packs on every stack of ``app``."""
    Validations.of(app).add_plugins(
        AwsSolutionsChecks(app, verbose=True), ServerlessChecks(app, verbose=True)
    )


def logical_id(construct: IConstruct) -> str:
    """Logical id of a construct's CloudFormation resource, as nag findings spell it."""
    resource = construct.node.default_child if not isinstance(construct, CfnElement) else construct
    if not isinstance(resource, CfnElement):
        raise ValueError(f"{construct.node.path} has no CloudFormation resource")
    return Stack.of(resource).resolve(resource.logical_id)  # type: ignore[no-any-return]


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one finding on ``scope`` (and its children) with a specific reason."""
    if len(reason) < 40:
        raise ValueError(f"acknowledgement of {rule_id} needs a real reason, got {reason!r}")
    pack = rule_id.split("-", 1)[0]
    if pack not in PACKS:
        raise ValueError(f"unknown nag pack in {rule_id!r}")
    # "<pack>::<rule>[<finding>]" is the id the validation report asks for; without the pack
    # prefix CDK would record it as an annotation acknowledgement.
    Validations.of(scope).acknowledge(Acknowledgment(id=f"{pack}::{rule_id}", reason=reason))
