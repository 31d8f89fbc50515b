"""IAM, enforced locally: one evaluator for the roles of the synthesized template.

moto does not enforce IAM, so a grant the code needs but the template lacks would pass every
local test and fail on AWS with AccessDenied. This module closes that gap:

- **The evaluator** (:func:`evaluate`): identity-based policy statements as AWS evaluates them.
  An explicit ``Deny`` wins, then any ``Allow``, else the implicit deny. ``Action``/``NotAction``
  (case-insensitive, ``*``/``?`` wildcards), ``Resource``/``NotResource`` (case-sensitive
  wildcards) and the condition operators and keys the project's templates use (``StringEquals``,
  ``StringNotEquals``, ``StringLike``, ``StringNotLike`` on ``s3:prefix`` and
  ``iam:PassedToService``). Anything else in a ``Condition`` raises
  :class:`UnsupportedCondition`: never silently allowed.
- **What AWS authorizes per API call** (:func:`needs`): the boto3 operation and its parameters
  mapped to the IAM actions and resources AWS checks (a CopyObject reads the source and its
  tags, a TransactWriteItems is checked per item ...). tests/unit/handlers/test_iam_coverage.py
  uses the same mapping and evaluator.
- **Enforcement in the emulator** (:func:`install`): each role of a deployed template holds its
  statements as an inline policy in the emulator's IAM (put by ``etl_local.deploy``, read by
  :data:`ROLES`); every call a handler makes through
  ``etl.aws.clients`` is checked against the role of the function running it (a context
  variable set by ``etl_local.lambda_runtime`` and carried into thread pools), and every call of
  the state machine's service integrations (moto's Step Functions parser) against the state
  machine's role. A refused call fails like on AWS: ``ClientError`` ``AccessDenied`` (S3),
  ``AuthorizationError`` (SNS) or ``AccessDeniedException`` (the others), HTTP 403, AWS's message.

Not emulated (docs/local-mode.md, "IAM is enforced locally"): resource policies (bucket, key,
queue and topic policies), SCPs and permission boundaries, KMS key policies and the KMS calls
AWS services make on the caller's behalf, session policies, AWS managed policies attached to
roles (only CDK's custom-resource providers have one: logs), and condition keys other than the
two above.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import functools
import hashlib
import importlib
import inspect
import json
import re
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ACCOUNT = "123456789012"

# ---------------------------------------------------------------------------------------------
# The evaluator


class UnsupportedCondition(ValueError):
    """A policy condition the local evaluator cannot evaluate (never treated as a match)."""


# The condition keys a request here can carry; a condition on any other key is unsupported.
SUPPORTED_KEYS = frozenset({"s3:prefix", "iam:PassedToService"})
_POSITIVE = {"StringEquals": False, "StringLike": True}  # operator -> wildcards?
_NEGATED = {"StringNotEquals": False, "StringNotLike": True}

ALLOW, EXPLICIT_DENY, IMPLICIT_DENY = "Allow", "ExplicitDeny", "ImplicitDeny"


@dataclass(frozen=True)
class Need:
    """One authorization AWS makes for a call: an action on a resource, with the condition keys
    the request carries (``s3:prefix`` for a listing)."""

    action: str
    resource: str
    prefix: str | None = None
    keys: tuple[tuple[str, str], ...] = ()

    def context(self) -> dict[str, str]:
        out = dict(self.keys)
        if self.prefix is not None:
            out["s3:prefix"] = self.prefix
        return out


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@functools.lru_cache(maxsize=4096)
def _pattern(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    if "${" in pattern:
        raise UnsupportedCondition(f"policy variable in {pattern!r} not supported by the local evaluator")
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(f"^{body}$", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's ``*``/``?`` matching (nothing else is special, unlike fnmatch's ``[...]``)."""
    return _pattern(pattern, ignore_case).match(value) is not None


def _matches_any(patterns: Any, value: str, ignore_case: bool) -> bool:
    return any(wildcard_match(str(p), value, ignore_case=ignore_case) for p in _as_list(patterns))


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    if "Action" in statement:
        return _matches_any(statement["Action"], action, True)
    if "NotAction" in statement:
        return not _matches_any(statement["NotAction"], action, True)
    raise UnsupportedCondition(f"statement without Action or NotAction: {statement}")


def _resource_matches(statement: Mapping[str, Any], resource: str) -> bool:
    if "Resource" in statement:
        return _matches_any(statement["Resource"], resource, False)
    if "NotResource" in statement:
        return not _matches_any(statement["NotResource"], resource, False)
    raise UnsupportedCondition(f"statement without Resource or NotResource: {statement}")


def _condition_holds(operator: str, key: str, values: Any, context: Mapping[str, str]) -> bool:
    if key not in SUPPORTED_KEYS:
        raise UnsupportedCondition(f"condition {operator} on {key} not supported by the local evaluator")
    if operator in _POSITIVE:
        if key not in context:
            return False
        return any(_value_matches(v, context[key], _POSITIVE[operator]) for v in _as_list(values))
    if operator in _NEGATED:
        if key not in context:  # AWS: a negated operator on an absent key matches
            return True
        return not any(_value_matches(v, context[key], _NEGATED[operator]) for v in _as_list(values))
    raise UnsupportedCondition(f"condition {operator} not supported by the local evaluator")


def _value_matches(pattern: Any, value: str, wildcards: bool) -> bool:
    return wildcard_match(str(pattern), value) if wildcards else str(pattern) == value


def _conditions_hold(statement: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    # Every operator and key is checked (an unsupported one raises even if another fails).
    results = [
        _condition_holds(operator, key, values, context)
        for operator, block in (statement.get("Condition") or {}).items()
        for key, values in block.items()
    ]
    return all(results)


def statement_applies(statement: Mapping[str, Any], need: Need) -> bool:
    """True when ``statement`` covers ``need`` (action, resource and conditions)."""
    return (
        _action_matches(statement, need.action)
        and _resource_matches(statement, need.resource)
        and _conditions_hold(statement, need.context())
    )


def evaluate(statements: Sequence[Mapping[str, Any]], need: Need) -> str:
    """:data:`ALLOW`, :data:`EXPLICIT_DENY` or :data:`IMPLICIT_DENY`, as AWS decides for one
    identity's policies (no resource policy, SCP or boundary)."""
    allowed = False
    for s in statements:
        effect = s.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise UnsupportedCondition(f"statement effect {effect!r}")
        if not statement_applies(s, need):
            continue
        if effect == "Deny":
            return EXPLICIT_DENY
        allowed = True
    return ALLOW if allowed else IMPLICIT_DENY


def is_allowed(statements: Sequence[Mapping[str, Any]], need: Need) -> bool:
    return evaluate(statements, need) == ALLOW


# ---------------------------------------------------------------------------------------------
# What AWS authorizes for each call


@dataclass
class Call:
    """One AWS API call (boto3's operation name and parameters)."""

    step: str
    service: str
    operation: str
    params: dict[str, Any]
    status: int = 0  # the HTTP status of the response (0: not answered yet)
    region: str = "us-east-1"
    account: str = ACCOUNT


class UnknownCall(ValueError):
    """An operation whose authorization this module does not know: teach :func:`needs`."""


def _object(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def _table(call: Call, name: str) -> str:
    if name.startswith("arn:"):
        return name
    return f"arn:aws:dynamodb:{call.region}:{call.account}:table/{name}"


# TransactWriteItems is authorized per item, as the single-item action.
_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _dynamodb_needs(call: Call) -> list[Need]:
    p, op = call.params, call.operation
    if op in ("BatchWriteItem", "BatchGetItem"):
        return [Need(f"dynamodb:{op}", _table(call, t)) for t in p["RequestItems"]]
    if op == "TransactWriteItems":
        return [
            Need(f"dynamodb:{_TRANSACT_ACTIONS[kind]}", _table(call, body["TableName"]))
            for item in p["TransactItems"]
            for kind, body in item.items()
        ]
    if op == "TransactGetItems":
        return [Need("dynamodb:GetItem", _table(call, i["Get"]["TableName"])) for i in p["TransactItems"]]
    table = _table(call, str(p["TableName"]))
    if p.get("IndexName"):
        return [Need(f"dynamodb:{op}", f"{table}/index/{p['IndexName']}")]
    return [Need(f"dynamodb:{op}", table)]


def _sns_needs(call: Call) -> list[Need]:
    return [Need(f"sns:{call.operation}", str(call.params["TopicArn"]))]


def _sqs_needs(call: Call) -> list[Need]:
    name = str(call.params["QueueUrl"]).rstrip("/").rsplit("/", 1)[1]
    return [Need(f"sqs:{call.operation}", f"arn:aws:sqs:{call.region}:{call.account}:{name}")]


def _states_needs(call: Call) -> list[Need]:
    p, op = call.params, call.operation
    if op in ("ListExecutions", "StartExecution", "StartSyncExecution", "DescribeStateMachine"):
        return [Need(f"states:{op}", str(p["stateMachineArn"]))]
    if op in ("DescribeExecution", "StopExecution", "GetExecutionHistory"):
        return [Need(f"states:{op}", str(p["executionArn"]))]
    raise UnknownCall(f"{call.step} calls states:{op}: teach etl_local.iam.needs (and the role) about it")


def _glue_needs(call: Call) -> list[Need]:
    # Glue authorizes table calls against the catalog, the database and the table.
    p, op = call.params, call.operation
    if op == "GetDatabase":
        database, table = p.get("Name"), None
    else:
        database = p.get("DatabaseName")
        table = p.get("Name") or (p.get("TableInput") or {}).get("Name")
    glue = f"arn:aws:glue:{call.region}:{call.account}"
    out = [Need(f"glue:{op}", f"{glue}:catalog")]
    if database:
        out.append(Need(f"glue:{op}", f"{glue}:database/{database}"))
    if database and table:
        out.append(Need(f"glue:{op}", f"{glue}:table/{database}/{table}"))
    return out


def _s3_read_needs(call: Call) -> list[Need]:
    p = call.params
    versioned = "VersionId" in p
    out = [Need("s3:GetObjectVersion" if versioned else "s3:GetObject", _object(p["Bucket"], p["Key"]))]
    if call.status == 404:
        out.append(missing_key_need(call))
    return out


def missing_key_need(call: Call) -> Need:
    """S3 answers 404 for a missing key only to a caller that may list it; without
    s3:ListBucket it answers 403 AccessDenied (which callers do not read as "missing")."""
    p = call.params
    return Need("s3:ListBucket", f"arn:aws:s3:::{p['Bucket']}", str(p["Key"]))


_S3_WRITES = ("PutObject", "CreateMultipartUpload", "UploadPart", "UploadPartCopy", "CompleteMultipartUpload")


def _s3_write_needs(call: Call) -> list[Need]:
    p = call.params
    out = [Need("s3:PutObject", _object(p["Bucket"], p["Key"]))]
    if call.operation == "UploadPartCopy":
        out += needs(Call(call.step, "s3", "GetObject", copy_source(p["CopySource"])))
    return out


def _s3_copy_needs(call: Call) -> list[Need]:
    # The copy carries the source's tags (TaggingDirective COPY, the default): S3 reads
    # them from the source and writes them on the copy.
    p = call.params
    source = copy_source(p["CopySource"])
    tagging = "s3:GetObjectVersionTagging" if "VersionId" in source else "s3:GetObjectTagging"
    return [
        Need("s3:PutObject", _object(p["Bucket"], p["Key"])),
        Need("s3:PutObjectTagging", _object(p["Bucket"], p["Key"])),
        *needs(Call(call.step, "s3", "GetObject", source)),
        Need(tagging, _object(source["Bucket"], source["Key"])),
    ]


def _s3_delete_needs(call: Call) -> list[Need]:
    p = call.params
    if call.operation == "DeleteObject":
        action = "s3:DeleteObjectVersion" if "VersionId" in p else "s3:DeleteObject"
        return [Need(action, _object(p["Bucket"], p["Key"]))]
    return [
        Need(
            "s3:DeleteObjectVersion" if "VersionId" in o else "s3:DeleteObject",
            _object(p["Bucket"], o["Key"]),
        )
        for o in p["Delete"]["Objects"]
    ]


_S3_TAGGING = {
    "GetObjectTagging": "s3:GetObjectTagging",
    "PutObjectTagging": "s3:PutObjectTagging",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
}


def _s3_needs(call: Call) -> list[Need]:
    p, op = call.params, call.operation
    if op in ("GetObject", "HeadObject"):
        return _s3_read_needs(call)
    if op in _S3_WRITES:
        return _s3_write_needs(call)
    if op in _S3_TAGGING:
        return [Need(_S3_TAGGING[op], _object(p["Bucket"], p["Key"]))]
    if op == "CopyObject":
        return _s3_copy_needs(call)
    if op in ("DeleteObject", "DeleteObjects"):
        return _s3_delete_needs(call)
    if op in ("ListObjectsV2", "ListObjects"):
        return [Need("s3:ListBucket", f"arn:aws:s3:::{p['Bucket']}", str(p.get("Prefix", "")))]
    if op == "ListObjectVersions":
        return [Need("s3:ListBucketVersions", f"arn:aws:s3:::{p['Bucket']}", str(p.get("Prefix", "")))]
    raise UnknownCall(f"{call.step} calls s3:{op}: teach etl_local.iam.needs (and the role) about it")


def _ssm_needs(call: Call) -> list[Need]:
    name = str(call.params["Name"]).lstrip("/")
    return [Need(f"ssm:{call.operation}", f"arn:aws:ssm:{call.region}:{call.account}:parameter/{name}")]


def _lambda_needs(call: Call) -> list[Need]:
    if call.operation != "Invoke":
        raise UnknownCall(f"{call.step} calls lambda:{call.operation}: teach etl_local.iam.needs about it")
    name = str(call.params["FunctionName"])
    arn = name if name.startswith("arn:") else f"arn:aws:lambda:{call.region}:{call.account}:function:{name}"
    if call.params.get("Qualifier"):
        arn = f"{arn}:{call.params['Qualifier']}"
    return [Need("lambda:InvokeFunction", arn)]


_NEEDS_BY_SERVICE: dict[str, Callable[[Call], list[Need]]] = {
    "dynamodb": _dynamodb_needs,
    "sns": _sns_needs,
    "ssm": _ssm_needs,
    "sqs": _sqs_needs,
    "sfn": _states_needs,
    "stepfunctions": _states_needs,
    "glue": _glue_needs,
    "s3": _s3_needs,
    "lambda": _lambda_needs,
}


def needs(call: Call) -> list[Need]:
    """The IAM actions (and resources) one AWS call needs. :class:`UnknownCall` for an
    operation not mapped here (never guessed)."""
    by_service = _NEEDS_BY_SERVICE.get(call.service)
    if by_service is None:
        raise UnknownCall(f"{call.step} calls {call.service}:{call.operation}: teach etl_local.iam.needs")
    return by_service(call)


def copy_source(source: Any) -> dict[str, Any]:
    """CopyObject's ``CopySource`` (a dict or ``bucket/key?versionId=``) as a dict."""
    if isinstance(source, dict):
        return dict(source)
    bucket, _, rest = str(source).lstrip("/").partition("/")
    key, _, query = rest.partition("?versionId=")
    return {"Bucket": bucket, "Key": key, **({"VersionId": query} if query else {})}


# ---------------------------------------------------------------------------------------------
# The roles of a template


def role_statements(
    template: Mapping[str, Any], role_id: str, resolve: Callable[[Any], Any]
) -> list[dict[str, Any]]:
    """Every statement of role ``role_id``'s identity policies (inline ``Policies``, and the
    ``AWS::IAM::Policy``/``ManagedPolicy`` resources attached to it), resolved by ``resolve``.

    A Resource that cannot be resolved (a resource the emulator does not create) is replaced by a
    value no request carries: the Allow grants nothing here. A Deny that cannot be resolved
    raises (dropping it would allow too much)."""
    resources = template.get("Resources", {})
    role = resources[role_id].get("Properties", {})
    documents = [p["PolicyDocument"] for p in role.get("Policies", [])]
    for spec in resources.values():
        if spec.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            props = spec.get("Properties", {})
            if {"Ref": role_id} in props.get("Roles", []):
                documents.append(props["PolicyDocument"])
    return [_resolve_statement(s, resolve) for d in documents for s in _as_list(d["Statement"])]


def _resolve_statement(statement: Mapping[str, Any], resolve: Callable[[Any], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in statement.items():
        if key not in ("Resource", "NotResource"):
            out[key] = resolve(value)
            continue
        items = []
        for item in _as_list(value):
            try:
                items.append(resolve(item))
            except ValueError:
                if statement.get("Effect") == "Deny" or key == "NotResource":
                    raise
                # (a valid ARN: moto's IAM validates the policies put on its roles)
                digest = hashlib.sha256(json.dumps(item, sort_keys=True).encode()).hexdigest()[:16]
                items.append(f"arn:aws:etl-local-unresolved:::{digest}")
        out[key] = items
    return out


# The name of the inline policy that holds a deployed role's template statements.
TEMPLATE_POLICY = "etl-local-template"


def policy_document(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


class RoleRegistry:
    """Role ARN -> its statements, read from the emulator's IAM (moto's backend in this process).

    The deploy (``etl_local.deploy``) puts each role's template statements as an inline policy
    through the IAM API, so they live with the emulator: in the background server process of
    ``etl local up`` as well as in the e2e tests' in-process emulator, reset with it, and
    editable like on AWS (``put_role_policy``/``delete_role_policy``)."""

    def statements(self, role_arn: str) -> list[dict[str, Any]] | None:
        from moto.iam.exceptions import NotFoundException
        from moto.iam.models import iam_backends

        account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ACCOUNT
        try:
            role = iam_backends[account]["aws"].get_role_by_arn(role_arn)
        except NotFoundException:
            return None
        out: list[dict[str, Any]] = []
        for document in list(role.policies.values()):
            out += _parsed(document)
        return out


@functools.lru_cache(maxsize=256)
def _parsed(document: str) -> tuple[dict[str, Any], ...]:
    """A policy document's statements (parsed once: every call of a function reads them)."""
    return tuple(_as_list(json.loads(document).get("Statement", [])))


ROLES = RoleRegistry()


# ---------------------------------------------------------------------------------------------
# Enforcement


@dataclass(frozen=True)
class Principal:
    """Who makes a call: a role session (the function's name, or the state machine's)."""

    role_arn: str
    session: str

    @property
    def arn(self) -> str:
        role = self.role_arn.rsplit("/", 1)[-1]
        return f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{self.session}"


# The principal of the function running on this thread (and on pool threads it submits work
# to: see _submit_in_context). OPERATOR marks test/CLI code that runs handler code on purpose.
OPERATOR = Principal("operator", "operator")
_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "etl_local_iam_principal", default=None
)


@contextlib.contextmanager
def acting_as(principal: Principal) -> Iterator[None]:
    """Run the body as ``principal`` (the Lambda runtime: the invoked function's role)."""
    token = _PRINCIPAL.set(principal)
    try:
        yield
    finally:
        _PRINCIPAL.reset(token)


def operator() -> contextlib.AbstractContextManager[None]:
    """Test code that calls handler code itself, as the operator (not subject to IAM)."""
    return acting_as(OPERATOR)


def current() -> Principal | None:
    return _PRINCIPAL.get()


class Unattributed(RuntimeError):
    """Handler code made an AWS call that no function can be charged with."""


# Status code and error code AWS answers a refused call with, per service.
_DENIED_CODE = {"s3": "AccessDenied", "sns": "AuthorizationError"}


def denial_message(principal: Principal, need: Need, decision: str) -> str:
    why = (
        "with an explicit deny in an identity-based policy"
        if decision == EXPLICIT_DENY
        else f"because no identity-based policy allows the {need.action} action"
    )
    return (
        f"User: {principal.arn} is not authorized to perform: {need.action} "
        f"on resource: {need.resource} {why}"
    )


def _denied_response(service: str, message: str) -> tuple[Any, dict[str, Any]]:
    from botocore.awsrequest import AWSResponse

    code = _DENIED_CODE.get(service, "AccessDeniedException")
    http = AWSResponse("https://local-iam.invalid/", 403, {}, None)
    parsed = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 403, "HTTPHeaders": {}},
    }
    return http, parsed


def _from_handler_code() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith("etl.handlers"):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _to_emulator(request: Any) -> bool:
    """Whether a request goes to the local emulator (which listens on loopback only)."""
    url = str((request or {}).get("url") or "") if isinstance(request, dict) else ""
    host = urllib.parse.urlsplit(url).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


def _service_name(model: Any) -> str:
    return str(model.service_model.service_name)


@dataclass
class _Checker:
    """The hooks on one client: ``fixed`` is its principal (the state machine's clients), else
    the principal of the running function."""

    region: str
    fixed: Principal | None = None
    unattributed_reason: str = ""

    def principal(self) -> Principal | None:
        if self.fixed is not None:
            return self.fixed
        if self.unattributed_reason:
            raise Unattributed(self.unattributed_reason)
        found = _PRINCIPAL.get()
        if found is None and _from_handler_code():
            raise Unattributed(
                "an AWS call from handler code outside any function invocation: run it through "
                "the Lambda runtime, or wrap test code in etl_local.iam.operator()"
            )
        return None if found is OPERATOR else found

    def record(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if not _ENFORCING.is_set():
            return
        context["etl_local_iam"] = Call(
            "", _service_name(model), model.name, dict(params), region=self.region
        )

    def before_call(self, model: Any, context: dict[str, Any], params: Any = None, **_: Any) -> Any:
        call = context.get("etl_local_iam")
        if call is None or not _ENFORCING.is_set():
            return None
        if _SCOPE["loopback_only"] and not _to_emulator(params):
            # Not a call to the emulator (e.g. a unit test's moto mock in the same process as a
            # session emulator): local mode's IAM is the emulator's, not the process's.
            context.pop("etl_local_iam", None)
            return None
        principal = self.principal()
        if principal is None:
            context.pop("etl_local_iam", None)  # the operator's call
            return None
        call.step = principal.session
        context["etl_local_iam_principal"] = principal
        statements = ROLES.statements(principal.role_arn)
        if statements is None:
            raise Unattributed(f"{principal.arn}: role {principal.role_arn} is not deployed on the emulator")
        for need in needs(call):
            decision = evaluate(statements, need)
            if decision != ALLOW:
                return _denied_response(call.service, denial_message(principal, need, decision))
        return None

    def after_call(
        self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> None:
        """A missing key answers 404 only to a caller that may list the bucket; else 403."""
        call, principal = context.get("etl_local_iam"), context.get("etl_local_iam_principal")
        if call is None or principal is None or call.service != "s3":
            return
        if call.operation not in ("GetObject", "HeadObject") or http_response.status_code != 404:
            return
        need = missing_key_need(call)
        decision = evaluate(ROLES.statements(principal.role_arn) or [], need)
        if decision == ALLOW:
            return
        http_response.status_code = 403
        code = "403" if call.operation == "HeadObject" else "AccessDenied"
        parsed["Error"] = {"Code": code, "Message": denial_message(principal, need, decision)}
        parsed.setdefault("ResponseMetadata", {})["HTTPStatusCode"] = 403

    def attach(self, client: Any) -> Any:
        events = client.meta.events
        events.register("before-parameter-build.*.*", self.record, unique_id=f"etl-iam-record-{id(client)}")
        events.register("before-call.*.*", self.before_call, unique_id=f"etl-iam-check-{id(client)}")
        events.register("after-call.*.*", self.after_call, unique_id=f"etl-iam-status-{id(client)}")
        return client


def _attach_to_handler_client(service: str, client: Any) -> None:
    _Checker(str(client.meta.region_name or "")).attach(client)


# --- context into thread pools ----------------------------------------------------------------
# Handlers fan out on ThreadPoolExecutor (ranged reads, uploads, digests, pyiceberg). A task
# runs in a copy of the submitter's context, so its calls are charged to the same function;
# Map iterations of different functions run concurrently, so a process-wide "current function"
# would be wrong.

_ORIGINAL_SUBMIT = concurrent.futures.ThreadPoolExecutor.submit
EXPECTED_SUBMIT_SIGNATURE = "(self, fn, /, *args, **kwargs)"


def _submit_in_context(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    return _ORIGINAL_SUBMIT(self, contextvars.copy_context().run, fn, *args, **kwargs)


# --- the state machine's service integrations -------------------------------------------------
# moto's Step Functions parser makes every integration call (Lambda, SQS, SNS, DynamoDB ...)
# with a client from boto_client_for(region, service, state_credentials), imported by name into
# each module that uses it; state_credentials.role_arn is the execution's role.

PARSER_CLIENT_MODULE = "moto.stepfunctions.parser.asl.utils.boto_client"
PARSER_CLIENT_FUNCTION = "boto_client_for"
EXPECTED_PARSER_SIGNATURE = (
    "(region: str, service: str, state_credentials: Any = None) -> botocore.client.BaseClient"
)
PARSER_PACKAGE = "moto.stepfunctions.parser"
# Where the states (and their integrations) live; every module there is imported up front.
PARSER_COMPONENTS = "moto.stepfunctions.parser.asl.component"


class PatchTargetChanged(RuntimeError):
    """moto or the stdlib is not what this module's patches were written against."""


def _parser_original() -> Callable[..., Any]:
    module = importlib.import_module(PARSER_CLIENT_MODULE)
    fn = getattr(module, PARSER_CLIENT_FUNCTION, None)
    if fn is None:
        raise PatchTargetChanged(f"{PARSER_CLIENT_MODULE}.{PARSER_CLIENT_FUNCTION} no longer exists")
    return fn  # type: ignore[no-any-return]  # (its own module is never patched)


def _parser_users() -> list[Any]:
    """Every module of the parser that imported boto_client_for by name (all are imported
    first: one imported after the patch would keep the unchecked original)."""
    import pkgutil

    package = importlib.import_module(PARSER_COMPONENTS)
    for info in pkgutil.walk_packages(package.__path__, PARSER_COMPONENTS + "."):
        importlib.import_module(info.name)
    candidates = (_parser_original(), _state_machine_client)
    return [
        module
        for name, module in list(sys.modules.items())
        if name.startswith(PARSER_PACKAGE + ".")
        and not name.endswith(".boto_client")
        and any(getattr(module, PARSER_CLIENT_FUNCTION, None) is c for c in candidates)
    ]


def check_patch_targets() -> None:
    """Raise :class:`PatchTargetChanged` unless moto's parser and the executor are what the
    patches expect (the e2e suite calls it through :func:`install`)."""
    sig = str(inspect.signature(_parser_original()))
    if sig != EXPECTED_PARSER_SIGNATURE:
        raise PatchTargetChanged(
            f"{PARSER_CLIENT_FUNCTION} signature is {sig}, expected {EXPECTED_PARSER_SIGNATURE}"
        )
    submit_sig = str(inspect.signature(_ORIGINAL_SUBMIT))
    if submit_sig != EXPECTED_SUBMIT_SIGNATURE:
        raise PatchTargetChanged(f"ThreadPoolExecutor.submit signature is {submit_sig}")
    users = [m.__name__ for m in _parser_users()]
    if not any(u.endswith("lambda_eval_utils") for u in users) or not any(
        u.endswith("state_task_service_sqs") for u in users
    ):
        raise PatchTargetChanged(
            f"the parser's Lambda/SQS tasks no longer use {PARSER_CLIENT_FUNCTION}: {users}"
        )


def _state_machine_client(region: str, service: str, state_credentials: Any = None) -> Any:
    client = _parser_original()(region, service, state_credentials)
    role_arn = getattr(state_credentials, "role_arn", None)
    if role_arn:
        return _Checker(region, fixed=Principal(str(role_arn), "StepFunctions")).attach(client)
    reason = f"a Step Functions {service} call without the execution's role"
    return _Checker(region, unattributed_reason=reason).attach(client)


_ENFORCING = threading.Event()
_install_lock = threading.Lock()
_installs = {"count": 0}
# The emulator enforces IAM on the calls that reach it (loopback) only; the unit tests of this
# module install it on moto's in-process mock, where every call counts.
_SCOPE = {"loopback_only": False}


def install(loopback_only: bool = False) -> None:
    """Enforce IAM in this process (the emulator calls it on start with ``loopback_only``;
    nested starts count)."""
    from etl.aws import clients

    with _install_lock:
        check_patch_targets()
        _installs["count"] += 1
        if _installs["count"] > 1:
            return
        _SCOPE["loopback_only"] = loopback_only
        for module in _parser_users():
            setattr(module, PARSER_CLIENT_FUNCTION, _state_machine_client)
        concurrent.futures.ThreadPoolExecutor.submit = _submit_in_context  # type: ignore[method-assign]
        clients.on_client_created(_attach_to_handler_client)
        clients.reset_clients()  # clients made before now have no hooks
        _ENFORCING.set()


def uninstall() -> None:
    """Undo :func:`install` when the last emulator stops."""
    from etl.aws import clients

    with _install_lock:
        if _installs["count"] == 0:
            return
        _installs["count"] -= 1
        if _installs["count"] > 0:
            return
        _ENFORCING.clear()
        original = _parser_original()
        for module in _parser_users():
            setattr(module, PARSER_CLIENT_FUNCTION, original)
        concurrent.futures.ThreadPoolExecutor.submit = _ORIGINAL_SUBMIT  # type: ignore[method-assign]
        clients.remove_client_hook(_attach_to_handler_client)
        clients.reset_clients()


def enforcing() -> bool:
    """True while an emulator in this process enforces IAM."""
    return _ENFORCING.is_set()
