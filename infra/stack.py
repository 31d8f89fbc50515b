"""One deployable copy of the pipeline. Composes the constructs; owns no resources itself."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from etl import contracts
from infra.config import EtlConfig
from infra.dataset import Dataset
from infra.functions import EtlFunctions
from infra.guardrails import apply_guardrails
from infra.iceberg_layer import IcebergLayer
from infra.monitoring import Monitoring
from infra.notifications import Notifications
from infra.reconciliation import Reconciliation
from infra.status_table import StatusTable
from infra.storage import DataStorage
from infra.trigger import S3Trigger
from infra.workflow import EtlWorkflow


def function_output_id(step: str) -> str:
    """Output name of a step's function, e.g. ``RegisterFileFunctionName``."""
    return step + "FunctionName"


class EtlPipelineStack(Stack):
    """Bucket -> EventBridge -> Step Functions -> Lambda, with status table, queue, alerts."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EtlConfig,
        trigger_enabled: bool,
        role: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        config.warn_about_runtime(self)

        storage = DataStorage(self, "Storage", config=config)
        status = StatusTable(self, "Status", config=config)
        notifications = Notifications(self, "Notifications", config=config, alarm_email=config.alarm_email)
        iceberg = IcebergLayer(self, "IcebergLayer", config=config)
        functions = EtlFunctions(
            self,
            "Functions",
            config=config,
            bucket=storage.bucket,
            table=status.table,
            iceberg_layer=iceberg.layer,
        )
        dataset = Dataset(
            self,
            "Dataset",
            config=config,
            bucket=storage.bucket,
            code=functions.code,
            layers=functions.iceberg_layers,
        )
        workflow = EtlWorkflow(
            self,
            "Workflow",
            config=config,
            functions=dict(functions.functions),
            result_queue=notifications.result_queue,
            alert_topic=notifications.alert_topic,
            alert_key=notifications.alert_key,
            table=status.table,
        )
        reconciliation = Reconciliation(
            self,
            "Reconciliation",
            config=config,
            functions=functions,
            state_machine=workflow.state_machine,
            alert_topic=notifications.alert_topic,
            alert_key=notifications.alert_key,
            result_queue=notifications.result_queue,
            schedule_enabled=trigger_enabled,
        )
        trigger = S3Trigger(
            self,
            "Trigger",
            config=config,
            bucket=storage.bucket,
            state_machine=workflow.state_machine,
            enabled=trigger_enabled,
        )
        dead_letter_queues = {
            "TriggerDlq": trigger.dead_letter_queue,
            "ResultDlq": notifications.result_dlq,
            "ReconcileDlq": reconciliation.dead_letter_queue,
        }
        if notifications.alert_subscription_dlq is not None:
            dead_letter_queues["AlertSubscriptionDlq"] = notifications.alert_subscription_dlq
        monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            region=self.region,
            state_machine=workflow.state_machine,
            functions=dict(functions.functions),
            dead_letter_queues=dead_letter_queues,
            alert_topic=notifications.alert_topic,
        )
        apply_guardrails(self)

        # The operator CLI and the local harness find every resource through these outputs.
        outputs = {
            "BucketName": storage.bucket.bucket_name,
            "TableName": status.table.table_name,
            "StateMachineArn": workflow.state_machine.state_machine_arn,
            "ResultQueueUrl": notifications.result_queue.queue_url,
            "ResultDlqUrl": notifications.result_dlq.queue_url,
            "AlertTopicArn": notifications.alert_topic.topic_arn,
            "TriggerRuleName": trigger.rule.rule_name,
            "TriggerDlqUrl": trigger.dead_letter_queue.queue_url,
            "DashboardName": monitoring.dashboard.dashboard_name,
            "StateMachineLogGroupName": workflow.log_group.log_group_name,
            "PipelineRole": role,
            "GlueDatabaseName": dataset.database_name,
            "AthenaWorkGroupName": dataset.workgroup.ref,
            "ReconcileFunctionName": reconciliation.function.function_name,
            "ReconcileDlqUrl": reconciliation.dead_letter_queue.queue_url,
        }
        for step in contracts.HANDLERS:
            outputs[function_output_id(step)] = functions.functions[step].function_name
        for output_id, value in outputs.items():
            CfnOutput(self, output_id, value=value)
