"""Create the primary stack's resources on the emulator, from the synthesized template.

Nothing here restates the workflow: names, key schema, queue attributes, function handlers and
environments, the rule's event pattern and the state machine's definition all come from the
template CDK synthesizes. The state machine is created through the Step Functions API (moto's
CloudFormation would land it in the non-executing backend) from the template's
``DefinitionString`` with every intrinsic resolved to the emulated ARN, URL or name; an
intrinsic we cannot resolve is an error, never a guess.

Resources with no behaviour in the local run (IAM, log groups, dashboards, alarms, KMS,
custom-resource providers, layers' SSM lookups) are recorded but not created.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.stack_outputs import Outputs
from etl_local.relay import RELAY_QUEUE_PREFIX, RULE_TAG, SCHEDULE_TAG, target_tags

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_SUFFIX = "local"


def role_name(logical_id: str, region: str) -> str:
    """The emulated name of the template's role ``logical_id`` (unique per region: both stacks'
    roles are enforced in one emulator; IAM names are at most 64 characters)."""
    digest = hashlib.sha256(f"{region}/{logical_id}".encode()).hexdigest()[:8]
    return f"{logical_id[:48]}-{digest}"


# Python functions that only serve CloudFormation custom resources: local mode does their work
# itself (the dataset's tables are created through pyiceberg when the emulator starts).
LOCAL_SKIPPED_HANDLERS = frozenset({"etl.handlers.ensure_tables.handler"})


class TemplateError(ValueError):
    """The template holds something the local deploy does not know how to emulate."""


# ---------------------------------------------------------------------------------------------
# Templates


# What the synthesized template depends on besides the context: the app, its configuration,
# the whole `infra/` package, the whole `etl/` tree (infra imports etl.contracts and etl.errors,
# whose RETRYABLE_ERRORS become the state machine's Retry lists, and the Lambda asset hash is
# computed over every file of `etl/`), and the versions of the libraries that synthesize it.
FINGERPRINT_FILES = ("app.py", "cdk.json")
FINGERPRINT_TREES = ("infra", "etl")
FINGERPRINT_PACKAGES = ("aws-cdk-lib", "constructs", "cdk-nag")


def _fingerprint_files(root: Path) -> list[Path]:
    files = [root / name for name in FINGERPRINT_FILES]
    for tree in FINGERPRINT_TREES:
        for f in sorted((root / tree).rglob("*")):
            parts = f.relative_to(root).parts
            if not f.is_file() or "__pycache__" in parts or any(p.startswith(".") for p in parts):
                continue
            if f.suffix == ".pyc":
                continue
            files.append(f)
    return files


def _package_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in FINGERPRINT_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _infra_fingerprint(context: dict[str, str], root: Path = REPO_ROOT) -> str:
    """The template cache key: context, package versions and every file the template depends on."""
    h = hashlib.sha256(json.dumps(context, sort_keys=True).encode())
    h.update(json.dumps(_package_versions(), sort_keys=True).encode())
    for f in _fingerprint_files(root):
        if f.exists():
            h.update(str(f.relative_to(root)).encode())
            h.update(len(f.read_bytes()).to_bytes(8, "big"))
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def synth_primary_template(
    suffix: str = LOCAL_SUFFIX,
    cache_dir: Path | None = None,
    context: dict[str, str] | None = None,
    *,
    dr: bool = False,
) -> dict[str, Any]:
    """The primary stack's template, synthesized in-process by engineer A's tooling.

    Cached under ``.etl-local/templates`` by a hash of the context, the CDK package versions and
    every file the template depends on (a synth costs seconds; the cache is invalidated by any
    change to ``infra/``, ``etl/``, ``app.py``, ``cdk.json``).

    ``context``: more ``-c`` values (e.g. ``{"maxFilesInFlight": "3"}``); part of the cache key.
    """
    context = {**(context or {}), "environmentSuffix": suffix}
    cache_dir = cache_dir or REPO_ROOT / ".etl-local" / "templates"
    cached = cache_dir / f"{_infra_fingerprint(context)}{'-dr' if dr else ''}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    from infra.template_tools import synth_templates  # importing infra quiets jsii (node_env)

    templates = synth_templates(context)
    template = pick_dr(templates, suffix) if dr else pick_primary(templates, suffix)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Atomic: parallel test workers and CLI runs may read the cache while it is written.
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(template))
    tmp.replace(cached)
    return template


def pick_primary(templates: dict[str, dict[str, Any]], suffix: str = LOCAL_SUFFIX) -> dict[str, Any]:
    """The primary (us-east-1) stack, by the app's own naming; else the one whose rule is enabled."""
    try:
        from infra.application import primary_stack_name

        if primary_stack_name(suffix) in templates:
            return templates[primary_stack_name(suffix)]
    except ImportError:
        pass
    candidates = []
    for name, tpl in templates.items():
        rules = [r for r in tpl.get("Resources", {}).values() if r.get("Type") == "AWS::Events::Rule"]
        enabled = any((r.get("Properties", {}).get("State", "ENABLED") == "ENABLED") for r in rules)
        is_dr = "dr" in name.lower().replace("-", " ").split() or "disaster" in name.lower()
        candidates.append((not enabled, is_dr, name))
    if not candidates:
        raise TemplateError("synth produced no stacks")
    candidates.sort()
    return templates[candidates[0][2]]


def pick_dr(templates: dict[str, dict[str, Any]], suffix: str = LOCAL_SUFFIX) -> dict[str, Any]:
    """The disaster-recovery (eu-west-1) stack, by the app's own naming."""
    from infra.application import dr_stack_name

    if dr_stack_name(suffix) not in templates:
        raise TemplateError(f"synth produced no {dr_stack_name(suffix)} stack")
    return templates[dr_stack_name(suffix)]


# ---------------------------------------------------------------------------------------------
# Intrinsics


class Resolver:
    """Maps ``Ref``/``Fn::GetAtt`` and pseudo parameters to emulated values."""

    def __init__(self, region: str, account: str) -> None:
        self.region = region
        self.account = account
        self.refs: dict[str, str] = {}
        self.attrs: dict[tuple[str, str], str] = {}

    def pseudo(self, name: str) -> str:
        values = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": f"etl-{LOCAL_SUFFIX}",
        }
        if name not in values:
            raise TemplateError(f"unknown pseudo parameter {name}")
        return values[name]

    def ref(self, logical_id: str) -> str:
        if logical_id.startswith("AWS::"):
            return self.pseudo(logical_id)
        if logical_id not in self.refs:
            raise TemplateError(f"Ref to {logical_id!r}, which the local deploy does not emulate")
        return self.refs[logical_id]

    def get_att(self, logical_id: str, attr: str) -> str:
        key = (logical_id, attr)
        if key not in self.attrs:
            raise TemplateError(f"Fn::GetAtt {logical_id}.{attr} is not emulated")
        return self.attrs[key]


def resolve(value: Any, resolver: Resolver) -> Any:
    """Resolve ``Ref``/``Fn::GetAtt``/``Fn::Join`` with engineer A's resolver (fails on the rest)."""
    from infra.template_tools import resolve_intrinsics

    return resolve_intrinsics(
        value, lambda lid, attr: resolver.ref(lid) if attr is None else resolver.get_att(lid, attr)
    )


# ---------------------------------------------------------------------------------------------
# Deploy


def _dummy_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("README.txt", "local mode runs the real handler in-process (etl_local.lambda_runtime)\n")
    return buf.getvalue()


def _props(res: dict[str, Any]) -> dict[str, Any]:
    return dict(res.get("Properties") or {})


def _plan_names(template: dict[str, Any], r: Resolver) -> None:
    """Fill the resolver with every emulated resource's physical name/ARN/URL."""
    region, acct = r.region, r.account
    res = template.get("Resources", {})
    for lid, spec in res.items():
        t, p = spec.get("Type"), _props(spec)
        low = lid.lower()[:40]
        if t == "AWS::S3::Bucket":
            name = resolve(p.get("BucketName", f"{low}-{LOCAL_SUFFIX}"), r)
            r.refs[lid] = name
            r.attrs[(lid, "Arn")] = f"arn:aws:s3:::{name}"
            r.attrs[(lid, "DomainName")] = f"{name}.s3.amazonaws.com"
            r.attrs[(lid, "RegionalDomainName")] = f"{name}.s3.{region}.amazonaws.com"
        elif t == "AWS::DynamoDB::Table":
            name = resolve(p.get("TableName", f"{low}-{LOCAL_SUFFIX}"), r)
            r.refs[lid] = name
            r.attrs[(lid, "Arn")] = f"arn:aws:dynamodb:{region}:{acct}:table/{name}"
        elif t == "AWS::SQS::Queue":
            name = resolve(p.get("QueueName", f"{low}-{LOCAL_SUFFIX}"), r)
            url = f"http://localhost/{acct}/{name}"  # endpoint filled in by deploy()
            r.refs[lid] = url
            r.attrs[(lid, "QueueUrl")] = url
            r.attrs[(lid, "QueueName")] = name
            r.attrs[(lid, "Arn")] = f"arn:aws:sqs:{region}:{acct}:{name}"
        elif t == "AWS::SNS::Topic":
            name = resolve(p.get("TopicName", f"{low}-{LOCAL_SUFFIX}"), r)
            arn = f"arn:aws:sns:{region}:{acct}:{name}"
            r.refs[lid] = arn
            r.attrs[(lid, "TopicArn")] = arn
            r.attrs[(lid, "TopicName")] = name
        elif t == "AWS::Lambda::Function":
            name = resolve(p.get("FunctionName", f"{low}-{LOCAL_SUFFIX}"), r)
            r.refs[lid] = name
            r.attrs[(lid, "Arn")] = f"arn:aws:lambda:{region}:{acct}:function:{name}"
        elif t == "AWS::StepFunctions::StateMachine":
            name = resolve(p.get("StateMachineName", f"{low}-{LOCAL_SUFFIX}"), r)
            arn = f"arn:aws:states:{region}:{acct}:stateMachine:{name}"
            r.refs[lid] = arn
            r.attrs[(lid, "Arn")] = arn
            r.attrs[(lid, "Name")] = name
        elif t == "AWS::Events::Rule":
            name = resolve(p.get("Name", f"{low}-{LOCAL_SUFFIX}"), r)
            r.refs[lid] = name
            r.attrs[(lid, "Arn")] = f"arn:aws:events:{region}:{acct}:rule/{name}"
        elif t == "AWS::IAM::Role":
            name = role_name(lid, region)
            r.refs[lid] = name
            r.attrs[(lid, "Arn")] = f"arn:aws:iam::{acct}:role/{name}"
        elif t == "AWS::Logs::LogGroup":
            name = resolve(p.get("LogGroupName", f"/local/{low}"), r)
            r.refs[lid] = name
            r.attrs[(lid, "Arn")] = f"arn:aws:logs:{region}:{acct}:log-group:{name}:*"
        elif t == "AWS::Glue::Database":
            # The database and its Iceberg tables are created locally through pyiceberg (the
            # emulator hosts the catalog); the name is planned so the stack's outputs resolve.
            r.refs[lid] = resolve(p["DatabaseInput"]["Name"], r)
        elif t == "AWS::Athena::WorkGroup":
            r.refs[lid] = resolve(p["Name"], r)  # no Athena locally: `etl query` uses DuckDB
        elif t == "AWS::KMS::Key":
            r.refs[lid] = f"local-{low}"
            r.attrs[(lid, "Arn")] = f"arn:aws:kms:{region}:{acct}:key/local-{low}"


@dataclass
class _Deploy:
    """One stack's deployment on the emulator: the template, the resolver and the clients."""

    template: dict[str, Any]
    session: Any
    endpoint: str
    r: Resolver
    chunk_size_bytes: int | None = None
    by_type: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    queues: dict[str, dict[str, Any]] = field(default_factory=dict)
    envs: dict[str, dict[str, str]] = field(default_factory=dict)
    state_machine_arn: str = ""

    @property
    def region(self) -> str:
        return self.r.region

    @property
    def account(self) -> str:
        return self.r.account

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint, region_name=self.region)

    def of_type(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        return self.by_type.get(kind, [])


def deploy(
    template: dict[str, Any],
    session: Any,
    endpoint: str,
    *,
    chunk_size_bytes: int | None = None,
    region: str = "us-east-1",
    account: str = "123456789012",
    stack_name: str | None = None,
) -> Outputs:
    """Create every emulated resource of ``template`` in ``region``; return the stack's outputs."""
    d = _Deploy(template, session, endpoint, Resolver(region, account), chunk_size_bytes)
    _plan_names(template, d.r)
    # SQS URLs must carry the emulator's endpoint.
    for lid, attr in list(d.r.attrs):
        if attr == "QueueUrl":
            url = f"{endpoint}/{account}/{d.r.attrs[(lid, 'QueueName')]}"
            d.r.attrs[(lid, attr)] = url
            d.r.refs[lid] = url
    # Only the types created below are emulated. The rest (IAM, KMS, log groups, alarms, the
    # dashboard, CDK's Node.js custom resources) has no behaviour in a local run; anything the
    # workflow references but we do not emulate fails when the definition is resolved.
    for lid, spec in template.get("Resources", {}).items():
        d.by_type.setdefault(spec.get("Type", ""), []).append((lid, spec))
    _create_roles(d)
    _create_buckets(d)
    _create_tables(d)
    _create_queues(d)
    for lid, _spec in d.of_type("AWS::SNS::Topic"):
        d.client("sns").create_topic(Name=d.r.attrs[(lid, "TopicName")])
    _create_functions(d)
    _create_state_machine(d)
    _create_rules(d)
    return _stack_outputs(d, stack_name)


def _create_roles(d: _Deploy) -> None:
    """Every role of the template with its identity policies (resolved, as one inline policy):
    the emulator's IAM check (etl_local/iam.py) reads them from there. Each function runs as
    its own role, the state machine as its."""
    from etl_local import iam as local_iam

    iam = d.client("iam")
    for lid, _spec in d.of_type("AWS::IAM::Role"):
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
            iam.create_role(
                RoleName=d.r.refs[lid],
                AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
            )
        statements = local_iam.role_statements(d.template, lid, lambda value: resolve(value, d.r))
        iam.put_role_policy(
            RoleName=d.r.refs[lid],
            PolicyName=local_iam.TEMPLATE_POLICY,
            PolicyDocument=local_iam.policy_document(statements),
        )


def _create_buckets(d: _Deploy) -> None:
    s3 = d.client("s3")
    for lid, spec in d.of_type("AWS::S3::Bucket"):
        name = d.r.refs[lid]
        location = (
            {} if d.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": d.region}}
        )
        s3.create_bucket(Bucket=name, **location)
        p = _props(spec)
        if (p.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if (p.get("NotificationConfiguration") or {}).get("EventBridgeConfiguration") is not None:
            s3.put_bucket_notification_configuration(
                Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
    # CDK turns `event_bridge_enabled=True` into a custom resource on the bucket.
    for _lid, spec in d.of_type("Custom::S3BucketNotifications"):
        p = _props(spec)
        if "EventBridgeConfiguration" in (p.get("NotificationConfiguration") or {}):
            s3.put_bucket_notification_configuration(
                Bucket=resolve(p["BucketName"], d.r),
                NotificationConfiguration={"EventBridgeConfiguration": {}},
            )


def _create_tables(d: _Deploy) -> None:
    ddb = d.client("dynamodb")
    for lid, spec in d.of_type("AWS::DynamoDB::Table"):
        p = _props(spec)
        ddb.create_table(
            TableName=d.r.refs[lid],
            KeySchema=p["KeySchema"],
            AttributeDefinitions=p["AttributeDefinitions"],
            BillingMode=p.get("BillingMode", "PAY_PER_REQUEST"),
            **{k: p[k] for k in ("GlobalSecondaryIndexes",) if k in p},
        )


def _create_queues(d: _Deploy) -> None:
    sqs = d.client("sqs")
    for lid, spec in d.of_type("AWS::SQS::Queue"):
        p = _props(spec)
        attrs = {}
        for key in ("FifoQueue", "ContentBasedDeduplication", "VisibilityTimeout", "MessageRetentionPeriod"):
            if key in p:
                value = p[key]
                attrs[key] = str(value).lower() if isinstance(value, bool) else str(value)
        sqs.create_queue(QueueName=d.r.attrs[(lid, "QueueName")], Attributes=attrs)
        d.queues[lid] = p
    for lid, p in d.queues.items():
        if p.get("RedrivePolicy"):
            redrive = resolve(p["RedrivePolicy"], d.r)
            sqs.set_queue_attributes(
                QueueUrl=d.r.refs[lid], Attributes={"RedrivePolicy": json.dumps(redrive)}
            )


def _create_functions(d: _Deploy) -> None:
    lam = d.client("lambda")
    code = _dummy_zip()
    for lid, spec in d.of_type("AWS::Lambda::Function"):
        p = _props(spec)
        if not str(p.get("Runtime", "python")).startswith("python"):
            continue  # CDK's own helpers (Node.js custom-resource providers) do nothing locally
        if p.get("Handler") in LOCAL_SKIPPED_HANDLERS:
            continue
        module = str(p.get("Handler", "")).rpartition(".")[0]
        if not module or importlib.util.find_spec(module) is None:
            raise TemplateError(f"{lid}: handler {p.get('Handler')!r} is not importable here")
        env = resolve((p.get("Environment") or {}).get("Variables") or {}, d.r)
        env = {k: str(v) for k, v in env.items()}
        if d.chunk_size_bytes:
            env["CHUNK_SIZE_BYTES"] = str(int(d.chunk_size_bytes))
        lam.create_function(
            FunctionName=d.r.refs[lid],
            Runtime=p.get("Runtime", "python3.12"),
            Role=resolve(p["Role"], d.r),
            Handler=p["Handler"],
            Code={"ZipFile": code},
            Timeout=int(p.get("Timeout", 900)),
            MemorySize=int(p.get("MemorySize", 3072)),
            Environment={"Variables": env},
        )
        d.envs[lid] = env


def _state_machine_definition(d: _Deploy, p: dict[str, Any]) -> str:
    if "DefinitionString" in p:
        definition = resolve(p["DefinitionString"], d.r)
    elif "Definition" in p:
        definition = json.dumps(resolve(p["Definition"], d.r))
    else:
        raise TemplateError("state machine has neither DefinitionString nor Definition")
    if p.get("DefinitionSubstitutions"):
        subs = resolve(p["DefinitionSubstitutions"], d.r)
        for k, v in subs.items():
            definition = definition.replace(f"${{{k}}}", str(v))
    json.loads(definition)  # must be JSON after resolution
    return str(definition)


def _create_state_machine(d: _Deploy) -> None:
    machines = d.of_type("AWS::StepFunctions::StateMachine")
    if len(machines) != 1:
        raise TemplateError(f"expected one state machine in the template, found {len(machines)}")
    sm_lid, sm_spec = machines[0]
    p = _props(sm_spec)
    d.state_machine_arn = d.client("stepfunctions").create_state_machine(
        name=d.r.attrs[(sm_lid, "Name")],
        definition=_state_machine_definition(d, p),
        roleArn=resolve(p["RoleArn"], d.r),
        type=p.get("StateMachineType", "STANDARD"),
    )["stateMachineArn"]


def _create_rules(d: _Deploy) -> None:
    """Every enabled rule whose targets run here is relayed (etl_local/relay.py): moto raises on
    a Step Functions target (and then drops the other targets), runs Lambda targets inside the
    sender's request, and never fires schedules."""
    events, sqs = d.client("events"), d.client("sqs")
    runnable = {d.state_machine_arn}
    runnable |= {d.r.attrs[(lid, "Arn")] for lid in d.envs}
    runnable |= {d.r.attrs[(lid, "Arn")] for lid in d.queues}
    for lid, spec in d.of_type("AWS::Events::Rule"):
        rp = _props(spec)
        if rp.get("State", "ENABLED") != "ENABLED":
            continue
        target_arns = [resolve(t.get("Arn"), d.r) for t in rp.get("Targets") or []]
        if not target_arns or not set(target_arns) <= runnable:
            continue  # a rule whose targets do nothing locally
        if "ScheduleExpression" in rp and any("Input" in t for t in rp.get("Targets") or []):
            # The reconcile sweep and the table maintenance (schedules whose target gets a
            # fixed input): their bounds are minutes, hours and days of real time (stale files,
            # partner due-by, snapshot retention, orphan age), so the compressed clock would
            # fire them pointlessly and page in the background of unrelated runs. Run them on
            # demand: `etl sweep`, or invoke MaintainTables (docs/local-mode.md).
            continue
        rule_name = d.r.refs[lid]
        relay_name = f"{RELAY_QUEUE_PREFIX}{hashlib.sha256(rule_name.encode()).hexdigest()[:12]}"
        tags = {**target_tags(target_arns), RULE_TAG: d.r.attrs[(lid, "Arn")]}
        if "ScheduleExpression" in rp:
            sqs.create_queue(QueueName=relay_name, tags={**tags, SCHEDULE_TAG: rp["ScheduleExpression"]})
            continue
        pattern = resolve(rp["EventPattern"], d.r)
        events.put_rule(Name=rule_name, EventPattern=json.dumps(pattern), State="ENABLED")
        sqs.create_queue(QueueName=relay_name, tags=tags)
        relay_arn = f"arn:aws:sqs:{d.region}:{d.account}:{relay_name}"
        events.put_targets(Rule=rule_name, Targets=[{"Id": "etl-local-relay", "Arn": relay_arn}])


def _stack_outputs(d: _Deploy, stack_name: str | None) -> Outputs:
    """The stack's own Outputs section, resolved like everything else (what describe_stacks gives)."""
    raw: dict[str, str] = {}
    for out_id, out in (d.template.get("Outputs") or {}).items():
        try:
            raw[out_id] = str(resolve(out["Value"], d.r))
        except ValueError:  # TemplateError or template_tools.UnresolvableIntrinsic
            continue  # e.g. a dashboard name: nothing local reads it
    first_env = next(iter(d.envs.values()), {})
    outputs = Outputs.from_stack_outputs(raw, region=d.region, endpoint=d.endpoint, stack_name=stack_name)
    if "CHUNK_SIZE_BYTES" in first_env:
        outputs.chunk_size_bytes = int(first_env["CHUNK_SIZE_BYTES"])
    outputs.glue_database = outputs.glue_database or first_env.get("GLUE_DATABASE")
    if outputs.glue_database:
        deploy_dataset(d.client("glue"), outputs.glue_database, outputs.bucket, d.endpoint, d.region)
    return outputs


PRIMARY_REGION = "us-east-1"
DR_REGION = "eu-west-1"
# DR1: what S3 replication copies (both ways; the ledger announced/ included, DR3).
REPLICATED_PREFIXES = ("incoming/", "processed/", "failed/", "manifests/", "announced/")


def deploy_dr(
    session: Any, endpoint: str, suffix: str = LOCAL_SUFFIX, *, chunk_size_bytes: int | None = None
) -> Outputs:
    """The DR stack in eu-west-1 of the same emulator (SPEC DR4)."""
    template = synth_primary_template(suffix, dr=True)
    return deploy(
        template,
        session,
        endpoint,
        chunk_size_bytes=chunk_size_bytes,
        region=DR_REGION,
        stack_name=f"local-dr:{suffix}",
    )


def configure_replication(session: Any, endpoint: str, primary: Outputs, dr: Outputs) -> list[dict[str, Any]]:
    """Tell the emulator's replication relay (etl_local/replication.py) which buckets replicate:
    primary -> DR and DR -> primary, under REPLICATED_PREFIXES."""
    from etl_local.replication import REPLICATION_PARAMETER

    rules = [
        {
            "source": a.bucket,
            "destination": b.bucket,
            "source_region": a.region,
            "destination_region": b.region,
            "prefixes": list(REPLICATED_PREFIXES),
        }
        for a, b in ((primary, dr), (dr, primary))
    ]
    ssm = session.client("ssm", endpoint_url=endpoint, region_name=PRIMARY_REGION)
    ssm.put_parameter(Name=REPLICATION_PARAMETER, Value=json.dumps(rules), Type="String", Overwrite=True)
    return rules


def set_outage(session: Any, endpoint: str, regions: list[str]) -> None:
    """Simulate a regional outage (DR4): the listed regions' rules deliver nothing and their
    buckets neither send nor receive replicas until the outage is cleared (``[]``)."""
    from etl_local.relay import OUTAGE_PARAMETER

    ssm = session.client("ssm", endpoint_url=endpoint, region_name=PRIMARY_REGION)
    ssm.put_parameter(Name=OUTAGE_PARAMETER, Value=",".join(regions) or "-", Type="String", Overwrite=True)


def deploy_dataset(glue: Any, database: str, bucket: str, endpoint: str, region: str) -> dict[str, str]:
    """The dataset on the emulator (SPEC DATA6): the Glue database (CloudFormation's on AWS)
    and both Iceberg tables, created by the custom resource's own code
    (``etl.aws.catalog.ensure_tables``) with real pyiceberg metadata in the emulated bucket."""
    from etl.aws import catalog
    from etl.core.dataset import warehouse
    from etl_local.catalog import emulator_catalog

    with contextlib.suppress(glue.exceptions.AlreadyExistsException):
        glue.create_database(DatabaseInput={"Name": database})
    return catalog.ensure_tables(database, warehouse(bucket), emulator_catalog(endpoint, region))


def set_chunk_size(session: Any, outputs: Outputs, chunk_size_bytes: int) -> None:
    """Override CHUNK_SIZE_BYTES on every deployed function (the `--chunk-mb` of a local run)."""
    lam = session.client("lambda", endpoint_url=outputs.endpoint, region_name=outputs.region)
    for name in outputs.functions.values():
        cfg = lam.get_function_configuration(FunctionName=name)
        env = dict((cfg.get("Environment") or {}).get("Variables") or {})
        env["CHUNK_SIZE_BYTES"] = str(int(chunk_size_bytes))
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": env})
    outputs.chunk_size_bytes = int(chunk_size_bytes)
