"""INF6 + L3: one Lambda function per workflow step, with least-privilege roles.

The step -> handler table comes from ``etl.contracts.HANDLERS`` (the same table as
docs/contracts.md), so a renamed handler cannot drift between the ASL and the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from etl import contracts as c
from etl.stack_outputs import region_role_parameter
from infra.config import LATEST_PYTHON, STARTER_RESERVED_CONCURRENCY, EtlConfig
from infra.guardrails import drop_redundant_role_dependency
from infra.nag import acknowledge, logical_id

REPO_ROOT = Path(__file__).resolve().parent.parent

# The asset is the repository root filtered down to the `etl` package: handlers import
# `etl.core`, `etl.aws`, `etl.contracts` and read `etl/schemas/*`, so the package must keep its
# name. Everything else (infra, tests, .venv, node_modules ...) stays out.
ASSET_EXCLUDES = [
    "*",
    ".*",  # "*" does not match dotfiles (.git, .venv ...)
    "!etl",
    "!etl/**",
    "**/.*",
    "**/__pycache__",
    "**/__pycache__/**",
    "**/*.pyc",
    "**/.mypy_cache",
    "**/.pytest_cache",
    "**/.ruff_cache",
]

MEMORY_MB = 3072
TIMEOUT = Duration.minutes(15)
LOG_RETENTION = logs.RetentionDays.ONE_MONTH

GET = ("s3:GetObject", "s3:GetObjectVersion")
# The bucket is versioned: an object still at its incoming/ key is read at the version its
# event named; everything else (failed/ after a reprocess, scratch/) is read as it is now.
GET_VERSION = ("s3:GetObjectVersion",)
GET_CURRENT = ("s3:GetObject",)
PUT = ("s3:PutObject",)
# Deletes without a version id: outputs a re-plan no longer produces, scratch prefixes,
# unpublished data of a failed file.
DELETE = ("s3:DeleteObject",)
# CopyObject (the moves) copies the source's tags as well: read on the source (the moves always
# copy a named version), write on the copy.
READ_TAGS = ("s3:GetObjectVersionTagging",)
# DR5: no function deletes an object version. A move (to processed/ or failed/) copies the
# source version and hides the source key behind a delete marker (etl/aws/s3.py move_object):
# it HEADs the key's current version (GetObject) and deletes without a version id
# (DeleteObject), only on the prefixes the code moves objects from (OPS5).
MOVE_SOURCE = GET + READ_TAGS + DELETE
WRITE_TAGS = ("s3:PutObjectTagging",)


@dataclass(frozen=True)
class Access:
    """What one function may do: S3 actions per prefix and DynamoDB actions on the table."""

    s3: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
    table: tuple[str, ...]
    # Prefixes it may list (HeadObject then answers 404 instead of 403 for a missing key,
    # which re-runs use to see whether a move already happened).
    list_prefixes: tuple[str, ...] = ()
    # Glue Data Catalog actions on the dataset's database and its two tables (SPEC DATA1).
    glue: tuple[str, ...] = ()
    # The tables its glue:UpdateTable is for, when not all of them (MarkFailed and reconcile
    # only ever undo a commit on transactions, TBL4).
    glue_write_tables: tuple[str, ...] = ()
    # The tables its other Glue table actions are for, when not all of them.
    glue_tables: tuple[str, ...] = ()
    # DR2/DR3: reads the region role switch (ssm:GetParameter on that one parameter).
    region_role: bool = False


INC, FAIL, PROC = c.INCOMING_PREFIX, c.FAILED_PREFIX, c.PROCESSED_PREFIX
OUT, REJ, MAN, SCR = c.OUTPUT_PREFIX, c.REJECTED_PREFIX, c.MANIFEST_PREFIX, c.SCRATCH_PREFIX
TAB = c.TABLES_PREFIX
ANN = c.ANNOUNCED_PREFIX

# DATA7: the steps that import pyiceberg. They get the pyiceberg layer (which also carries
# Powertools from the lock) instead of the managed Powertools layer, to stay within Lambda's
# 250 MB (docs/infrastructure.md, "Size budget"). The table-creation function of
# infra/dataset.py gets the same layers.
# MarkFailed and Reconcile too: failing a file checks the table (a commit that landed before
# Finalize died is undone, TBL4) and removes only unreferenced data files. MaintainTables: TBL6.
ICEBERG_STEPS = ("Finalize", "MarkFailed", c.RECONCILE_STEP, c.MAINTAIN_STEP)


def glue_arns(scope: Construct, database: str) -> list[str]:
    """The Glue resources a call on ``database`` and its tables is authorised against: the
    catalog, the database and ``table/<database>/*``."""
    stack = Stack.of(scope)
    return [
        stack.format_arn(service="glue", resource="catalog"),
        stack.format_arn(service="glue", resource="database", resource_name=database),
        stack.format_arn(service="glue", resource="table", resource_name=f"{database}/*"),
    ]


# Keyed by the state name in docs/contracts.md (the reconcile function's access is
# infra/reconciliation.py's). tests/unit/handlers/test_iam_coverage.py proves both ways that
# these are exactly the grants the handlers' calls need (INF6, OPS5).
ACCESS: dict[str, Access] = {
    # Head of the new object (incoming/) or of a quarantined one for `etl reprocess` (failed/),
    # or of a DUPLICATE_CONTENT file for `etl reprocess --force` (processed/).
    "RegisterFile": Access(
        s3=((GET_VERSION, (INC,)), (GET_CURRENT, (FAIL, PROC))),
        table=("dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"),
        list_prefixes=(INC, FAIL, PROC),
    ),
    # GetItem: after a failed conditional transition it reads the status to name it.
    "ValidateHeader": Access(
        s3=((GET_VERSION, (INC,)), (GET_CURRENT, (FAIL, PROC))),
        table=("dynamodb:UpdateItem", "dynamodb:GetItem"),
    ),
    # A re-plan (redrive, reprocess) removes chunk items, outputs and scratch objects of an
    # earlier plan that the new plan no longer produces.
    "PlanChunks": Access(
        s3=((GET_VERSION, (INC,)), (GET_CURRENT, (FAIL, PROC)), (PUT + DELETE, (SCR,)), (DELETE, (OUT, REJ))),
        table=(
            "dynamodb:UpdateItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:GetItem",
            "dynamodb:Query",
        ),
        list_prefixes=(SCR,),
    ),
    # DeleteObject on rejected/: a re-run without rejects removes the earlier run's rejects.
    # PUT on scratch/: the chunk's (transaction_id, line) list for Finalize's duplicate check.
    # tables/: the chunk's unpublished Iceberg data files (SPEC DATA2), named by content; PUT
    # only: they may already be published, so the chunk never deletes them (TBL3 I3).
    "ProcessChunk": Access(
        s3=(
            (GET_VERSION, (INC,)),
            (GET_CURRENT, (FAIL, PROC, SCR)),
            (PUT, (OUT, SCR, TAB)),
            (PUT + DELETE, (REJ,)),
        ),
        table=("dynamodb:UpdateItem", "dynamodb:GetItem"),
    ),
    # Writes the manifest, moves the source (incoming/, failed/ or processed/ for a forced
    # reprocess) to processed/, removes a gzip file's scratch chunks. A retried Finalize whose
    # move already happened heads the copy in processed/ (ListBucket: a missing key answers 404).
    # DATA4: PutItem = the content registry item; output/, rejected/ and tables/ = rewriting the
    # chunks that hold a transaction id repeated from another chunk (before the commit), or
    # removing a duplicate-content race loser's unpublished data; scratch/ = the id lists.
    # The Iceberg commit: reads table metadata, manifests and data-file footers, writes new
    # metadata/manifests (DeleteObject: pyiceberg removes those of a commit that lost a
    # conflict), and swaps the table's metadata pointer in Glue (GetTable + UpdateTable).
    "Finalize": Access(
        s3=(
            (MOVE_SOURCE, (INC, FAIL)),
            (GET_CURRENT + PUT + WRITE_TAGS, (PROC,)),
            (PUT, (MAN,)),
            (GET_CURRENT + DELETE, (SCR,)),
            # DATA4(c): a chunk holding an id repeated from another chunk has its Parquet part
            # and rejects CSV read and rewritten (etl/handlers/dedupe.py _rewrite_chunk).
            # A duplicate-content race loser's output/ Parquet is deleted; rejects stay (TBL7).
            (GET_CURRENT + PUT + DELETE, (OUT,)),
            (GET_CURRENT + PUT, (REJ,)),
            (GET_CURRENT + PUT + DELETE, (TAB,)),
            # DR3: is the file in the announcement ledger already (HeadObject)?
            (GET_CURRENT, (ANN,)),
        ),
        # DeleteItem: the commit lease is given back (TBL6).
        table=(
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:DeleteItem",
        ),
        list_prefixes=(INC, FAIL, PROC, SCR, OUT, TAB, ANN),
        glue=("glue:GetDatabase", "glue:GetTable", "glue:UpdateTable"),
        region_role=True,
    ),
    # Moves the source to failed/ (a reprocessed file failing again stays where it is);
    # PutItem: a file whose RegisterFile failed is registered as FAILED so it can be reprocessed.
    # processed/: a forced reprocess of a DUPLICATE_CONTENT file that fails moves it to failed/.
    # Deletes under output/ and tables/ (ListBucket to find them): a failed file leaves no
    # unreferenced data (etl/handlers/failure.py delete_unpublished_data); its rejects under
    # rejected/ stay (TBL7). tables/ read + write + Glue: the table is checked for a commit that
    # landed before Finalize died, and such a commit is undone (TBL4), under the commit lease.
    "MarkFailed": Access(
        s3=(
            (MOVE_SOURCE, (INC,)),
            (GET_CURRENT + PUT + WRITE_TAGS, (FAIL,)),
            (MOVE_SOURCE, (PROC,)),
            (DELETE, (SCR, OUT)),
            (GET_CURRENT + PUT + DELETE, (TAB,)),
        ),
        table=(
            "dynamodb:UpdateItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:DeleteItem",
        ),
        list_prefixes=(INC, FAIL, PROC, SCR, OUT, TAB),
        glue=("glue:GetDatabase", "glue:GetTable", "glue:UpdateTable"),
        glue_write_tables=(c.TRANSACTIONS_TABLE,),
        glue_tables=(c.TRANSACTIONS_TABLE, c.REJECTS_TABLE),
        region_role=True,
    ),
    # Admission control (OPS2): no bucket or table access; its queue and state machine grants
    # are added by infra/admission.py.
    "StartFiles": Access(s3=(), table=()),
}


def construct_id(step: str) -> str:
    """``RegisterFile`` -> ``RegisterFileFunction`` (stable logical-id prefix)."""
    return step + "Function"


class EtlFunctions(Construct):
    """The six step functions, their log groups, roles and the two managed layers."""

    def __init__(
        self,
        scope: Construct,
        construct_id_: str,
        *,
        config: EtlConfig,
        bucket: s3.IBucket,
        table: dynamodb.ITable,
        iceberg_layer: lambda_.ILayerVersion,
        default_region_role: str = "active",
    ) -> None:
        super().__init__(scope, construct_id_)
        # DR3: the region role switch. The parameter is not a resource of the stack (the CLI
        # sets it; a deploy never flips it); while it is absent the region's default applies.
        self.region_role_parameter = region_role_parameter(config.environment_suffix)
        self.default_region_role = default_region_role
        # The reconcile and maintenance functions are added by their own constructs
        # (infra/reconciliation.py, infra/maintenance.py).
        if set(ACCESS) != set(c.ALL_FUNCTIONS) - {c.RECONCILE_STEP, c.MAINTAIN_STEP}:
            raise ValueError("ACCESS and etl.contracts.ALL_FUNCTIONS list different functions")
        if not set(ICEBERG_STEPS) <= set(c.ALL_FUNCTIONS):
            raise ValueError("ICEBERG_STEPS names a function that etl.contracts.ALL_FUNCTIONS does not have")

        # L3: resolved by CloudFormation at deploy time from the public SSM parameters of the
        # deploy region (a template parameter of type AWS::SSM::Parameter::Value<String>), so
        # synth needs no credentials and no layer ARN or account id is written down here.
        self.pandas_layer = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "AwsSdkPandasLayer",
            ssm.StringParameter.value_for_string_parameter(self, config.sdk_pandas_layer_parameter),
        )
        self.powertools_layer = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "PowertoolsLayer",
            ssm.StringParameter.value_for_string_parameter(self, config.powertools_layer_parameter),
        )
        self.layers = [self.pandas_layer, self.powertools_layer]
        self.iceberg_layers = [self.pandas_layer, iceberg_layer]
        self.code = code = lambda_.Code.from_asset(str(REPO_ROOT), exclude=ASSET_EXCLUDES)
        environment = {
            "BUCKET_NAME": bucket.bucket_name,
            "TABLE_NAME": table.table_name,
            "CHUNK_SIZE_BYTES": str(config.chunk_size_bytes),
            "MAX_RECORD_BYTES": str(config.max_record_bytes),
            "POWERTOOLS_SERVICE_NAME": c.SERVICE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": c.METRICS_NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": "INFO",
            # The dataset's Glue database (SPEC DATA1); infra/dataset.py creates it by this name.
            "GLUE_DATABASE": c.glue_database(config.environment_suffix),
            **c.RUNTIME_ENV,
        }

        self.config = config
        self.bucket = bucket
        self.table = table
        self.code = code
        self.environment = environment
        self.functions: dict[str, lambda_.Function] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        self.roles: dict[str, iam.Role] = {}
        # OPS2: reserved concurrency. The chunk function reserves maxFilesInFlight x 10 (never
        # throttled while the starter keeps at most that many files running, and never eating
        # the unreserved pool that the other steps, MarkFailed included, draw from); StartFiles
        # reserves 1 so only one admission decision runs at a time.
        reserved = {
            "ProcessChunk": config.chunk_reserved_concurrency,
            "StartFiles": STARTER_RESERVED_CONCURRENCY,
        }
        # SEC2: the header step refuses partners without a schema unless declared to use the default.
        extra = {"ValidateHeader": {c.DEFAULT_SCHEMA_PARTNERS_ENV: ",".join(config.default_schema_partners)}}
        for step in ACCESS:
            short_name, handler = c.ALL_FUNCTIONS[step]
            self.add_function(
                self,
                step,
                short_name,
                handler,
                ACCESS[step],
                extra_environment=extra.get(step),
                reserved_concurrency=reserved.get(step),
            )
            if step in c.HANDLERS:
                self._acknowledge_workflow_step(self.functions[step])

    def add_function(
        self,
        scope: Construct,
        step: str,
        short_name: str,
        handler: str,
        access: Access,
        extra_environment: dict[str, str] | None = None,
        dead_letter_queue: sqs.IQueue | None = None,
        reserved_concurrency: int | None = None,
    ) -> lambda_.Function:
        """One function with the INF6 settings (3072 MB, 15 minutes, JSON logs, tracing, its
        own log group and least-privilege role); ``scope`` may be another construct (the
        reconcile function lives in infra/reconciliation.py)."""
        config = self.config
        function_name = config.name(short_name)
        log_group = logs.LogGroup(
            scope,
            step + "LogGroup",
            log_group_name="/aws/lambda/" + function_name,
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # An explicit role (no AWSLambdaBasicExecutionRole managed policy): the function
        # writes only to its own log group.
        role = iam.Role(
            scope,
            step + "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Runs {function_name} ({handler})",
        )
        log_group.grant_write(role)
        self._grant(role, access, self.bucket, self.table, c.glue_database(config.environment_suffix))
        role_environment: dict[str, str] = {}
        if access.region_role:
            role_environment = {
                "REGION_ROLE_PARAMETER": self.region_role_parameter,
                "DEFAULT_REGION_ROLE": self.default_region_role,
            }
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["ssm:GetParameter"],
                    resources=[self.region_role_parameter_arn(scope)],
                )
            )

        function = lambda_.Function(
            scope,
            construct_id(step),
            function_name=function_name,
            description=f"ETL step {step}: {handler}",
            runtime=config.runtime,
            architecture=config.lambda_architecture,
            handler=handler,
            code=self.code,
            layers=self.iceberg_layers if step in ICEBERG_STEPS else self.layers,
            memory_size=MEMORY_MB,
            timeout=TIMEOUT,
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            log_group=log_group,
            role=role,
            environment={**self.environment, **role_environment, **(extra_environment or {})},
            dead_letter_queue=dead_letter_queue,
            reserved_concurrent_executions=reserved_concurrency,
        )
        drop_redundant_role_dependency(function, role)
        self.functions[step] = function
        self.log_groups[step] = log_group
        self.roles[step] = role
        self._acknowledge(function, role, step, config, self.bucket, access)
        return function

    def region_role_parameter_arn(self, scope: Construct) -> str:
        """ARN of this region's role parameter (its name starts with ``/``)."""
        return Stack.of(scope).format_arn(
            service="ssm", resource="parameter", resource_name=self.region_role_parameter.lstrip("/")
        )

    @staticmethod
    def _acknowledge_workflow_step(function: lambda_.Function) -> None:
        acknowledge(
            function,
            "Serverless-LambdaDLQ",
            "Invoked synchronously by Step Functions only; a failed invocation is retried and "
            "then caught by the state machine (MarkFailed -> SNS alert -> Fail), so an "
            "asynchronous-invocation DLQ would never receive anything.",
        )

    @staticmethod
    def _acknowledge(
        function: lambda_.Function,
        role: iam.Role,
        step: str,
        config: EtlConfig,
        bucket: s3.IBucket,
        access: Access,
    ) -> None:
        bucket_id = logical_id(bucket)
        for prefix in sorted({p for _, ps in access.s3 for p in ps}):
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{prefix}*]",
                f"Object keys under {prefix} are data-driven (partner, file_id, chunk number), so "
                f"{step} is granted that one prefix, nothing wider.",
            )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "Only xray:PutTraceSegments/PutTelemetryRecords (added for active tracing) use '*': "
            "X-Ray supports no resource-level permissions.",
        )
        if config.lambda_runtime != LATEST_PYTHON:
            for rule in ("AwsSolutions-L1", "Serverless-LambdaLatestVersion"):
                acknowledge(
                    function,
                    rule,
                    f"{config.lambda_runtime} is a supported, non-deprecated runtime (SPEC L2) for "
                    f"which both managed layers publish builds; {LATEST_PYTHON} is one context value away "
                    f"(-c lambdaRuntime={LATEST_PYTHON}).",
                )

    @staticmethod
    def _grant(
        role: iam.IRole, access: Access, bucket: s3.IBucket, table: dynamodb.ITable, database: str
    ) -> None:
        for actions, prefixes in access.s3:
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=list(actions),
                    resources=[bucket.arn_for_objects(p + "*") for p in prefixes],
                )
            )
        if access.list_prefixes:
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [p + "*" for p in access.list_prefixes]}},
                )
            )
        if access.table:
            role.add_to_principal_policy(
                iam.PolicyStatement(actions=list(access.table), resources=[table.table_arn])
            )
        if access.glue:
            stack = Stack.of(role)

            def glue_arn(resource: str, name: str | None = None) -> str:
                return stack.format_arn(service="glue", resource=resource, resource_name=name)

            # GetDatabase is authorised against the catalog and the database only; table
            # calls against the table too (OPS5: no action granted where it is never checked).
            on_database = [a for a in access.glue if a == "glue:GetDatabase"]
            scoped = ["glue:UpdateTable"] if access.glue_write_tables else []
            on_tables = [a for a in access.glue if a != "glue:GetDatabase" and a not in scoped]
            if scoped and "glue:UpdateTable" in access.glue:
                role.add_to_principal_policy(
                    iam.PolicyStatement(
                        actions=scoped,
                        resources=[
                            glue_arn("catalog"),
                            glue_arn("database", database),
                            *(glue_arn("table", f"{database}/{t}") for t in access.glue_write_tables),
                        ],
                    )
                )
            if on_database:
                role.add_to_principal_policy(
                    iam.PolicyStatement(
                        actions=on_database, resources=[glue_arn("catalog"), glue_arn("database", database)]
                    )
                )
            if on_tables:
                role.add_to_principal_policy(
                    iam.PolicyStatement(
                        actions=on_tables,
                        resources=[
                            glue_arn("catalog"),
                            glue_arn("database", database),
                            *(
                                glue_arn("table", f"{database}/{t}")
                                for t in access.glue_tables or c.DATASET_TABLES
                            ),
                        ],
                    )
                )
