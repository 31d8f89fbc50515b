"""One deployable copy of the pipeline. Composes the constructs; owns no resources itself."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from etl import contracts
from etl import stack_outputs as out
from etl.stack_outputs import function_output_id
from infra.access_point import UploadAccessPoint, access_point_name
from infra.admission import Admission
from infra.config import DR_REGION, PRIMARY_REGION, EtlConfig
from infra.dataset import Dataset
from infra.dr_defaults import InitialRoutes, QuietStandbyAlarms
from infra.functions import EtlFunctions
from infra.guardrails import apply_guardrails
from infra.iceberg_layer import IcebergLayer
from infra.maintenance import TableMaintenance
from infra.monitoring import Monitoring
from infra.nag import logical_id
from infra.notifications import Notifications
from infra.partners import PartnerRoles
from infra.reconciliation import Reconciliation
from infra.replication import Replication, link_of_region
from infra.status_table import StatusTable
from infra.storage import DataStorage
from infra.trigger import S3Trigger
from infra.workflow import EtlWorkflow


class EtlPipelineStack(Stack):
    """Bucket -> EventBridge -> Step Functions -> Lambda, with status table, queue, alerts.

    ``role`` is ``primary`` (us-east-1) or ``dr`` (eu-west-1). Both take every file (the DR
    stack is a warm standby, SPEC DR2); which one announces and pages is the runtime switch
    (SSM parameter ``region_role_parameter_name``, never created here), defaulting to
    ``default_region_role`` while absent. The primary stack also owns the cross-region links:
    replication both ways and the upload access point (it deploys after the DR stack).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EtlConfig,
        role: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        if (role, self.region) not in (("primary", PRIMARY_REGION), ("dr", DR_REGION)):
            raise ValueError(f"role {role!r} does not fit region {self.region!r}")
        self.default_region_role = out.ROLE_ACTIVE if role == "primary" else out.ROLE_STANDBY
        region_role_parameter = out.region_role_parameter_name(config.environment_suffix)
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
            # DR2: the primary announces and pages; the DR region is a standby until promoted.
            default_region_role="active" if role == "primary" else "standby",
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
            functions={step: functions.functions[step] for step in contracts.HANDLERS},
            result_queue=notifications.result_queue,
            alert_topic=notifications.alert_topic,
            alert_key=notifications.alert_key,
            table=status.table,
            bucket=storage.bucket,
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
            schedule_enabled=True,
        )
        # TBL6: snapshot expiry and orphan removal of the dataset tables, daily, in both regions.
        maintenance = TableMaintenance(
            self,
            "Maintenance",
            config=config,
            functions=functions,
            alert_topic=notifications.alert_topic,
            dead_letter_queue=reconciliation.dead_letter_queue,
        )
        trigger = S3Trigger(
            self,
            "Trigger",
            config=config,
            bucket=storage.bucket,
            enabled=True,
        )
        admission = Admission(
            self,
            "Admission",
            config=config,
            state_machine=workflow.state_machine,
            starter=functions.functions["StartFiles"],
            s3_rule=trigger.rule,
            rule_dead_letter_queue=trigger.dead_letter_queue,
            enabled=True,
        )
        # SEC4: the sweep re-delivers the event of an object under incoming/ that has no status
        # item into the admission buffer (etl/handlers/unseen.py).
        reconciliation.function.add_environment("BUFFER_QUEUE_URL", admission.buffer_queue.queue_url)
        reconciliation.function.add_to_role_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[admission.buffer_queue.queue_arn])
        )
        dead_letter_queues = {
            "TriggerDlq": trigger.dead_letter_queue,
            "ResultDlq": notifications.result_dlq,
            "BufferDlq": admission.buffer_dlq,
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
            chunk_function=functions.functions["ProcessChunk"],
            buffer_queue=admission.buffer_queue,
            replication=link_of_region(config, self.region),
        )
        # DR3: every function learns where this region's role switch lives and its default.
        for function in functions.functions.values():
            function.add_environment("REGION_ROLE_PARAMETER", region_role_parameter)
            function.add_environment("DEFAULT_REGION_ROLE", self.default_region_role)
        peer_region = DR_REGION if role == "primary" else PRIMARY_REGION
        dr_outputs = {
            out.REGION_ROLE_PARAMETER: region_role_parameter,
            out.DEFAULT_REGION_ROLE: self.default_region_role,
            out.PEER_REGION: peer_region,
            out.PEER_BUCKET_NAME: config.data_bucket_name(self.account, peer_region),
            out.UPLOAD_ACCESS_POINT_NAME: access_point_name(config),
        }
        if role == "dr":
            # DR7: the standby pages nobody from its first deploy on.
            QuietStandbyAlarms(
                self, "StandbyDefaults", config=config, alarms=[*monitoring.alarms, maintenance.alarm]
            )
        if role == "primary":
            replication = Replication(self, "Replication", config=config, primary_bucket=storage.bucket)
            access_point = UploadAccessPoint(
                self, "UploadAccessPoint", config=config, primary_bucket=storage.bucket
            )
            partners = PartnerRoles(
                self,
                "Partners",
                config=config,
                access_point_arn=access_point.arn,
                access_point_id=logical_id(access_point.access_point),
            )
            access_point.allow_partners(partners.roles)
            # DR7: uploads go 100 % to the primary from the first deploy on.
            InitialRoutes(
                self,
                "InitialRoutes",
                config=config,
                access_point_arn=access_point.arn,  # its GetAtt orders the call after the access point
                primary_bucket=storage.bucket.bucket_name,
            )
            dr_outputs[out.UPLOAD_ACCESS_POINT_ALIAS] = access_point.alias
            dr_outputs[out.UPLOAD_ACCESS_POINT_ARN] = access_point.arn
            dr_outputs[out.REPLICATION_ROLE_ARN] = replication.forward_role.role_arn
        apply_guardrails(self)

        # The operator CLI and the local harness find every resource through these outputs.
        outputs = {
            out.BUCKET_NAME: storage.bucket.bucket_name,
            out.TABLE_NAME: status.table.table_name,
            out.STATE_MACHINE_ARN: workflow.state_machine.state_machine_arn,
            out.RESULT_QUEUE_URL: notifications.result_queue.queue_url,
            out.RESULT_DLQ_URL: notifications.result_dlq.queue_url,
            out.ALERT_TOPIC_ARN: notifications.alert_topic.topic_arn,
            out.TRIGGER_RULE_NAME: trigger.rule.rule_name,
            out.TRIGGER_DLQ_URL: trigger.dead_letter_queue.queue_url,
            out.DASHBOARD_NAME: monitoring.dashboard.dashboard_name,
            out.STATE_MACHINE_LOG_GROUP_NAME: workflow.log_group.log_group_name,
            out.PIPELINE_ROLE: role,
            out.GLUE_DATABASE_NAME: dataset.database_name,
            out.ATHENA_WORKGROUP_NAME: dataset.workgroup.ref,
            out.RECONCILE_FUNCTION_NAME: reconciliation.function.function_name,
            out.RECONCILE_DLQ_URL: reconciliation.dead_letter_queue.queue_url,
            out.BUFFER_QUEUE_URL: admission.buffer_queue.queue_url,
            out.BUFFER_DLQ_URL: admission.buffer_dlq.queue_url,
            out.MAX_FILES_IN_FLIGHT: str(config.max_files_in_flight),
            out.DEFAULT_SCHEMA_PARTNERS: json.dumps(list(config.default_schema_partners)),
            **dr_outputs,
        }
        for step in contracts.ALL_FUNCTIONS:
            outputs[function_output_id(step)] = functions.functions[step].function_name
        for output_id, value in outputs.items():
            CfnOutput(self, output_id, value=value)
