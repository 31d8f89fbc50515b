"""INF9: dashboard and alarms (alarms notify the alert topic)."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from etl import contracts
from infra.admission import OLDEST_MESSAGE_ALARM_SECONDS
from infra.config import EtlConfig
from infra.replication import RTC_MINUTES, ReplicationLink

# Powertools Metrics emits EMF with the namespace and a `service` dimension taken from
# POWERTOOLS_METRICS_NAMESPACE / POWERTOOLS_SERVICE_NAME (set on every function).
CUSTOM_NAMESPACE = contracts.METRICS_NAMESPACE
SERVICE_DIMENSION = {"service": contracts.SERVICE_NAME}
CUSTOM_METRICS = contracts.CUSTOM_METRICS
PERIOD = Duration.minutes(5)


# OPS3 "one failure pages once": a single failed file is paged by its own alert (MarkFailed ->
# AlertFailure, or the reconcile function); alarms that would fire for that same single
# failure only show on the dashboard. An alarm pages when it means something no per-file alert
# says: a systemic failure rate, a dead-letter queue holding events or results, stale files
# that reconciliation did not clear, a file waiting long in the admission buffer (OPS2).
# ChunkThrottles is dashboard-only: throttled chunks are retried, and a file that still fails
# because of them is paged by its own alert (paging the throttles too would page it twice).
SYSTEMIC_MIN_FAILURES = 3
PAGING_ALARMS = (
    "FailureRate",
    "StaleFiles",
    "UnseenFiles",
    "BufferOldestMessage",
    "ReplicationLatency",
    "ReplicationFailed",
)  # plus every "<Dlq>Depth" alarm
DASHBOARD_ONLY_ALARMS = ("FailedExecutions", "ChunkThrottles")


class Monitoring(Construct):
    """One dashboard for the pipeline plus its alarms (the paging ones wired to SNS)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EtlConfig,
        region: str,
        state_machine: sfn.IStateMachine,
        functions: dict[str, lambda_.IFunction],
        dead_letter_queues: Mapping[str, sqs.IQueue],
        alert_topic: sns.ITopic,
        chunk_function: lambda_.IFunction,
        buffer_queue: sqs.IQueue,
        replication: ReplicationLink,
    ) -> None:
        super().__init__(scope, construct_id)

        started = state_machine.metric_started(period=PERIOD, statistic="Sum")
        succeeded = state_machine.metric_succeeded(period=PERIOD, statistic="Sum")
        failed = state_machine.metric_failed(period=PERIOD, statistic="Sum")
        failure_rate = cw.MathExpression(
            expression="IF(started > 0, 100 * failed / started, 0)",
            using_metrics={"started": started, "failed": failed},
            label="Failure rate (%)",
            period=PERIOD,
        )
        # The paging variant: a rate only counts once several files failed in the period, so one
        # failed file out of one started (100%) is not "systemic" and pages once (its alert).
        systemic_failure_rate = cw.MathExpression(
            expression=f"IF(failed >= {SYSTEMIC_MIN_FAILURES} AND started > 0, 100 * failed / started, 0)",
            using_metrics={"started": started, "failed": failed},
            label=f"Failure rate (%) when >= {SYSTEMIC_MIN_FAILURES} failed",
            period=PERIOD,
        )
        duration = state_machine.metric_time(period=PERIOD, statistic="p90")

        action = cw_actions.SnsAction(alert_topic)
        self.alarms: list[cw.Alarm] = []

        def alarm(
            alarm_id: str,
            metric: cw.IMetric,
            threshold: float,
            what: str,
            *,
            page: bool = True,
            evaluation_periods: int = 1,
        ) -> None:
            created = cw.Alarm(
                self,
                alarm_id,
                alarm_name="{}-{}".format(config.name("alarm"), alarm_id.lower()),
                alarm_description=what,
                metric=metric,
                threshold=threshold,
                evaluation_periods=evaluation_periods,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )
            if page:
                created.add_alarm_action(action)
            self.alarms.append(created)

        alarm(
            "FailureRate",
            systemic_failure_rate,
            10,
            f"Systemic: {SYSTEMIC_MIN_FAILURES}+ executions failed and 10% or more of executions "
            "failed in 5 minutes (each failed file is also alerted on its own)",
        )
        alarm(
            "FailedExecutions",
            failed,
            1,
            "At least one ETL execution ended FAILED (dashboard only: the file's own alert pages)",
            page=False,
        )
        sweep_period = Duration.minutes(contracts.SWEEP_PERIOD_MINUTES)
        stale = cw.Metric(
            namespace=CUSTOM_NAMESPACE,
            metric_name=contracts.METRIC_STALE_FILES,
            dimensions_map=SERVICE_DIMENSION,
            statistic="Maximum",
            period=sweep_period,
            label="Stale files (sweep)",
        )
        unnotified = cw.Metric(
            namespace=CUSTOM_NAMESPACE,
            metric_name=contracts.METRIC_UNNOTIFIED_FILES,
            dimensions_map=SERVICE_DIMENSION,
            statistic="Maximum",
            period=sweep_period,
            label="Results not sent (sweep)",
        )
        # The sweep reconciles (and alerts) every stale file it finds; stale files in two sweeps
        # in a row mean reconciliation itself is not clearing them.
        alarm(
            "StaleFiles",
            stale,
            1,
            "Files non-terminal past the stale bound in two consecutive sweeps: reconciliation is "
            "not clearing them",
            evaluation_periods=2,
        )
        # SEC4: an object under incoming/ whose event never arrived (the sweep re-delivered it).
        alarm(
            "UnseenFiles",
            cw.Metric(
                namespace=CUSTOM_NAMESPACE,
                metric_name=contracts.METRIC_UNSEEN_FILES,
                dimensions_map=SERVICE_DIMENSION,
                statistic="Maximum",
                period=sweep_period,
                label="Objects without a status item (sweep)",
            ),
            1,
            "An object under incoming/ had no status item past the stale bound: its event never "
            "arrived (the sweep re-delivered it); find where events are lost",
        )
        dlq_depth: list[cw.IMetric] = []
        for name, queue in dead_letter_queues.items():
            depth = queue.metric_approximate_number_of_messages_visible(
                period=PERIOD, statistic="Maximum", label=f"{name} depth"
            )
            dlq_depth.append(depth)
            alarm(name + "Depth", depth, 1, f"Messages are waiting in the {name}")

        # OPS2: admission control. A throttled chunk function means the reserved concurrency
        # no longer covers the files in flight; an old buffered message means files wait long.
        chunk_throttles = chunk_function.metric_throttles(
            period=PERIOD, statistic="Sum", label="ProcessChunk throttles"
        )
        alarm(
            "ChunkThrottles",
            chunk_throttles,
            1,
            "ProcessChunk invocations were throttled: its reserved concurrency "
            f"({config.chunk_reserved_concurrency}) is exhausted (dashboard only: retried; a file "
            "that still fails pages by its own alert)",
            page=False,
        )
        oldest_waiting = buffer_queue.metric_approximate_age_of_oldest_message(
            period=PERIOD, statistic="Maximum", label="Oldest waiting file (s)"
        )
        alarm(
            "BufferOldestMessage",
            oldest_waiting,
            OLDEST_MESSAGE_ALARM_SECONDS,
            f"A file has waited {OLDEST_MESSAGE_ALARM_SECONDS // 60} minutes or more in the admission buffer",
        )

        # DR1: replication out of this region's bucket (S3 publishes a rule's metrics in its
        # source region). Latency past the RTC threshold means the other region's copy is more
        # than 15 minutes behind (the RPO is at risk); a failed operation is an object S3 will
        # not retry on its own (S3 Batch Replication re-sends failed objects).
        def replication_metric(name: str, rule: str, statistic: str) -> cw.Metric:
            return cw.Metric(
                namespace="AWS/S3",
                metric_name=name,
                dimensions_map={
                    "SourceBucket": replication.source_bucket,
                    "DestinationBucket": replication.destination_bucket,
                    "RuleId": rule,
                },
                statistic=statistic,
                period=PERIOD,
                label=f"{name} {rule}",
            )

        def across_rules(key: str, name: str, statistic: str, combine: str, label: str) -> cw.MathExpression:
            # Metric ids must be unique per graph: the widget shows three of these expressions.
            metrics = {
                f"{key}{i}": replication_metric(name, rule, statistic)
                for i, rule in enumerate(replication.rule_ids)
            }
            return cw.MathExpression(
                expression=f"{combine}([{', '.join(metrics)}])",
                using_metrics=metrics,
                label=label,
                period=PERIOD,
            )

        replication_latency = across_rules(
            "latency", "ReplicationLatency", "Maximum", "MAX", "Replication latency, slowest rule (s)"
        )
        replication_failed = across_rules(
            "failed", "OperationsFailedReplication", "Sum", "SUM", "Objects that failed to replicate"
        )
        replication_pending = across_rules(
            "pending", "OperationsPendingReplication", "Maximum", "SUM", "Objects pending replication"
        )
        alarm(
            "ReplicationLatency",
            replication_latency,
            RTC_MINUTES * 60,
            f"Replication from {replication.source_region} is {RTC_MINUTES} minutes or more behind "
            "(the Replication Time Control threshold): the other region's copy is stale (RPO at risk)",
        )
        alarm(
            "ReplicationFailed",
            replication_failed,
            1,
            f"Objects failed to replicate from {replication.source_region}; S3 does not retry them "
            "(re-send with S3 Batch Replication)",
        )

        files_waiting = buffer_queue.metric_approximate_number_of_messages_visible(
            period=PERIOD, statistic="Maximum", label="Files waiting"
        )
        files_admitting = buffer_queue.metric_approximate_number_of_messages_not_visible(
            period=PERIOD, statistic="Maximum", label="Files being admitted"
        )
        chunk_concurrency = chunk_function.metric(
            "ConcurrentExecutions", period=PERIOD, statistic="Maximum", label="ProcessChunk concurrency"
        )

        def per_function(metric_name: str, statistic: str) -> list[cw.IMetric]:
            return [
                fn.metric(metric_name, period=PERIOD, statistic=statistic, label=step)
                for step, fn in functions.items()
            ]

        def custom(metric_name: str, statistic: str = "Sum") -> cw.Metric:
            if metric_name not in CUSTOM_METRICS:
                raise ValueError(f"{metric_name} is not a metric the handlers emit")
            return cw.Metric(
                namespace=CUSTOM_NAMESPACE,
                metric_name=metric_name,
                dimensions_map=SERVICE_DIMENSION,
                statistic=statistic,
                period=PERIOD,
            )

        # Dashboards are global in an account: the region keeps primary and DR apart.
        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"etl-{config.environment_suffix}-{region}",
            widgets=[
                [
                    cw.GraphWidget(title="Executions", left=[started, succeeded, failed], width=8),
                    cw.GraphWidget(title="Failure rate (%)", left=[failure_rate], width=8),
                    cw.GraphWidget(title="Execution duration p90 (ms)", left=[duration], width=8),
                ],
                [
                    cw.GraphWidget(
                        title="Function invocations",
                        left=per_function("Invocations", "Sum"),
                        width=6,
                    ),
                    cw.GraphWidget(title="Function errors", left=per_function("Errors", "Sum"), width=6),
                    cw.GraphWidget(
                        title="Function throttles",
                        left=per_function("Throttles", "Sum"),
                        width=6,
                    ),
                    cw.GraphWidget(
                        title="Function duration p90 (ms)",
                        left=per_function("Duration", "p90"),
                        width=6,
                    ),
                ],
                [
                    cw.GraphWidget(
                        title="Rows processed / rejected",
                        left=[custom("RowsProcessed"), custom("RowsRejected")],
                        width=8,
                    ),
                    cw.GraphWidget(title="Bytes processed", left=[custom("BytesProcessed")], width=8),
                    cw.GraphWidget(title="Dead-letter queue depth", left=dlq_depth, width=8),
                ],
                [
                    cw.GraphWidget(
                        title="Files succeeded / failed",
                        left=[custom("FilesSucceeded"), custom("FilesFailed")],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="Chunk processing p90 (ms)",
                        left=[custom("ChunkDurationMs", "p90")],
                        width=8,
                    ),
                    cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms), width=8),
                ],
                [
                    cw.GraphWidget(
                        title=f"Admission: files waiting (max {config.max_files_in_flight} in flight)",
                        left=[files_waiting, files_admitting],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="Admission: oldest waiting file (s)", left=[oldest_waiting], width=8
                    ),
                    cw.GraphWidget(
                        title="ProcessChunk concurrency (reserved "
                        f"{config.chunk_reserved_concurrency}) / throttles",
                        left=[chunk_concurrency],
                        right=[chunk_throttles],
                        width=8,
                    ),
                ],
                [
                    cw.GraphWidget(
                        title="Stale files / results not sent (reconcile sweep)",
                        left=[stale, unnotified],
                        width=12,
                    ),
                    cw.GraphWidget(
                        title=f"Replication {replication.source_region} -> other region: latency "
                        f"(s, RTC {RTC_MINUTES} min) / pending / failed objects",
                        left=[replication_latency],
                        right=[replication_pending, replication_failed],
                        width=12,
                    ),
                ],
            ],
        )
