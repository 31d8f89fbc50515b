"""INF4: EventBridge rule "S3 Object Created under incoming/" -> start the state machine."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from etl import contracts
from infra.config import EtlConfig
from infra.nag import acknowledge


class S3Trigger(Construct):
    """The rule (disabled on a warm standby), its target retry policy and dead-letter queue."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EtlConfig,
        bucket: s3.IBucket,
        state_machine: sfn.IStateMachine,
        enabled: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        # Events EventBridge could not deliver (after its retries) land here; each message is
        # the original event, so an operator can start an execution with it as input.
        self.dead_letter_queue = sqs.Queue(
            self,
            "TriggerDlq",
            queue_name=config.name("trigger-dlq"),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(
            self.dead_letter_queue,
            "AwsSolutions-SQS3",
            "This queue is the EventBridge target's dead-letter queue; its depth is alarmed "
            "rather than redriven into yet another queue.",
        )
        acknowledge(
            self.dead_letter_queue,
            "Serverless-SQSRedrivePolicy",
            "A dead-letter queue has no redrive target of its own; its depth is on the "
            "dashboard and alarmed to the alert topic.",
        )
        self.rule = events.Rule(
            self,
            "Rule",
            rule_name=config.name("incoming"),
            description=f"S3 Object Created under {contracts.INCOMING_PREFIX} starts the ETL state machine",
            enabled=enabled,
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [bucket.bucket_name]},
                    "object": {"key": [{"prefix": contracts.INCOMING_PREFIX}]},
                },
            ),
        )
        self.rule.add_target(
            targets.SfnStateMachine(
                state_machine,
                dead_letter_queue=self.dead_letter_queue,
                retry_attempts=8,
                max_event_age=Duration.hours(2),
            )
        )
