"""DR7: safe defaults at deploy, with no command to remember.

A new deployment must not depend on someone running ``etl dr demote`` before it is safe:

* S3 creates the Multi-Region Access Point with every Region active and no routes, so requests
  go to the nearest bucket (European partners would upload to eu-west-1 from day one).
  ``InitialRoutes`` (primary stack) submits routes 100 % primary / 0 % standby once, when the
  stack is created.
* The standby's alarms would page from the first deploy. ``QuietStandbyAlarms`` (DR stack)
  turns their actions off once, when the stack is created.

Both are create-only custom resources (no on_update/on_delete call): a routine ``cdk deploy``
never flips a failover back, which a template property (``ActionsEnabled: false``, re-applied by
every update of an alarm) would. The trade-off (docs/disaster-recovery.md): an alarm *added* by
a later deploy starts with its actions on in the standby, and an alarm whose properties a later
deploy changes is re-created by CloudFormation with actions on; ``etl dr status`` shows the
count of standby alarms with actions on, and any ``etl dr promote``/``demote`` corrects them.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.config import DR_REGION, PRIMARY_REGION, EtlConfig
from infra.guardrails import drop_redundant_role_dependency
from infra.nag import acknowledge

# The Multi-Region Access Point failover control plane answers in five Regions; us-west-2 is the
# one `etl dr promote/demote` use (etl_cli/dr.py), so it also works with us-east-1 impaired.
ROUTES_CONTROL_REGION = "us-west-2"


def _sdk_log_group(scope: Construct, config: EtlConfig, name: str) -> logs.LogGroup:
    return logs.LogGroup(
        scope,
        "SdkLogGroup",
        log_group_name="/aws/lambda/" + config.name(name),
        retention=logs.RetentionDays.ONE_MONTH,
        removal_policy=RemovalPolicy.DESTROY,
    )


def acknowledge_sdk_function(resource: cr.AwsCustomResource, what: str) -> None:
    """Findings on CDK's AwsCustomResource function (a stack singleton) and its role."""
    role = resource.grant_principal
    assert isinstance(role, iam.Role)
    function = role.node.scope
    assert function is not None
    drop_redundant_role_dependency(function, role)  # cfn-lint W3005: GetAtt already orders it
    acknowledge(
        role,
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
        "CDK's AwsCustomResource creates this role with the basic execution policy (CloudWatch "
        f"Logs only) and offers no way to replace it; its only other grants: {what}.",
    )
    for rule, reason in (
        (
            "Serverless-LambdaDLQ",
            "Invoked synchronously by CloudFormation; a failure fails the stack operation, so no "
            "asynchronous-invocation DLQ is needed.",
        ),
        (
            "Serverless-LambdaTracing",
            "One API call per stack creation, recorded in CloudTrail and the stack events; CDK's "
            "AwsCustomResource function offers no tracing setting.",
        ),
        (
            "Serverless-LambdaDefaultMemorySize",
            "CDK's AwsCustomResource function makes one small API call per stack operation; CDK "
            "sizes it and offers no memory setting.",
        ),
    ):
        acknowledge(function.node.default_child or function, rule, reason)


class InitialRoutes(Construct):
    """Primary stack: the access point routes 100 % to the primary bucket from creation on."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EtlConfig,
        access_point_arn: str,
        primary_bucket: str,
    ) -> None:
        super().__init__(scope, construct_id)
        routes = [
            {"Bucket": primary_bucket, "Region": PRIMARY_REGION, "TrafficDialPercentage": 100},
            {
                "Bucket": config.data_bucket_name(Aws.ACCOUNT_ID, DR_REGION),
                "Region": DR_REGION,
                "TrafficDialPercentage": 0,
            },
        ]
        self.resource = cr.AwsCustomResource(
            self,
            "Routes",
            # Create only: no on_update, so a later deploy never undoes a failover (DR3).
            on_create=cr.AwsSdkCall(
                service="S3Control",
                action="submitMultiRegionAccessPointRoutes",
                region=ROUTES_CONTROL_REGION,
                parameters={"AccountId": Aws.ACCOUNT_ID, "Mrap": access_point_arn, "RouteUpdates": routes},
                physical_resource_id=cr.PhysicalResourceId.of(f"{config.name('uploads')}-initial-routes"),
            ),
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [
                    iam.PolicyStatement(
                        actions=["s3:SubmitMultiRegionAccessPointRoutes"], resources=[access_point_arn]
                    )
                ]
            ),
            install_latest_aws_sdk=False,
        )


class QuietStandbyAlarms(Construct):
    """DR stack: the standby's alarms start with their actions off (it pages nobody, DR2)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: EtlConfig, alarms: Sequence[cw.Alarm]
    ) -> None:
        super().__init__(scope, construct_id)
        names = [a.alarm_name for a in alarms]
        self.resource = cr.AwsCustomResource(
            self,
            "DisableActions",
            on_create=cr.AwsSdkCall(
                service="CloudWatch",
                action="disableAlarmActions",
                parameters={"AlarmNames": names},
                physical_resource_id=cr.PhysicalResourceId.of(config.name("standby-alarms-quiet")),
            ),
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [
                    iam.PolicyStatement(
                        actions=["cloudwatch:DisableAlarmActions"], resources=[a.alarm_arn for a in alarms]
                    )
                ]
            ),
            log_group=_sdk_log_group(self, config, "standby-defaults"),
            install_latest_aws_sdk=False,
        )
        acknowledge_sdk_function(self.resource, "cloudwatch:DisableAlarmActions on this stack's alarms")
