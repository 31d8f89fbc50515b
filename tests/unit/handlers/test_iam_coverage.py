"""INF6/OPS5 least privilege, both ways: every AWS call the handlers really make is allowed by
the role the synthesized template gives that function, and every action granted to a function
(logs and X-Ray aside) is used by that function's recorded calls.

moto does not enforce IAM, so a missing grant would pass every other local test and only fail
on AWS. Here the handler chain runs its main paths (plain, gzip, failure + reprocess, re-plan)
while a botocore hook records each call with the step that made it; each call is then
mapped to the IAM actions and resources AWS would authorize it against and evaluated against
that step's role (resolved from the template) by etl_local.iam, the same mapping and evaluator
the local emulator enforces on every call (docs/local-mode.md, "IAM is enforced locally").
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from etl import contracts
from etl_local import iam
from infra.template_tools import resolve_intrinsics, synth_templates

# The names tests/conftest.py gives the mocked bucket and table (asserted below).
TEST_BUCKET = "etl-data-test"
TEST_TABLE = "etl-status-test"
database = "transaction_etl_test"
ACCOUNT = "123456789012"
REGION = "us-east-1"
BUCKET_ARN = f"arn:aws:s3:::{TEST_BUCKET}"
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TEST_TABLE}"
# The reconcile function's other resources, as the template names them (suffix "iam").
TOPIC_NAME = "etl-alerts-iam"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:{TOPIC_NAME}"
RESULT_QUEUE_NAME = "etl-results-iam.fifo"
RESULT_QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{RESULT_QUEUE_NAME}"
STATE_MACHINE_NAME = "etl-pipeline-iam"
RECONCILE = "Reconcile"

# The step running now. A plain global, not a contextvar: the chain runs one step at a time and
# PlanChunks' parallel ranged reads happen on pool threads that must be attributed to it too.
_current = {"step": "?"}


# ---- the roles, from the synthesized template --------------------------------------------------


@pytest.fixture(scope="module")
def allowed() -> dict[str, list[dict[str, Any]]]:
    """Step name -> the statements of its function's role, intrinsics resolved (by the same
    code the local emulator enforces them with: etl_local.iam)."""
    templates = synth_templates({"environmentSuffix": "iam"})
    template = next(t for name, t in templates.items() if name == "EtlPipeline-iam")
    resources = template["Resources"]

    def resolver(logical_id: str, attribute: str | None) -> str:
        kind = resources.get(logical_id, {}).get("Type")
        properties = resources.get(logical_id, {}).get("Properties", {})
        if kind == "AWS::S3::Bucket" and attribute == "Arn":
            return BUCKET_ARN
        if kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            return TABLE_ARN
        if kind == "AWS::SNS::Topic" and attribute is None:
            return TOPIC_ARN
        if kind == "AWS::SQS::Queue" and attribute == "Arn":
            return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{properties['QueueName']}"
        if kind == "AWS::StepFunctions::StateMachine" and attribute is None:
            return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{properties['StateMachineName']}"
        pseudo = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
        if logical_id in pseudo:
            return pseudo[logical_id]
        # Anything else (log groups, KMS keys ...) is not what the handlers call.
        return f"arn:aws:other:::{logical_id}/{attribute}"

    # Every function running this project's code (CDK's own provider functions are not), named
    # like etl.contracts names it; a handler the contracts do not list is named by its handler.
    by_handler = {handler: step for step, (_, handler) in contracts.ALL_FUNCTIONS.items()}
    out: dict[str, list[dict[str, Any]]] = {}
    for fn in resources.values():
        if fn["Type"] != "AWS::Lambda::Function" or not str(fn["Properties"].get("Handler", "")).startswith(
            "etl."
        ):
            continue
        step = by_handler.get(fn["Properties"]["Handler"], fn["Properties"]["Handler"])
        role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
        statements = iam.role_statements(template, role_id, lambda v: resolve_intrinsics(v, resolver))
        # The template names the Glue database after its suffix ("iam"); the mocked catalog
        # is tests/conftest.py's. Same rule (etl.contracts.glue_database), other suffix.
        statements = json.loads(
            json.dumps(statements)
            .replace(f"database/{contracts.glue_database('iam')}", f"database/{database}")
            .replace(f"table/{contracts.glue_database('iam')}/", f"table/{database}/")
        )
        out[step] = statements
    assert set(contracts.ALL_FUNCTIONS) <= set(out)
    return out


_as_list = iam._as_list
Call, Need, needs, is_allowed = iam.Call, iam.Need, iam.needs, iam.is_allowed


def _object(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


# ---- recording the handlers' calls -------------------------------------------------------------


@pytest.fixture
def recorded(chain: Any) -> Iterator[list[Call]]:
    from etl.aws import clients

    calls: list[Call] = []

    def hook(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        call = Call(_current["step"], model.service_model.service_name, model.name, dict(params))
        call.region, call.account = REGION, ACCOUNT
        context["iam_coverage_call"] = call
        calls.append(call)

    def status(http_response: Any, context: dict[str, Any], **_: Any) -> None:
        call = context.get("iam_coverage_call")
        if call is not None:
            call.status = int(http_response.status_code)

    for client in (
        clients.s3(),
        clients.dynamodb(),
        *(clients.client(s) for s in ("sns", "sqs", "stepfunctions", "glue", "ssm")),
        clients.commit_client("glue"),  # the catalog's (etl.aws.catalog.load_catalog)
    ):
        client.meta.events.register("before-parameter-build.*.*", hook)
        client.meta.events.register("after-call.*.*", status)

    def as_step(step: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(event: Any, context: Any) -> Any:
            _current["step"] = step
            try:
                return fn(event, context)
            finally:
                _current["step"] = "?"

        return run

    chain.register = as_step("RegisterFile", chain.register)
    chain.validate = as_step("ValidateHeader", chain.validate)
    chain.plan = as_step("PlanChunks", chain.plan)
    chain.process = as_step("ProcessChunk", chain.process)
    chain.finalize = as_step("Finalize", chain.finalize)
    chain.mark_failed = as_step("MarkFailed", chain.mark_failed)
    from etl.handlers import reconcile, start_files

    chain.start_files = as_step("StartFiles", start_files.handler)
    chain.reconcile = as_step(RECONCILE, reconcile.handler)
    yield calls


def run_scenarios(chain: Any, etl_aws: Any, admission: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every function's main paths, with calls recorded per function."""
    assert (etl_aws.bucket, etl_aws.table_name) == (TEST_BUCKET, TEST_TABLE)
    # DR2: the region role parameter as the template names it (suffix "iam").
    monkeypatch.setenv("REGION_ROLE_PARAMETER", "/transaction-etl/iam/region-role")
    from etl.aws import role

    monkeypatch.setattr(role, "ROLE_CACHE_SECONDS", 0.0)  # every reader's own call is recorded
    # Plain CSV with rejects and quoted newlines, several chunks.
    ok = chain.upload_and_run("incoming/default/plain.csv", chain.make_csv(120, bad=(50,)))
    assert ok.error is None, ok.failure
    # gzip: scratch chunk objects written by PlanChunks, read by ProcessChunk, removed by Finalize.
    gz = chain.upload_and_run("incoming/acme/daily.csv.gz", gzip.compress(chain.make_csv(120), mtime=0))
    assert gz.error is None, gz.failure
    # An event carrying the raw key of "a+b.csv" (not URL-encoded): RegisterFile HEADs the
    # decoded "a b.csv" first, which is missing (404 needs s3:ListBucket), then the raw key.
    raw_key = chain.run(chain.upload("incoming/default/a+b.csv", chain.make_csv(30), encode=False))
    assert raw_key.error is None, raw_key.failure
    assert raw_key.state["file"]["key"] == "incoming/default/a+b.csv"
    # A failure (MarkFailed moves the source to failed/), then a reprocess after the fix:
    # RegisterFile reads failed/, PlanChunks re-plans over the earlier chunk items.
    bad = chain.make_csv(60).replace(b"currency", b"ccy", 1)
    failed = chain.upload_and_run("incoming/default/bad.csv", bad)
    assert failed.error is not None and failed.failure is not None
    fid = failed.state["file"]["file_id"]
    # The partner resends nothing; the operator fixes the quarantined object in place.
    etl_aws.put(f"failed/default/{fid}/bad.csv", chain.make_csv(60))
    again = chain.run({"reprocess": {"file_id": fid}}, arn=chain.execution_arn + "-re")
    assert again.error is None, again.failure
    # A file failing in its second chunk, reprocessed with bigger chunks: PlanChunks removes the
    # chunk items, Parquet parts and rejects of the earlier, longer plan.
    from etl.handlers import process_chunk

    real, seen = process_chunk.process_chunk, {"n": 0}

    def second_chunk_fails(data: bytes, schema: Any, first_line: int) -> Any:
        seen["n"] += 1
        if seen["n"] == 2:
            raise RuntimeError("injected")
        return real(data, schema, first_line)

    monkeypatch.setattr(process_chunk, "process_chunk", second_chunk_fails)
    broken = chain.upload_and_run("incoming/default/replan.csv", chain.make_csv(200, bad=(5,)))
    assert isinstance(broken.error, RuntimeError)
    monkeypatch.setattr(process_chunk, "process_chunk", real)
    monkeypatch.setenv("CHUNK_SIZE_BYTES", str(1 << 20))
    replanned = chain.run({"reprocess": {"file_id": broken.state["file"]["file_id"]}}, arn="arn:replan")
    assert replanned.error is None, replanned.failure
    assert replanned.state["plan"]["chunk_count"] < broken.state["plan"]["chunk_count"]
    # DATA4(a): a byte-identical copy ends DUPLICATE_CONTENT (registry read, source to
    # processed/); a forced reprocess reads it from processed/ and fails there (MarkFailed moves
    # it from processed/ to failed/), then a forced reprocess loads it.
    copy = chain.upload_and_run("incoming/default/plain-copy.csv", chain.make_csv(120, bad=(50,)))
    assert copy.error is None and copy.state["result"]["status"] == "DUPLICATE_CONTENT", copy.failure
    copy_id = copy.state["file"]["file_id"]
    monkeypatch.setattr(process_chunk, "process_chunk", lambda *a: second_chunk_fails(*a) and None)
    seen["n"] = 1  # the next call is the failing "second" one
    forced = chain.run({"reprocess": {"file_id": copy_id, "force": True}}, arn="arn:forced")
    assert isinstance(forced.error, RuntimeError)
    monkeypatch.setattr(process_chunk, "process_chunk", real)
    forced = chain.run({"reprocess": {"file_id": copy_id, "force": True}}, arn="arn:forced-2")
    assert forced.error is None, forced.failure
    # DATA4(a) race: an identical file that planned before the first registered its content
    # loses the registry at Finalize, which removes its outputs.
    from etl.handlers import content

    monkeypatch.setattr(content, "loaded_by", lambda *a, **k: None)
    raced = chain.upload_and_run("incoming/default/plain-race.csv", chain.make_csv(120, bad=(50,)))
    assert raced.state["result"]["status"] == "DUPLICATE_CONTENT", raced.failure
    # DATA4(c): an id repeated in a later chunk: Finalize reads and rewrites that chunk's
    # outputs (small chunks: the two ids must land in different chunks).
    monkeypatch.setenv("CHUNK_SIZE_BYTES", "2048")
    # A bad row next to the repeated id: the chunk's rejects CSV is read and merged (2 of 250
    # rows rejected: under the 1% threshold).
    dup_ids = chain.make_csv(250, bad=(139,)).replace(b"T000140,", b"T000002,")
    dups = chain.upload_and_run("incoming/default/dups.csv", dup_ids)
    assert dups.error is None and dups.state["result"]["rows_rejected"] == 2, dups.failure
    assert dups.state["plan"]["chunk_count"] > 1
    monkeypatch.setenv("CHUNK_SIZE_BYTES", str(1 << 20))
    # A RegisterFile failure: MarkFailed registers the file itself before moving it.
    # (its input is the execution input itself, the S3 event, plus $.error)
    late = chain.mark_failed(
        {
            **chain.upload("incoming/default/late.csv", chain.make_csv(3)),
            "error": chain.lambda_cause(RuntimeError("injected before registration")),
        },
        None,
    )
    assert late["failed_key"].startswith("failed/default/"), late
    # Retries and out-of-order calls (Step Functions retries a Task whose response was lost):
    from etl.errors import InvalidFileState

    # A step called for a file in the wrong state reads the status (GetItem) to name it:
    # `early` is only REGISTERED (the header comes from an identical file's validation).
    data = chain.make_csv(30)
    twin = chain.register(
        {"event": chain.upload("incoming/default/twin.csv", data), "execution_arn": "a:1"}, None
    )
    early = chain.register(
        {"event": chain.upload("incoming/default/early.csv", data), "execution_arn": "a:2"}, None
    )
    header = chain.validate({"file": twin}, None)
    chunk = chain.plan({"file": twin, "header": header}, None)["chunks"][0]
    for step_call in (
        lambda: chain.validate({"file": ok.state["file"]}, None),
        lambda: chain.plan({"file": early, "header": header}, None),
        lambda: chain.process({"file": early, "header": header, "chunk": chunk}, None),
    ):
        with pytest.raises(InvalidFileState):
            step_call()
    # Finalize retried after its move: the source is gone, the copy in processed/ is headed.
    assert (
        chain.finalize(
            {**{k: ok.state[k] for k in ("file", "header", "plan")}, "execution_arn": chain.execution_arn},
            None,
        )["status"]
        == "SUCCEEDED"
    )
    # MarkFailed retried after its move: the copy in failed/ is headed.
    again = chain.upload_and_run("incoming/default/bad-again.csv", bad)
    assert again.failure is not None
    assert chain.mark_failed(again.state, None)["failed_key"] == again.failure["failed_key"]
    # PlanChunks retried on a gzip file: the first attempt's scratch objects are removed.
    retry = chain.upload("incoming/acme/retry.csv.gz", gzip.compress(chain.make_csv(80), mtime=0))
    file = chain.register({"event": retry, "execution_arn": "arn:retry"}, None)
    header = chain.validate({"file": file}, None)
    chain.plan({"file": file, "header": header}, None)
    plan = chain.plan({"file": file, "header": header}, None)
    # ProcessChunk re-run of a chunk that had rejects and now has none (its rejects go), then
    # the file fails on too many rejects: MarkFailed removes the gzip scratch chunks.
    first = plan["chunks"][0]
    chain.process({"file": file, "header": header, "chunk": first}, None)
    real_core = process_chunk.process_chunk
    monkeypatch.setattr(
        process_chunk,
        "process_chunk",
        lambda data, schema, line: real_core(data.replace(b"2024-03-15,", b"2024-02-30,", 1), schema, line),
    )
    chain.process({"file": file, "header": header, "chunk": first}, None)
    monkeypatch.setattr(process_chunk, "process_chunk", real_core)
    chain.process({"file": file, "header": header, "chunk": first}, None)
    state = {"file": file, "header": header, "plan": plan, "error": chain.lambda_cause(RuntimeError("x"))}
    assert chain.mark_failed(state, None)["failed_key"].startswith("failed/acme/")
    # StartFiles (OPS2): admits two of three queued files, then one more after one ended (that
    # one it checks with DescribeExecution: ListExecutions may lag behind a recent start).
    for i in range(3):
        admission.buffer(chain.upload(f"incoming/default/burst-{i}.csv", chain.make_csv(2)))
    assert chain.start_files({"source": "aws.events"}, None)["started"] == 2
    admission.sfn.stop_execution(executionArn=admission.executions("RUNNING")[0]["executionArn"])
    assert chain.start_files({}, None)["started"] == 1
    # A chunk whose completion is refused after it wrote its data files (a sibling failed the
    # file meanwhile) deletes them again.
    from etl.aws.status import StatusRepository
    from etl.errors import InvalidFileState

    def refused(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise InvalidFileState("the file failed meanwhile (injected)")

    with monkeypatch.context() as patched:  # undo only this patch, not the fixtures' environment
        patched.setattr(StatusRepository, "complete_chunk", refused)
        late_chunk = chain.upload_and_run("incoming/default/refused.csv", chain.make_csv(30))
    assert isinstance(late_chunk.error, InvalidFileState)

    # TBL4: a file whose commit landed before its Finalize died for good: MarkFailed finds the
    # commit in the table and undoes it (Glue, table metadata, the commit lease).
    with monkeypatch.context() as patched:
        patched.setattr(finalize_module().s3, "move_object", _move_failing_into_processed())
        landed = chain.upload_and_run("incoming/default/landed.csv", chain.make_csv(40))
    assert isinstance(landed.error, RuntimeError), landed.failure
    assert etl_aws.repo.get_file(landed.state["file"]["file_id"]).get("unpublished_snapshot_id")

    _reconcile_scenarios(chain, etl_aws, monkeypatch)
    _maintain_tables_scenario(monkeypatch)
    _ensure_tables_scenario(etl_aws)


def finalize_module() -> Any:
    from etl.handlers import finalize

    return finalize


def _move_failing_into_processed() -> Callable[..., Any]:
    """Finalize's move to processed/ (after its commits) fails; other moves work."""
    real = finalize_module().s3.move_object

    def move(bucket: str, src: str, dst: str, *args: Any, **kwargs: Any) -> Any:
        if dst.startswith(contracts.PROCESSED_PREFIX):
            raise RuntimeError("move failed (injected)")
        return real(bucket, src, dst, *args, **kwargs)

    return move


def _maintain_tables_scenario(monkeypatch: pytest.MonkeyPatch) -> None:
    """TBL6: the scheduled maintenance ten days after the loads above, keeping one snapshot per
    table: every table's expiry commits (GetTable, UpdateTable, a new metadata file) and the
    files only expired snapshots referenced are deleted as orphans (ListBucket, DeleteObject)."""
    import datetime

    from etl.aws import maintenance
    from etl.handlers import maintain_tables

    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=10)
    with monkeypatch.context() as patched:
        patched.setattr(maintenance, "_now", lambda: later)
        patched.setenv(maintenance.ENV_MIN_SNAPSHOTS, "1")
        _current["step"] = contracts.MAINTAIN_STEP
        try:
            out = maintain_tables.handler({"mode": "scheduled"})
        finally:
            _current["step"] = "?"
    assert all(t["snapshots_expired"] >= 1 for t in out["tables"]), out
    assert any(t["orphans_deleted"] for t in out["tables"]), out


ENSURE_TABLES = "etl.handlers.ensure_tables.handler"


def _ensure_tables_scenario(etl_aws: Any) -> None:
    """The table-creation custom resource: Create on a catalog without the tables (GetTable
    finds none, CreateTable, the first metadata object under tables/), then Update (all exist;
    one with an outdated property: GetTable, its metadata read, UpdateTable, TBL6) and Delete
    (no calls). Last, because it replaces the tables the other
    scenarios published into."""
    from etl.aws import catalog, clients
    from etl.contracts import REJECTS_TABLE, TRANSACTIONS_TABLE
    from etl.handlers import ensure_tables

    database = os.environ["GLUE_DATABASE"]  # the dataset fixture's catalog
    glue = clients.client("glue")
    for table in contracts.DATASET_TABLES:  # bookkeeping (step "?"), not the handler's
        glue.delete_table(DatabaseName=database, Name=table)
    props = {"Database": database, "Warehouse": f"s3://{etl_aws.bucket}/tables/"}
    for request in ("Create", "Update", "Delete"):
        if request == "Update":  # TBL6: a table created by an older version (bookkeeping)
            catalog.load_catalog().load_table(
                f"{database}.{TRANSACTIONS_TABLE}"
            ).transaction().set_properties({"commit.manifest-merge.enabled": "false"}).commit_transaction()
        event = {"RequestType": request, "ResourceProperties": props}
        if request == "Delete":
            event["PhysicalResourceId"] = f"{database}/tables"
        _current["step"] = ENSURE_TABLES
        try:
            out = ensure_tables.handler(event)
        finally:
            _current["step"] = "?"
        assert out["Data"]["TransactionsTable"] == f"{database}.{TRANSACTIONS_TABLE}"
    assert {t["Name"] for t in glue.get_tables(DatabaseName=database)["TableList"]} >= {
        TRANSACTIONS_TABLE,
        REJECTS_TABLE,
    }


def test_INF6_OPS5_every_call_the_handlers_make_is_granted_to_their_role(
    chain: Any,
    etl_aws: Any,
    admission: Any,
    recorded: list[Call],
    allowed: dict[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_scenarios(chain, etl_aws, admission, monkeypatch)
    recorded = [c for c in recorded if c.step != "?"]  # the test's own bookkeeping calls
    steps_seen = {c.step for c in recorded}
    # The recorder saw every function of the template that runs this project's code.
    assert steps_seen == set(allowed) == set(contracts.ALL_FUNCTIONS) | {ENSURE_TABLES}, steps_seen
    # The scenarios reach the paths whose grants only they prove (else the check is vacuous).
    assert any(c.step == "RegisterFile" and c.status == 404 for c in recorded)
    assert {c.step for c in recorded if c.operation == "CopyObject"} == {"Finalize", "MarkFailed", RECONCILE}
    denied = sorted(
        {
            f"{c.step}: {n.action} on {n.resource}"
            + (f" (prefix {n.prefix!r})" if n.prefix is not None else "")
            for c in recorded
            for n in needs(c)
            if not is_allowed(allowed[c.step], n)
        }
    )
    assert denied == [], "calls the deployed roles would refuse:\n" + "\n".join(denied)


def unused_grants(statements: dict[str, list[dict[str, Any]]], calls: list[Call]) -> list[str]:
    """Every (function, action, resource) granted (logs and X-Ray aside: the Lambda runtime and
    the tracer use them, not the handler) that no recorded call of that function needed, and
    every s3:prefix a ListBucket grant allows that no listing used."""
    by_function: dict[str, list[Need]] = {}
    for c in calls:
        by_function.setdefault(c.step, []).extend(needs(c))
        if c.service == "s3" and c.operation == "HeadObject" and c.status != 404:
            # A HEAD asks "is it there?": the ListBucket grant that makes a missing key answer
            # 404 (not 403) is used by every HEAD of the handler, found or not.
            p = c.params
            by_function[c.step].append(Need("s3:ListBucket", f"arn:aws:s3:::{p['Bucket']}", p["Key"]))
    unused = []
    for function, granted in sorted(statements.items()):
        used = by_function.get(function, [])
        for s in (s for s in granted if s["Effect"] == "Allow"):
            for action in _as_list(s["Action"]):
                if action.split(":", 1)[0] in ("logs", "xray"):
                    continue
                for resource in _as_list(s["Resource"]):
                    hits = [
                        n
                        for n in used
                        if iam.wildcard_match(action, n.action, ignore_case=True)
                        and iam.wildcard_match(resource, n.resource)
                    ]
                    if not hits:
                        unused.append(f"{function}: {action} on {resource}")
                        continue
                    prefixes = s.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
                    for pattern in _as_list(prefixes) if prefixes is not None else []:
                        if not any(iam.wildcard_match(pattern, n.prefix or "") for n in hits):
                            unused.append(f"{function}: {action} on {resource} with s3:prefix {pattern}")
    return unused


# Functions whose calls no scenario here records yet, each with the reason; everything else in
# the template is checked. Keep this list empty: record the function's calls instead.
# Grants no handler call can record, each with the reason it is still needed.
NOT_HANDLER_CALLS = {
    # Lambda itself sends a failed asynchronous invocation to the function's DLQ with its role.
    (RECONCILE, "sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:etl-reconcile-dlq-iam"),
    # SNS encrypts what the function publishes to the KMS-encrypted alert topic with the
    # caller's permissions (the same grant tests/infra/test_grants.py asserts for the state machine).
    (RECONCILE, "kms:Decrypt", "arn:aws:other:::NotificationsAlertKeyFF8A79EB/Arn"),
    (RECONCILE, "kms:GenerateDataKey*", "arn:aws:other:::NotificationsAlertKeyFF8A79EB/Arn"),
    # pyiceberg deletes the metadata/manifest files of a commit that lost an optimistic
    # concurrency conflict; no scenario here makes two commits race.
    ("Finalize", "s3:DeleteObject", "arn:aws:s3:::etl-data-test/tables/*"),
    # Lambda sends a failed asynchronous (scheduled) invocation to the function's DLQ.
    (contracts.MAINTAIN_STEP, "sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:etl-reconcile-dlq-iam"),
}
NO_SCENARIO_YET: dict[str, str] = {}


def test_OPS5_every_granted_action_is_used_by_that_function(
    chain: Any,
    etl_aws: Any,
    admission: Any,
    recorded: list[Call],
    allowed: dict[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The converse of the test above, over every function in the template: a grant that no
    scenario uses is either dead weight (remove it) or a path no scenario covers (add one)."""
    run_scenarios(chain, etl_aws, admission, monkeypatch)
    assert set(NO_SCENARIO_YET) <= set(allowed), "NO_SCENARIO_YET names a function the template lacks"
    unused = unused_grants({f: s for f, s in allowed.items() if f not in NO_SCENARIO_YET}, recorded)
    unused = [
        u for u in unused if tuple(u.replace(": ", " on ", 1).split(" on ", 2)) not in NOT_HANDLER_CALLS
    ]
    assert unused == [], "granted but never used by the function's recorded calls:\n" + "\n".join(unused)


def test_OPS5_the_converse_checker_names_an_unused_grant(allowed: dict[str, list[dict[str, Any]]]) -> None:
    used = [
        Call("ValidateHeader", "dynamodb", "UpdateItem", {"TableName": TEST_TABLE}),
        Call("ValidateHeader", "dynamodb", "GetItem", {"TableName": TEST_TABLE}),
    ]
    statements = {
        "ValidateHeader": [
            {
                "Effect": "Allow",
                "Action": ["dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:DeleteItem"],
                "Resource": TABLE_ARN,
            }
        ]
    }
    assert unused_grants(statements, used) == [f"ValidateHeader: dynamodb:DeleteItem on {TABLE_ARN}"]
    listing = [Call("X", "s3", "ListObjectsV2", {"Bucket": TEST_BUCKET, "Prefix": "scratch/a/"})]
    grant = {
        "X": [
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": BUCKET_ARN,
                "Condition": {"StringLike": {"s3:prefix": ["scratch/*", "output/*"]}},
            }
        ]
    }
    assert unused_grants(grant, listing) == [f"X: s3:ListBucket on {BUCKET_ARN} with s3:prefix output/*"]


def test_the_checker_refuses_what_a_role_lacks(allowed: dict[str, list[dict[str, Any]]]) -> None:
    """The checker itself can fail: a write outside a function's prefixes, an action the role
    lacks and a listing outside the permitted prefixes are all refused."""
    assert not is_allowed(allowed["ProcessChunk"], Need("s3:PutObject", _object(TEST_BUCKET, "processed/x")))
    assert not is_allowed(allowed["ValidateHeader"], Need("dynamodb:DeleteItem", TABLE_ARN))
    assert not is_allowed(allowed["MarkFailed"], Need("s3:ListBucket", BUCKET_ARN, "manifests/"))
    assert is_allowed(allowed["Finalize"], Need("s3:ListBucket", BUCKET_ARN, "scratch/abc/"))
    assert is_allowed(
        allowed["ProcessChunk"], Need("s3:PutObject", _object(TEST_BUCKET, "output/t/p.parquet"))
    )


def _reconcile_scenarios(chain: Any, etl_aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reconcile function's paths: a stopped execution's file (moves, deletes unpublished
    data, alerts), the sweep (DescribeExecution, the open-files index), the outbox (send,
    failed send), the freshness check (the partner index, a marker)."""
    import datetime
    import json

    import boto3

    from etl.handlers.reconcile import STATUS_CHANGE

    sqs = boto3.client("sqs", region_name=REGION)
    boto3.client("sns", region_name=REGION).create_topic(Name=TOPIC_NAME)
    url = sqs.create_queue(QueueName=RESULT_QUEUE_NAME, Attributes={"FifoQueue": "true"})["QueueUrl"]
    monkeypatch.setenv("ALERT_TOPIC_ARN", TOPIC_ARN)
    monkeypatch.setenv("RESULT_QUEUE_URL", url)
    monkeypatch.setenv("CHUNK_SIZE_BYTES", "2048")
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = sfn.create_state_machine(
        name=STATE_MACHINE_NAME,
        definition=json.dumps({"StartAt": "W", "States": {"W": {"Type": "Pass", "End": True}}}),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/x",
    )["stateMachineArn"]

    def stopped_midway(key: str, name: str) -> tuple[dict[str, Any], str]:
        arn = sfn.start_execution(stateMachineArn=machine, name=name)["executionArn"]
        sfn.stop_execution(executionArn=arn)
        event = chain.upload(key, chain.make_csv(120, bad=(3,)))
        state: dict[str, Any] = {"file": chain.register({"event": event, "execution_arn": arn}, None)}
        state["header"] = chain.validate({"file": state["file"]}, None)
        state["plan"] = chain.plan(dict(state), None)
        chain.process({**state, "chunk": state["plan"]["chunks"][0]}, None)
        return event, arn

    event, arn = stopped_midway("incoming/acme/stopped.csv", "stopped")
    detail = {"executionArn": arn, "status": "ABORTED", "input": json.dumps(event)}
    out = chain.reconcile({"detail-type": STATUS_CHANGE, "source": "aws.states", "detail": detail}, None)
    assert out["action"] == "failed", out
    # A reconcile that crashed after its move is retried: the move already happened, so it
    # heads the copy in failed/ (GetObject there; ListBucket so the missing source is a 404).
    from etl.aws.status import StatusRepository as Repo

    crash_event, crash_arn = stopped_midway("incoming/acme/crash.csv", "crash")
    detail = {"executionArn": crash_arn, "status": "ABORTED", "input": json.dumps(crash_event)}

    def crash(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("crashed after the move (injected)")

    with monkeypatch.context() as patched:
        patched.setattr(Repo, "transition_file", crash)
        with pytest.raises(RuntimeError, match="injected"):
            chain.reconcile({"detail-type": STATUS_CHANGE, "detail": detail}, None)
    assert chain.reconcile({"detail-type": STATUS_CHANGE, "detail": detail}, None)["action"] == "failed"
    # TBL4: stopped after its commit landed (Finalize never finished): reconcile undoes it.
    landed_arn = sfn.start_execution(stateMachineArn=machine, name="landed")["executionArn"]
    sfn.stop_execution(executionArn=landed_arn)
    landed_event = chain.upload("incoming/acme/landed.csv", chain.make_csv(40))
    ls: dict[str, Any] = {"file": chain.register({"event": landed_event, "execution_arn": landed_arn}, None)}
    ls["header"] = chain.validate({"file": ls["file"]}, None)
    ls["plan"] = chain.plan(dict(ls), None)
    for entry in ls["plan"]["chunks"]:
        chain.process({**ls, "chunk": entry}, None)
    with monkeypatch.context() as patched:
        patched.setattr(finalize_module().s3, "move_object", _move_failing_into_processed())
        with pytest.raises(RuntimeError, match="injected"):
            chain.finalize({**ls, "execution_arn": landed_arn}, None)
    detail = {"executionArn": landed_arn, "status": "ABORTED", "input": json.dumps(landed_event)}
    assert chain.reconcile({"detail-type": STATUS_CHANGE, "detail": detail}, None)["action"] == "failed"
    assert etl_aws.repo.get_file(ls["file"]["file_id"]).get("unpublished_snapshot_id")
    # A gzip file stopped midway: its scratch chunks are removed.
    gz_arn = sfn.start_execution(stateMachineArn=machine, name="stopped-gz")["executionArn"]
    sfn.stop_execution(executionArn=gz_arn)
    gz_event = chain.upload("incoming/acme/stopped.csv.gz", gzip.compress(chain.make_csv(120), mtime=0))
    gz: dict[str, Any] = {"file": chain.register({"event": gz_event, "execution_arn": gz_arn}, None)}
    gz["header"] = chain.validate({"file": gz["file"]}, None)
    gz["plan"] = chain.plan(dict(gz), None)
    detail = {"executionArn": gz_arn, "status": "ABORTED", "input": json.dumps(gz_event)}
    assert chain.reconcile({"detail-type": STATUS_CHANGE, "detail": detail}, None)["action"] == "failed"
    # Stopped before registration (the reconcile function registers and moves it).
    early = chain.upload("incoming/acme/early.csv", chain.make_csv(3))
    detail = {"executionArn": arn + "x", "status": "ABORTED", "input": json.dumps(early)}
    assert chain.reconcile({"detail-type": STATUS_CHANGE, "detail": detail}, None)["action"] == "failed"
    # The sweep, an hour later: a stale file, and a SUCCEEDED one whose result was not sent.
    stopped_midway("incoming/acme/stale.csv", "stale")
    # The earlier scenarios' files ran under made-up execution ARNs: mark their results sent,
    # so the sweep sees only files of this state machine (as in a deployment).
    for item in etl_aws.repo.list_files(status="SUCCEEDED"):
        etl_aws.repo.mark_notified(item["file_id"], item["file_id"])
    ok_arn = sfn.start_execution(stateMachineArn=machine, name="ok")["executionArn"]
    sfn.stop_execution(executionArn=ok_arn)
    ok = chain.run(chain.upload("incoming/acme/ok.csv", chain.make_csv(10)), arn=ok_arn)
    from etl.handlers import reconcile

    # SEC4: an object whose event never arrived; the sweep re-delivers it to the buffer queue.
    etl_aws.put("incoming/acme/unseen.csv", chain.make_csv(3))
    buffer_url = sqs.create_queue(QueueName="etl-buffer-iam")["QueueUrl"]
    monkeypatch.setenv("BUFFER_QUEUE_URL", buffer_url)
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    monkeypatch.setattr(reconcile, "_now", lambda: later)
    out = chain.reconcile({"mode": "sweep"}, None)
    assert out["reconciled"] and ok.state["file"]["file_id"] in out["resent"] and out["missing"], out
    assert "incoming/acme/unseen.csv" in out["unseen"], out  # (and earlier scenarios' unregistered uploads)
    # `etl notify --force`, then a send that fails (recorded, alerted).
    fid = ok.state["file"]["file_id"]
    assert chain.reconcile({"mode": "notify", "file_id": fid, "force": True}, None)["sent"]
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(Exception, match=r"NonExistentQueue|does not exist"):
        chain.reconcile({"mode": "notify", "file_id": fid, "force": True}, None)
