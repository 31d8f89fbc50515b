"""TBL6: the dataset tables' upkeep on a schedule: the MaintainTables function, its rule
and its error alarm.

Per operation, who does it (docs/dataset.md "Maintenance"):

- old metadata files and manifest merging: the commits themselves (table properties,
  etl.core.dataset.TABLE_PROPERTIES);
- snapshot expiry and orphan-file removal: this scheduled function (pyiceberg), not the Glue
  table optimizers. The Glue retention/orphan optimizers cannot run in local mode, so the
  bounds that keep in-flight loads safe would be tested nowhere; the function's bounds are code
  (etl/aws/maintenance.py) with a floor, the same on both stacks, on the emulator and on AWS;
- compaction: none. A Glue (or Athena OPTIMIZE) compaction writes files mixing file_ids, which
  turns every later replace of a file's rows from a metadata-only delete into a rewrite.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from etl import contracts as c
from etl.aws import maintenance as m
from infra.config import EtlConfig
from infra.functions import DELETE, GET_CURRENT, PUT, Access, EtlFunctions

STEP = c.MAINTAIN_STEP
TAB = c.TABLES_PREFIX
# Every 6 hours: with a one-day retention the tables keep at most ~30 hours of snapshots, which
# bounds the cost of every commit (docs/benchmarks.md "TBL6").
SCHEDULE = events.Schedule.cron(minute="17", hour="*/6")
# The schedule's fixed input: the handler ignores it; it marks the target as a scheduled job
# (the local deploy runs such jobs on demand, not on its compressed clock).
SCHEDULE_INPUT = {"mode": "scheduled"}

# What etl/aws/maintenance.py does through pyiceberg and boto3 (OPS5: the IAM coverage test
# records every call): loads each table (GetTable; GetDatabase, as pyiceberg's GlueCatalog does
# on a commit), commits the expiry (UpdateTable, a new metadata file under tables/), reads
# metadata, manifest lists and manifests, lists the table's objects and deletes the orphans (and
# pyiceberg deletes metadata files beyond the kept ones).
ACCESS = Access(
    s3=((GET_CURRENT + PUT + DELETE, (TAB,)),),
    table=(),
    list_prefixes=(TAB,),
    glue=("glue:GetDatabase", "glue:GetTable", "glue:UpdateTable"),
)


class TableMaintenance(Construct):
    """The MaintainTables function, its schedule and an alarm on its errors."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EtlConfig,
        functions: EtlFunctions,
        alert_topic: sns.ITopic,
        dead_letter_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        short_name, handler = c.MAINTAIN_FUNCTION
        self.function = functions.add_function(
            self,
            STEP,
            short_name,
            handler,
            ACCESS,
            extra_environment={
                m.ENV_RETENTION_DAYS: str(m.SNAPSHOT_RETENTION_SECONDS // 86400),
                m.ENV_MIN_SNAPSHOTS: str(m.MIN_SNAPSHOTS),
                m.ENV_ORPHAN_AGE_HOURS: str(m.ORPHAN_AGE_SECONDS // 3600),
            },
            # An asynchronous invocation (the schedule) that fails after Lambda's two retries.
            dead_letter_queue=dead_letter_queue,
            # One run at a time: two runs would race each other's expiry commits.
            reserved_concurrency=1,
        )
        # Runs in both regions: each region's tables are its own (tables/ is not replicated),
        # and a standby's tables take the same loads.
        self.rule = events.Rule(
            self,
            "Schedule",
            rule_name=config.name("maintain-tables"),
            description="Every 6 hours: expire old snapshots and remove orphan files of the dataset tables",
            schedule=SCHEDULE,
        )
        self.rule.add_target(
            targets.LambdaFunction(
                self.function,
                event=events.RuleTargetInput.from_object(SCHEDULE_INPUT),
                dead_letter_queue=dead_letter_queue,
                retry_attempts=4,
                max_event_age=Duration.hours(6),
            )
        )
        # A failed run pages: unmaintained tables grow slowly, but a run that keeps failing
        # (a permission, a corrupt manifest) must not go unnoticed until commits slow down.
        self.alarm = cw.Alarm(
            self,
            "ErrorsAlarm",
            alarm_name="{}-{}".format(config.name("alarm"), "maintaintableserrors"),
            alarm_description="The scheduled table maintenance (MaintainTables) failed",
            metric=self.function.metric_errors(period=Duration.hours(6), statistic="Sum"),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.alarm.add_alarm_action(cw_actions.SnsAction(alert_topic))
