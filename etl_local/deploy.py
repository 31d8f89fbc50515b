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
from pathlib import Path
from typing import Any

from etl.stack_outputs import Outputs
from etl_local.relay import RELAY_QUEUE_PREFIX, TARGET_TAG

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_SUFFIX = "local"
ROLE_NAME = "etl-local-execution-role"


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


def synth_primary_template(suffix: str = LOCAL_SUFFIX, cache_dir: Path | None = None) -> dict[str, Any]:
    """The primary stack's template, synthesized in-process by engineer A's tooling.

    Cached under ``.etl-local/templates`` by a hash of the context, the CDK package versions and
    every file the template depends on (a synth costs seconds; the cache is invalidated by any
    change to ``infra/``, ``etl/``, ``app.py``, ``cdk.json``).
    """
    context = {"environmentSuffix": suffix}
    cache_dir = cache_dir or REPO_ROOT / ".etl-local" / "templates"
    cached = cache_dir / f"{_infra_fingerprint(context)}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    from infra.template_tools import synth_templates  # importing infra quiets jsii (node_env)

    templates = synth_templates(context)
    template = pick_primary(templates, suffix)
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
            name = f"{ROLE_NAME}"
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
    """Create every emulated resource of ``template``; return the stack's outputs."""
    r = Resolver(region, account)
    _plan_names(template, r)
    # SQS URLs must carry the emulator's endpoint.
    for lid, attr in list(r.attrs):
        if attr == "QueueUrl":
            url = f"{endpoint}/{account}/{r.attrs[(lid, 'QueueName')]}"
            r.attrs[(lid, attr)] = url
            r.refs[lid] = url

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint, region_name=region)

    resources = template.get("Resources", {})
    # Only the types created below are emulated. The rest (IAM, KMS, log groups, alarms, the
    # dashboard, CDK's Node.js custom resources) has no behaviour in a local run; anything the
    # workflow references but we do not emulate fails when the definition is resolved.
    by_type: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for lid, spec in resources.items():
        by_type.setdefault(spec.get("Type", ""), []).append((lid, spec))

    iam = client("iam")
    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(
            RoleName=ROLE_NAME,
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )

    s3 = client("s3")
    for lid, spec in by_type.get("AWS::S3::Bucket", []):
        name = r.refs[lid]
        s3.create_bucket(Bucket=name)
        p = _props(spec)
        if (p.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if (p.get("NotificationConfiguration") or {}).get("EventBridgeConfiguration") is not None:
            s3.put_bucket_notification_configuration(
                Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
    # CDK turns `event_bridge_enabled=True` into a custom resource on the bucket.
    for _lid, spec in by_type.get("Custom::S3BucketNotifications", []):
        p = _props(spec)
        if "EventBridgeConfiguration" in (p.get("NotificationConfiguration") or {}):
            name = resolve(p["BucketName"], r)
            s3.put_bucket_notification_configuration(
                Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )

    ddb = client("dynamodb")
    for lid, spec in by_type.get("AWS::DynamoDB::Table", []):
        p = _props(spec)
        ddb.create_table(
            TableName=r.refs[lid],
            KeySchema=p["KeySchema"],
            AttributeDefinitions=p["AttributeDefinitions"],
            BillingMode=p.get("BillingMode", "PAY_PER_REQUEST"),
            **{k: p[k] for k in ("GlobalSecondaryIndexes",) if k in p},
        )

    sqs = client("sqs")
    queues: dict[str, dict[str, Any]] = {}
    for lid, spec in by_type.get("AWS::SQS::Queue", []):
        p = _props(spec)
        attrs = {}
        for key in ("FifoQueue", "ContentBasedDeduplication", "VisibilityTimeout", "MessageRetentionPeriod"):
            if key in p:
                value = p[key]
                attrs[key] = str(value).lower() if isinstance(value, bool) else str(value)
        sqs.create_queue(QueueName=r.attrs[(lid, "QueueName")], Attributes=attrs)
        queues[lid] = p
    for lid, p in queues.items():
        if p.get("RedrivePolicy"):
            redrive = resolve(p["RedrivePolicy"], r)
            sqs.set_queue_attributes(QueueUrl=r.refs[lid], Attributes={"RedrivePolicy": json.dumps(redrive)})

    sns = client("sns")
    for lid, _spec in by_type.get("AWS::SNS::Topic", []):
        sns.create_topic(Name=r.attrs[(lid, "TopicName")])

    lam = client("lambda")
    role_arn = f"arn:aws:iam::{account}:role/{ROLE_NAME}"
    envs: dict[str, dict[str, str]] = {}
    code = _dummy_zip()
    for lid, spec in by_type.get("AWS::Lambda::Function", []):
        p = _props(spec)
        if not str(p.get("Runtime", "python")).startswith("python"):
            continue  # CDK's own helpers (Node.js custom-resource providers) do nothing locally
        if p.get("Handler") in LOCAL_SKIPPED_HANDLERS:
            continue
        module = str(p.get("Handler", "")).rpartition(".")[0]
        if not module or importlib.util.find_spec(module) is None:
            raise TemplateError(f"{lid}: handler {p.get('Handler')!r} is not importable here")
        env = resolve((p.get("Environment") or {}).get("Variables") or {}, r)
        env = {k: str(v) for k, v in env.items()}
        if chunk_size_bytes:
            env["CHUNK_SIZE_BYTES"] = str(int(chunk_size_bytes))
        lam.create_function(
            FunctionName=r.refs[lid],
            Runtime=p.get("Runtime", "python3.12"),
            Role=role_arn,
            Handler=p["Handler"],
            Code={"ZipFile": code},
            Timeout=int(p.get("Timeout", 900)),
            MemorySize=int(p.get("MemorySize", 3072)),
            Environment={"Variables": env},
        )
        envs[lid] = env

    sfn = client("stepfunctions")
    machines = by_type.get("AWS::StepFunctions::StateMachine", [])
    if len(machines) != 1:
        raise TemplateError(f"expected one state machine in the template, found {len(machines)}")
    sm_lid, sm_spec = machines[0]
    p = _props(sm_spec)
    if "DefinitionString" in p:
        definition = resolve(p["DefinitionString"], r)
    elif "Definition" in p:
        definition = json.dumps(resolve(p["Definition"], r))
    else:
        raise TemplateError("state machine has neither DefinitionString nor Definition")
    if p.get("DefinitionSubstitutions"):
        subs = resolve(p["DefinitionSubstitutions"], r)
        for k, v in subs.items():
            definition = definition.replace(f"${{{k}}}", str(v))
    json.loads(definition)  # must be JSON after resolution
    sm_arn = sfn.create_state_machine(
        name=r.attrs[(sm_lid, "Name")],
        definition=definition,
        roleArn=role_arn,
        type=p.get("StateMachineType", "STANDARD"),
    )["stateMachineArn"]

    events = client("events")
    function_arns = {r.attrs[(lid, "Arn")] for lid in envs}
    for lid, spec in by_type.get("AWS::Events::Rule", []):
        rp = _props(spec)
        if "EventPattern" not in rp:
            # A schedule (the reconcile sweep): moto fires no schedules. Run its target with
            # the rule's input instead (`etl local sweep`, the e2e tests); docs/local-mode.md.
            continue
        targets = rp.get("Targets") or []
        target_arns = [resolve(t.get("Arn"), r) for t in targets]
        # The rule that starts the workflow, and rules whose target is one of our functions
        # (the reconcile rule on execution status changes).
        relayed = [a for a in target_arns if a == sm_arn or a in function_arns]
        if not relayed:
            continue
        pattern = resolve(rp["EventPattern"], r)
        rule_name = r.refs[lid]
        events.put_rule(Name=rule_name, EventPattern=json.dumps(pattern), State=rp.get("State", "ENABLED"))
        relay_name = f"{RELAY_QUEUE_PREFIX}{hashlib.sha256(rule_name.encode()).hexdigest()[:12]}"
        sqs.create_queue(QueueName=relay_name, tags={TARGET_TAG: relayed[0]})["QueueUrl"]
        relay_arn = f"arn:aws:sqs:{region}:{account}:{relay_name}"
        # moto raises on a Step Functions target (and then drops the other targets), so the
        # relay queue is the rule's only target here; the relay starts the real target.
        events.put_targets(Rule=rule_name, Targets=[{"Id": "etl-local-relay", "Arn": relay_arn}])

    # The stack's own Outputs section, resolved like everything else (what describe_stacks gives).
    raw: dict[str, str] = {}
    for out_id, out in (template.get("Outputs") or {}).items():
        try:
            raw[out_id] = str(resolve(out["Value"], r))
        except ValueError:  # TemplateError or template_tools.UnresolvableIntrinsic
            continue  # e.g. a dashboard name: nothing local reads it
    first_env = next(iter(envs.values()), {})
    outputs = Outputs.from_stack_outputs(raw, region=region, endpoint=endpoint, stack_name=stack_name)
    if "CHUNK_SIZE_BYTES" in first_env:
        outputs.chunk_size_bytes = int(first_env["CHUNK_SIZE_BYTES"])
    outputs.glue_database = outputs.glue_database or first_env.get("GLUE_DATABASE")
    if outputs.glue_database:
        deploy_dataset(client("glue"), outputs.glue_database, outputs.bucket, endpoint, region)
    return outputs


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
