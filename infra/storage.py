"""INF3: the data bucket (landing, outputs, archive) and its server-access-log bucket."""

from __future__ import annotations

from aws_cdk import Aws, CfnResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from etl import contracts
from infra.config import EtlConfig
from infra.nag import acknowledge

ATHENA_RESULTS_DAYS = 7
# The singleton provider CDK adds to the stack for auto_delete_objects (construct id).
AUTO_DELETE_PROVIDER_ID = "Custom::S3AutoDeleteObjectsCustomResourceProvider"
# DR5: a move leaves a delete marker and keeps the version (etl/aws/s3.py move_object), so an
# object version lives on, noncurrent, for this many days: long enough for S3 replication to
# deliver every version written before or during a regional outage (replication resumes when
# the region returns; plan for outages up to this long) and for an operator to recover a file.
# docs/disaster-recovery.md states it as the longest outage the design covers without loss.
NONCURRENT_VERSION_DAYS = 30


class DataStorage(Construct):
    """Versioned, SSE-S3, TLS-only bucket that announces new objects to EventBridge."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EtlConfig) -> None:
        super().__init__(scope, construct_id)
        suffix = config.environment_suffix

        # Access logs go to their own bucket: logging a bucket into itself loops.
        self.log_bucket = s3.Bucket(
            self,
            "AccessLogBucket",
            bucket_name=f"etl-logs-{suffix}-{Aws.ACCOUNT_ID}-{Aws.REGION}",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(90)),
                s3.LifecycleRule(
                    id="abort-incomplete-multipart",
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
            ],
            removal_policy=RemovalPolicy.DESTROY,
            auto_delete_objects=True,
        )
        acknowledge(
            self.log_bucket,
            "AwsSolutions-S1",
            "This is the server-access-log destination of the data bucket; logging it too "
            "would need a third bucket or log into itself (a loop).",
        )

        self.bucket = s3.Bucket(
            self,
            "DataBucket",
            bucket_name=config.data_bucket_name(Aws.ACCOUNT_ID, Aws.REGION),
            versioned=True,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="data-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="archive-processed",
                    prefix=contracts.PROCESSED_PREFIX,
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.GLACIER,
                            transition_after=Duration.days(30),
                        )
                    ],
                ),
                s3.LifecycleRule(
                    id="expire-scratch",
                    prefix=contracts.SCRATCH_PREFIX,
                    expiration=Duration.days(3),
                ),
                # Athena writes every query's result here (DATA1): results are re-runnable.
                s3.LifecycleRule(
                    id="expire-athena-results",
                    prefix=contracts.ATHENA_RESULTS_PREFIX,
                    expiration=Duration.days(ATHENA_RESULTS_DAYS),
                ),
                # Moves (incoming/ -> processed/ or failed/) and re-runs leave noncurrent
                # versions behind (DR5); they expire after NONCURRENT_VERSION_DAYS.
                s3.LifecycleRule(
                    id="expire-noncurrent-versions",
                    noncurrent_version_expiration=Duration.days(NONCURRENT_VERSION_DAYS),
                    expired_object_delete_marker=True,
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-multipart",
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
            ],
            removal_policy=RemovalPolicy.DESTROY,
            auto_delete_objects=True,
        )
        # EventBridge notifications set on the bucket resource itself. Bucket(event_bridge_enabled=True)
        # would do this through the Custom::S3BucketNotifications Lambda (one more function,
        # role and runtime to patch); CloudFormation supports the setting natively.
        cfn_bucket = self.bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(
                event_bridge_enabled=True
            )
        )
        self.auto_delete_log_group = self._auto_delete_log_group(config)

    def _auto_delete_log_group(self, config: EtlConfig) -> logs.LogGroup:
        """SEC4/INF6: CDK's auto-delete-objects function logs to a 30-day, destroyable group.

        The provider is a raw CfnResource CDK creates once per stack; its function gets
        ``LoggingConfig.LogGroup`` pointing here, so the group exists (created first, through
        the reference) before the function's first invocation and Lambda never creates an
        unmanaged, never-expiring ``/aws/lambda/...`` group for it.
        """
        provider = Stack.of(self).node.try_find_child(AUTO_DELETE_PROVIDER_ID)
        handler = provider.node.try_find_child("Handler") if provider is not None else None
        if not isinstance(handler, CfnResource):
            raise ValueError("the auto-delete-objects provider function was not found")
        log_group = logs.LogGroup(
            self,
            "AutoDeleteObjectsLogGroup",
            log_group_name="/aws/lambda/" + config.name("auto-delete-objects"),
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        handler.add_property_override("LoggingConfig", {"LogGroup": log_group.log_group_name})
        return log_group
