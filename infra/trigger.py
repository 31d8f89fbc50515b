"""INF4: EventBridge rule "S3 Object Created under incoming/" -> admission control -> workflow.

The rule and its dead-letter queue live here; its targets (the admission buffer queue and the
StartFiles wake-up, both with this DLQ and a retry policy) are added by infra/admission.py
(SPEC OPS2), which starts the state machine with the event as input.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from etl import contracts
from infra.config import EtlConfig
from infra.nag import acknowledge


class S3Trigger(Construct):
    """The rule (disabled on a warm standby) and its targets' dead-letter queue."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EtlConfig,
        bucket: s3.IBucket,
        enabled: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        # Events EventBridge could not deliver (after its retries) land here; each message is
        # the original event, so an operator can start an execution with it as input (or send
        # it to the buffer queue). The admission wake-up rules use it too.
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
            description=f"S3 Object Created under {contracts.INCOMING_PREFIX}: buffer, wake the starter",
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
