"""INF8: the per-file result FIFO queue (+ DLQ) and the failure-alert topic."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import EtlConfig
from infra.nag import acknowledge


class Notifications(Construct):
    """Result queue (FIFO, ordered per partner, de-duplicated per file) and alert topic."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EtlConfig,
        alarm_email: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)

        self.result_dlq = sqs.Queue(
            self,
            "ResultDlq",
            queue_name="{}.fifo".format(config.name("results-dlq")),
            fifo=True,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(
            self.result_dlq,
            "AwsSolutions-SQS3",
            "This queue is the dead-letter queue of the result queue; a DLQ of a DLQ only "
            "moves the problem (its depth is alarmed instead).",
        )
        acknowledge(
            self.result_dlq,
            "Serverless-SQSRedrivePolicy",
            "A dead-letter queue has no redrive target of its own; its depth is on the "
            "dashboard and alarmed to the alert topic.",
        )

        self.result_queue = sqs.Queue(
            self,
            "ResultQueue",
            queue_name="{}.fifo".format(config.name("results")),
            fifo=True,
            # The workflow passes MessageDeduplicationId = file_id; content-based dedup would
            # treat a legitimate re-publication with an identical body differently.
            content_based_deduplication=False,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            visibility_timeout=Duration.minutes(5),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=5, queue=self.result_dlq),
            removal_policy=RemovalPolicy.DESTROY,
        )

        # A customer managed key, not alias/aws/sns: CloudWatch alarms can only publish to an
        # encrypted topic whose key policy lets cloudwatch.amazonaws.com use the key, and the
        # AWS managed key's policy cannot be changed.
        self.alert_key = kms.Key(
            self,
            "AlertKey",
            description=f"Encrypts the ETL failure-alert topic ({config.environment_suffix})",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        stack = Stack.of(self)
        # OPS3: only this account's alarms of this pipeline (their names share the prefix).
        alarm_arns = stack.format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name=config.name("alarm") + "-*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        from_our_alarms = {
            "StringEquals": {"aws:SourceAccount": stack.account},
            "ArnLike": {"aws:SourceArn": alarm_arns},
        }
        self.alert_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # "*" in a key policy means this key
                conditions=from_our_alarms,
            )
        )

        self.alert_topic = sns.Topic(
            self,
            "AlertTopic",
            topic_name=config.name("alerts"),
            display_name=f"ETL failure alerts ({config.environment_suffix})",
            master_key=self.alert_key,
            enforce_ssl=True,
        )
        self.alert_topic.apply_removal_policy(RemovalPolicy.DESTROY)
        # OPS3: a topic with a resource policy (enforce_ssl made one) has no default policy
        # left, so CloudWatch alarms may publish only if a statement says so.
        self.alert_topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.alert_topic.topic_arn],
                conditions=from_our_alarms,
            )
        )
        self.alert_subscription_dlq: sqs.Queue | None = None
        if alarm_email:
            # Alerts SNS could not deliver to the mailbox are kept instead of dropped.
            self.alert_subscription_dlq = sqs.Queue(
                self,
                "AlertSubscriptionDlq",
                queue_name=config.name("alerts-dlq"),
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
                retention_period=Duration.days(14),
                removal_policy=RemovalPolicy.DESTROY,
            )
            for rule, reason in (
                ("AwsSolutions-SQS3", "This queue is the e-mail subscription's dead-letter queue."),
                (
                    "Serverless-SQSRedrivePolicy",
                    "A dead-letter queue has no redrive target of its own; it keeps alerts SNS "
                    "could not e-mail.",
                ),
            ):
                acknowledge(self.alert_subscription_dlq, rule, reason)
            self.alert_topic.add_subscription(
                subscriptions.EmailSubscription(alarm_email, dead_letter_queue=self.alert_subscription_dlq)
            )
