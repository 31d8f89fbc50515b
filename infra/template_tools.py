"""Helpers on synthesized templates, shared by the infra tests and the local-mode harness.

* :func:`synth_templates` builds the CDK app in-process (no CLI, no network, no credentials).
* :func:`resolve_intrinsics` turns ``Fn::Join``/``Ref``/``Fn::GetAtt`` into plain strings via a
  caller-supplied resolver and FAILS on anything it does not understand, so a new intrinsic in
  the definition can never slip through as a half-resolved string.
* :func:`state_machine_definition` returns the state machine's ASL as a dict.
* :func:`with_resolved_definitions` puts that ASL back as a plain ``Definition`` object in a copy
  of the template (cfn-lint validates ``Definition`` but skips a ``DefinitionString`` built from
  intrinsics).
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

Resolver = Callable[[str, str | None], str]
"""``resolver(logical_id_or_pseudo_parameter, attribute_or_None) -> str``."""

# CDK context key (cx-api BUNDLING_STACKS): stacks whose assets are bundled; [] bundles none.
SKIP_BUNDLING = "aws:cdk:bundling-stacks"

PSEUDO_PARAMETERS = (
    "AWS::AccountId",
    "AWS::Partition",
    "AWS::Region",
    "AWS::URLSuffix",
    "AWS::StackName",
    "AWS::StackId",
    "AWS::NoValue",
)


class UnresolvableIntrinsic(ValueError):
    """The value holds an intrinsic function (or reference) the resolver cannot turn into text."""


def resolve_intrinsics(value: Any, resolver: Resolver) -> Any:
    """Return ``value`` with every ``Ref``/``Fn::GetAtt``/``Fn::Join`` replaced by a string.

    ``resolver`` is called for every reference with ``(logical_id, None)`` for a ``Ref`` and
    ``(logical_id, attribute)`` for a ``Fn::GetAtt``; pseudo parameters (``AWS::Region`` ...)
    come through as ``Ref``s too. Any other ``Fn::*`` or ``Condition`` raises
    :class:`UnresolvableIntrinsic`, as does a resolver returning a non-string.
    """
    if isinstance(value, list):
        return [resolve_intrinsics(item, resolver) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            if not isinstance(arg, str):
                raise UnresolvableIntrinsic(f"Ref to a non-string: {arg!r}")
            return _call(resolver, arg, None)
        if key == "Fn::GetAtt":
            if isinstance(arg, str):
                logical_id, _, attribute = arg.partition(".")
            elif isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, str) for a in arg):
                logical_id, attribute = arg
            else:
                raise UnresolvableIntrinsic(f"malformed Fn::GetAtt: {arg!r}")
            return _call(resolver, logical_id, attribute)
        if key == "Fn::Join":
            if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str)):
                raise UnresolvableIntrinsic(f"malformed Fn::Join: {arg!r}")
            delimiter, parts = arg
            resolved = resolve_intrinsics(parts, resolver)
            if not isinstance(resolved, list) or not all(isinstance(p, str) for p in resolved):
                raise UnresolvableIntrinsic(f"Fn::Join parts did not resolve to strings: {arg!r}")
            return delimiter.join(resolved)
        if key.startswith("Fn::") or key == "Condition":
            raise UnresolvableIntrinsic(f"unsupported intrinsic {key}: {arg!r}")
    return {k: resolve_intrinsics(v, resolver) for k, v in value.items()}


def _call(resolver: Resolver, logical_id: str, attribute: str | None) -> str:
    result = resolver(logical_id, attribute)
    if not isinstance(result, str):
        raise UnresolvableIntrinsic(
            "resolver returned {!r} for {}{}".format(result, logical_id, "." + attribute if attribute else "")
        )
    return result


# Placeholder builders per resource type: (name of the resource, attribute, region, account)
# -> the value, or None when that attribute has no placeholder.
_NameOf = Callable[[str], str]


def _function_placeholder(name_of: _NameOf, attribute: str | None, region: str, account: str) -> str | None:
    name = name_of("FunctionName")
    if attribute is None:
        return name
    if attribute == "Arn":
        return f"arn:aws:lambda:{region}:{account}:function:{name}"
    return None


def _queue_placeholder(name_of: _NameOf, attribute: str | None, region: str, account: str) -> str | None:
    name = name_of("QueueName")
    if attribute is None or attribute == "QueueUrl":
        return f"https://sqs.{region}.amazonaws.com/{account}/{name}"
    if attribute == "Arn":
        return f"arn:aws:sqs:{region}:{account}:{name}"
    if attribute == "QueueName":
        return name
    return None


def _topic_placeholder(name_of: _NameOf, attribute: str | None, region: str, account: str) -> str | None:
    if attribute in (None, "TopicArn"):
        return "arn:aws:sns:{}:{}:{}".format(region, account, name_of("TopicName"))
    return None


def _table_placeholder(name_of: _NameOf, attribute: str | None, region: str, account: str) -> str | None:
    name = name_of("TableName")
    if attribute is None:
        return name
    if attribute == "Arn":
        return f"arn:aws:dynamodb:{region}:{account}:table/{name}"
    return None


_PLACEHOLDERS: dict[str, Callable[[_NameOf, str | None, str, str], str | None]] = {
    "AWS::Lambda::Function": _function_placeholder,
    "AWS::SQS::Queue": _queue_placeholder,
    "AWS::SNS::Topic": _topic_placeholder,
    "AWS::DynamoDB::Table": _table_placeholder,
}


def placeholder_resolver(
    template: Mapping[str, Any], *, region: str = "us-east-1", account: str = "123456789012"
) -> Resolver:
    """A resolver producing realistic fake ARNs/URLs for ``template``'s resources.

    Good enough for linting (cfn-lint checks ARN shapes in the ASL); the local harness passes
    its own resolver with the emulator's real ARNs. Unknown logical ids raise.
    """
    resources: Mapping[str, Any] = template.get("Resources", {})
    parameters: Mapping[str, Any] = template.get("Parameters", {})
    pseudo = {
        "AWS::AccountId": account,
        "AWS::Partition": "aws",
        "AWS::Region": region,
        "AWS::URLSuffix": "amazonaws.com",
    }

    def resolve(logical_id: str, attribute: str | None) -> str:
        if logical_id in pseudo and attribute is None:
            return pseudo[logical_id]
        if logical_id in parameters and attribute is None:
            return f"placeholder-parameter-{logical_id}"
        if logical_id not in resources:
            raise UnresolvableIntrinsic(f"unknown logical id {logical_id!r}")
        kind = resources[logical_id]["Type"]

        def name_of(prop: str) -> str:
            name = resources[logical_id].get("Properties", {}).get(prop)
            return name if isinstance(name, str) else logical_id.lower()

        if kind == "AWS::S3::Bucket":
            # Buckets get a fixed-shape name (their real names hold account and region tokens).
            bucket = f"placeholder-bucket-{logical_id.lower()}"
            value = {None: bucket, "Arn": f"arn:aws:s3:::{bucket}"}.get(attribute)
        else:
            builder = _PLACEHOLDERS.get(kind)
            value = builder(name_of, attribute, region, account) if builder else None
        if value is None:
            raise UnresolvableIntrinsic(f"no placeholder for {logical_id} ({kind}).{attribute}")
        return value

    return resolve


def find_state_machine(template: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """``(logical_id, resource)`` of the template's only state machine."""
    machines = [
        (logical_id, resource)
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::StepFunctions::StateMachine"
    ]
    if len(machines) != 1:
        raise ValueError(f"expected exactly one state machine, found {len(machines)}")
    return machines[0]


def state_machine_definition(template: Mapping[str, Any], resolver: Resolver | None = None) -> dict[str, Any]:
    """The ASL of the template's state machine as a dict, references resolved by ``resolver``."""
    _, resource = find_state_machine(template)
    properties = resource["Properties"]
    if "Definition" in properties:
        definition = resolve_intrinsics(properties["Definition"], resolver or placeholder_resolver(template))
        return dict(definition)
    text = resolve_intrinsics(properties["DefinitionString"], resolver or placeholder_resolver(template))
    if not isinstance(text, str):
        raise UnresolvableIntrinsic("DefinitionString did not resolve to a string")
    if properties.get("DefinitionSubstitutions"):
        raise UnresolvableIntrinsic("DefinitionSubstitutions are not supported")
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def with_resolved_definitions(
    template: Mapping[str, Any], resolver: Resolver | None = None
) -> dict[str, Any]:
    """A deep copy of ``template`` whose state machine carries a plain ``Definition`` object."""
    result: dict[str, Any] = copy.deepcopy(dict(template))
    logical_id, _ = find_state_machine(result)
    definition = state_machine_definition(result, resolver)
    properties = result["Resources"][logical_id]["Properties"]
    properties.pop("DefinitionString", None)
    properties.pop("DefinitionSubstitutions", None)
    properties["Definition"] = definition
    return result


def synth_templates(
    context: Mapping[str, Any] | None = None, *, policy_checks: bool = False
) -> dict[str, dict[str, Any]]:
    """Synthesize the app in-process; returns ``{stack_name: template}`` for both stacks.

    Writes the cloud assembly to a fresh temporary directory, so parallel runs (and the CLI's
    cdk.out) never collide.
    """
    from infra.application import build_app  # deferred: importing aws_cdk starts jsii

    # Templates only, no asset upload: skip asset bundling (the pyiceberg layer build).
    context = {SKIP_BUNDLING: [], **dict(context or {})}
    app = build_app(context, outdir=tempfile.mkdtemp(prefix="etl-synth-"), policy_checks=policy_checks)
    assembly = app.synth()
    return {stack.stack_name: dict(stack.template) for stack in assembly.stacks}
