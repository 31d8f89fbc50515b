"""DATA1: the published dataset: Glue database, the Iceberg tables (transactions, rejects and
the load audit table of TBL6), Athena workgroup and named queries.

The tables are created by a custom resource running ``etl.handlers.ensure_tables.handler`` with
pyiceberg, not by ``AWS::Glue::Table``: CloudFormation's ``OpenTableFormatInput.IcebergInput``
takes only ``MetadataOperation`` (CREATE) and ``Version``, so it cannot set the partition spec and
sort order DATA3 needs; and local mode creates the same tables through the same Python
definition (etl/), so there is one schema/partition definition for both (docs/infrastructure.md).
"""

from __future__ import annotations

from aws_cdk import Aws, CustomResource, RemovalPolicy, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import custom_resources as cr
from constructs import Construct

from etl import contracts as c
from infra.config import LATEST_PYTHON, EtlConfig
from infra.functions import LOG_RETENTION, MEMORY_MB, TIMEOUT, glue_arns
from infra.guardrails import drop_redundant_role_dependency
from infra.nag import acknowledge, logical_id

ENSURE_TABLES_HANDLER = "etl.handlers.ensure_tables.handler"
TABLES_RESOURCE_TYPE = "Custom::IcebergTables"
# What ensure_tables' pyiceberg GlueCatalog calls (OPS5: tests/unit/handlers/test_iam_coverage.py
# records them): GetDatabase (the namespace's properties) on the catalog and the database;
# GetTable (exists?) and CreateTable on the catalog, the database and its tables; UpdateTable when
# an existing table's properties are behind the definition (SPEC TBL6: a deploy upgrades them).
# It never lists tables. (A property update may leave a metadata file beyond the kept ones that
# pyiceberg would delete: without s3:DeleteObject it stays, and the orphan sweep removes it.)
GLUE_DATABASE_ACTIONS = ("glue:GetDatabase",)
GLUE_TABLE_ACTIONS = ("glue:GetTable", "glue:CreateTable", "glue:UpdateTable")

# Named queries (DATA1, DATA4d). ``{db}`` is the Glue database. Column names are the tables'
# (etl/ defines them); tests/infra/test_dataset.py runs each one in DuckDB against empty tables of
# those columns, so a misspelt column fails the build. The load history reads the
# ``transaction_loads`` table (SPEC TBL6): snapshot summaries carry the same facts, but snapshots
# are expired on a schedule.
NAMED_QUERIES: dict[str, tuple[str, str]] = {
    "daily-totals": (
        "Rows and amount per transaction day, partner and currency",
        """SELECT transaction_date, partner, currency,
       count(*) AS transactions,
       sum(amount) AS total_amount
FROM "{db}"."transactions"
GROUP BY transaction_date, partner, currency
ORDER BY transaction_date DESC, partner, currency""",
    ),
    "rejects-by-rule": (
        "Rejected values per partner, rule and column",
        """SELECT partner, rule, column_name,
       count(*) AS rejects
FROM "{db}"."transaction_rejects"
GROUP BY partner, rule, column_name
ORDER BY rejects DESC, partner, rule, column_name""",
    ),
    "load-history": (
        "Every load (one row per committed file): file, partner, key, version, manifest, execution, "
        "snapshot and rows, newest first",
        """SELECT committed_at, file_id, partner, source_key, source_version,
       rows_added, rows_removed, rejects_added,
       snapshot_id, rejects_snapshot_id, manifest_key, execution_arn, commit_token
FROM "{db}"."transaction_loads"
ORDER BY committed_at DESC""",
    ),
    "duplicate-ids-across-files": (
        "Transaction ids present under more than one file",
        """SELECT transaction_id,
       count(DISTINCT file_id) AS files,
       count(*) AS row_count,
       array_agg(DISTINCT file_id) AS file_ids,
       array_agg(DISTINCT partner) AS partners
FROM "{db}"."transactions"
GROUP BY transaction_id
HAVING count(DISTINCT file_id) > 1
ORDER BY files DESC, transaction_id""",
    ),
}


def named_query_sql(name: str, database: str) -> str:
    return NAMED_QUERIES[name][1].replace("{db}", database)


def workgroup_name(config: EtlConfig) -> str:
    """``etl-<suffix>``: one Athena workgroup per environment (names are per region)."""
    return f"etl-{config.environment_suffix}"


class Dataset(Construct):
    """Glue database + Iceberg tables (custom resource) + Athena workgroup + named queries."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EtlConfig,
        bucket: s3.IBucket,
        code: lambda_.Code,
        layers: list[lambda_.ILayerVersion],
    ) -> None:
        super().__init__(scope, construct_id)
        self.database_name = c.glue_database(config.environment_suffix)
        warehouse = f"s3://{bucket.bucket_name}/{c.TABLES_PREFIX}"

        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=Aws.ACCOUNT_ID,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.database_name,
                description=f"Published transactions ({config.environment_suffix}): Iceberg tables "
                f"{c.TRANSACTIONS_TABLE}, {c.REJECTS_TABLE} and {c.LOADS_TABLE}",
                location_uri=warehouse,
            ),
        )

        self.tables_function = self._tables_function(config, bucket, code, layers)
        provider_log_group = logs.LogGroup(
            self,
            "TablesProviderLogGroup",
            log_group_name="/aws/lambda/" + config.name("ensure-tables-provider"),
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.provider = cr.Provider(
            self,
            "TablesProvider",
            on_event_handler=self.tables_function,
            provider_function_name=config.name("ensure-tables-provider"),
            log_group=provider_log_group,
        )
        framework = self.provider.node.find_child("framework-onEvent")
        assert isinstance(framework, lambda_.Function) and framework.role is not None
        drop_redundant_role_dependency(framework, framework.role)  # cfn-lint W3005
        self.tables = CustomResource(
            self,
            "Tables",
            service_token=self.provider.service_token,
            resource_type=TABLES_RESOURCE_TYPE,
            properties={"Database": self.database_name, "Warehouse": warehouse},
        )
        self.tables.node.add_dependency(self.database)
        self._acknowledge_provider()

        self.results_location = f"s3://{bucket.bucket_name}/{c.ATHENA_RESULTS_PREFIX}"
        self.workgroup = athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=workgroup_name(config),
            description=f"Queries over the transactions dataset ({config.environment_suffix})",
            state="ENABLED",
            # Lets `cdk destroy` delete the workgroup with its named queries and history.
            recursive_delete_option=True,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=config.athena_scan_cutoff_bytes,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(selected_engine_version="AUTO"),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=self.results_location,
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_S3"
                    ),
                    expected_bucket_owner=Aws.ACCOUNT_ID,
                ),
            ),
        )
        self.named_queries: dict[str, athena.CfnNamedQuery] = {}
        for name, (description, _) in NAMED_QUERIES.items():
            query = athena.CfnNamedQuery(
                self,
                "Query-" + name,
                name=config.name(name),
                description=description,
                database=self.database_name,
                work_group=self.workgroup.ref,
                query_string=named_query_sql(name, self.database_name),
            )
            query.node.add_dependency(self.database)
            self.named_queries[name] = query

    def _tables_function(
        self,
        config: EtlConfig,
        bucket: s3.IBucket,
        code: lambda_.Code,
        layers: list[lambda_.ILayerVersion],
    ) -> lambda_.Function:
        """The provider's on_event handler, with infra/functions.py's conventions (INF6)."""
        function_name = config.name("ensure-tables")
        log_group = logs.LogGroup(
            self,
            "TablesLogGroup",
            log_group_name="/aws/lambda/" + function_name,
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            "TablesRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Runs {function_name} ({ENSURE_TABLES_HANDLER})",
        )
        log_group.grant_write(role)
        catalog_and_database, tables = (
            glue_arns(self, self.database_name)[:2],
            glue_arns(self, self.database_name),
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=list(GLUE_DATABASE_ACTIONS), resources=catalog_and_database)
        )
        role.add_to_principal_policy(iam.PolicyStatement(actions=list(GLUE_TABLE_ACTIONS), resources=tables))
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[bucket.arn_for_objects(c.TABLES_PREFIX + "*")],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [c.TABLES_PREFIX + "*"]}},
            )
        )
        function = lambda_.Function(
            self,
            "TablesFunction",
            function_name=function_name,
            description=f"Creates the dataset's Iceberg tables when missing: {ENSURE_TABLES_HANDLER}",
            runtime=config.runtime,
            architecture=config.lambda_architecture,
            handler=ENSURE_TABLES_HANDLER,
            code=code,
            layers=layers,
            memory_size=MEMORY_MB,
            timeout=TIMEOUT,
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            log_group=log_group,
            role=role,
            environment={
                "POWERTOOLS_SERVICE_NAME": c.SERVICE_NAME,
                "POWERTOOLS_LOG_LEVEL": "INFO",
                **c.RUNTIME_ENV,
            },
        )
        drop_redundant_role_dependency(function, role)

        bucket_id = logical_id(bucket)
        stack = Stack.of(self)
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{c.TABLES_PREFIX}*]",
            "Iceberg metadata and data object keys under tables/ are generated by pyiceberg (uuids), "
            "so the function is granted that one prefix of the data bucket, nothing wider.",
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::arn:{stack.partition}:glue:{stack.region}:<AWS::AccountId>:"
            f"table/{self.database_name}/*]",
            "The function creates the dataset's tables, so it is granted the tables of this one "
            "Glue database (Glue authorises table calls against table/<database>/<name>).",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "Only xray:PutTraceSegments/PutTelemetryRecords (added for active tracing) use '*': "
            "X-Ray supports no resource-level permissions.",
        )
        acknowledge(
            function,
            "Serverless-LambdaDLQ",
            "Invoked synchronously by the CloudFormation custom-resource provider, which reports a "
            "failure to CloudFormation (the stack operation fails); no asynchronous invocation.",
        )
        if config.lambda_runtime != LATEST_PYTHON:
            for rule in ("AwsSolutions-L1", "Serverless-LambdaLatestVersion"):
                acknowledge(
                    function,
                    rule,
                    f"{config.lambda_runtime} is a supported, non-deprecated runtime (SPEC L2) chosen for "
                    f"every function of the stack; {LATEST_PYTHON} is one context value away.",
                )
        return function

    def _acknowledge_provider(self) -> None:
        """Findings on the CDK Provider framework's own Node.js function and role."""
        framework = self.provider.node.find_child("framework-onEvent")
        acknowledge(
            framework,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "The CDK custom-resource provider framework creates this role with the basic execution "
            "policy (CloudWatch Logs only) and offers no way to replace it; it writes to its own logs.",
        )
        acknowledge(
            framework,
            f"AwsSolutions-IAM5[Resource::<{logical_id(self.tables_function)}.Arn>:*]",
            "The provider framework may invoke any version/alias of the one table-creation function "
            "it fronts (the ':*' is that function's qualifiers, not other functions).",
        )
        for rule, reason in (
            (
                "Serverless-LambdaDLQ",
                "Invoked synchronously by CloudFormation through the provider's service token; a "
                "failure fails the stack operation, so no asynchronous-invocation DLQ is needed.",
            ),
            (
                "Serverless-LambdaTracing",
                "The provider framework only relays the CloudFormation event to the traced "
                "table-creation function, whose X-Ray tracing is active.",
            ),
            (
                "Serverless-LambdaDefaultMemorySize",
                "The provider framework relays one small event per stack operation; CDK sizes it "
                "and the real work runs in the table-creation function (3072 MB).",
            ),
        ):
            acknowledge(framework, rule, reason)
