"""DR1: S3 replication between the primary (us-east-1) and the warm standby (eu-west-1) buckets.

Both directions are owned by the primary stack, which CDK deploys after the DR stack
(``infra/application.py``): S3 refuses a replication rule whose destination bucket does not
exist yet, so two stacks each owning one direction could never be deployed the first time
(each would wait for the other's bucket).

* Forward, primary -> DR: ``incoming/``, ``processed/``, ``failed/``, ``manifests/`` and
  ``announced/`` (the announcement ledger), a CloudFormation property of the primary bucket.
* Reverse, DR -> primary: ``incoming/`` and ``announced/``, so files partners upload to the
  standby during an outage (through the access point) and what the standby announced reach the
  primary for failback. The DR bucket is in the other stack, so the rules are put by a
  custom resource (``PutBucketReplication`` in eu-west-1) that the primary stack creates,
  updates and deletes; the DR stack's template never mentions replication, so deploying it
  does not touch them.

Choices (docs/infrastructure.md "Disaster recovery"):
* Replication Time Control (15 minutes, the only value S3 offers) and replication metrics on
  every rule, both directions: ``ReplicationLatency`` and ``OperationsFailedReplication`` are
  alarmed (infra/monitoring.py) in the source bucket's region.
* Delete markers are NOT replicated, either way: the pipeline "moves" a file out of
  ``incoming/`` (copy + delete), and each region moves its own copy when it has processed it;
  a replicated delete marker would hide a file the other region has not processed yet. No
  ``s3:ReplicateDelete`` is granted, as nothing replicates a delete.
* Replica modification sync is off: nothing edits a replica's metadata (tags, ACLs), and S3
  never replicates a replica again, so the two directions cannot loop.
* SSE-S3 on both buckets: no KMS permissions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Aws, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import custom_resources as cr
from constructs import Construct

from etl import contracts
from infra.config import DR_REGION, PRIMARY_REGION, EtlConfig
from infra.guardrails import drop_redundant_role_dependency
from infra.nag import acknowledge

FORWARD_PREFIXES = (
    contracts.INCOMING_PREFIX,
    contracts.PROCESSED_PREFIX,
    contracts.FAILED_PREFIX,
    contracts.MANIFEST_PREFIX,
    contracts.ANNOUNCED_PREFIX,
)
REVERSE_PREFIXES = (contracts.INCOMING_PREFIX, contracts.ANNOUNCED_PREFIX)
RTC_MINUTES = 15  # S3 Replication Time Control: the only threshold S3 offers

# The replication role's permissions (AWS "Setting up permissions for live replication"),
# minus s3:ReplicateDelete: delete markers are not replicated.
SOURCE_BUCKET_ACTIONS = ("s3:GetReplicationConfiguration", "s3:ListBucket")
SOURCE_OBJECT_ACTIONS = (
    "s3:GetObjectVersionForReplication",
    "s3:GetObjectVersionAcl",
    "s3:GetObjectVersionTagging",
)
DESTINATION_OBJECT_ACTIONS = ("s3:ReplicateObject", "s3:ReplicateTags")


def rule_id(prefix: str) -> str:
    """``replicate-incoming`` for ``incoming/``: the RuleId dimension of the S3 metrics."""
    return "replicate-" + prefix.rstrip("/")


@dataclass(frozen=True)
class ReplicationLink:
    """One direction: which bucket replicates what to which, and where its metrics appear.

    S3 publishes a rule's metrics (AWS/S3, dimensions SourceBucket, DestinationBucket, RuleId)
    in the source bucket's region, so each stack alarms on the link whose source it holds.
    """

    source_bucket: str
    source_region: str
    destination_bucket: str
    prefixes: tuple[str, ...]

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(rule_id(p) for p in self.prefixes)


def forward_link(config: EtlConfig, account: str = Aws.ACCOUNT_ID) -> ReplicationLink:
    return ReplicationLink(
        source_bucket=config.data_bucket_name(account, PRIMARY_REGION),
        source_region=PRIMARY_REGION,
        destination_bucket=config.data_bucket_name(account, DR_REGION),
        prefixes=FORWARD_PREFIXES,
    )


def reverse_link(config: EtlConfig, account: str = Aws.ACCOUNT_ID) -> ReplicationLink:
    return ReplicationLink(
        source_bucket=config.data_bucket_name(account, DR_REGION),
        source_region=DR_REGION,
        destination_bucket=config.data_bucket_name(account, PRIMARY_REGION),
        prefixes=REVERSE_PREFIXES,
    )


def link_of_region(config: EtlConfig, region: str) -> ReplicationLink:
    """The link whose source bucket (and so whose metrics) is in ``region``."""
    return forward_link(config) if region == PRIMARY_REGION else reverse_link(config)


def bucket_arn(name: str) -> str:
    return f"arn:{Aws.PARTITION}:s3:::{name}"


def replication_rules(link: ReplicationLink, *, id_key: str) -> list[dict[str, Any]]:
    """The rules of ``link`` as plain dicts; ``id_key`` is ``Id`` (CloudFormation) or ``ID`` (API)."""
    return [
        {
            id_key: rule_id(prefix),
            "Priority": priority,
            "Status": "Enabled",
            "Filter": {"Prefix": prefix},
            "DeleteMarkerReplication": {"Status": "Disabled"},
            "Destination": {
                "Bucket": bucket_arn(link.destination_bucket),
                "ReplicationTime": {"Status": "Enabled", "Time": {"Minutes": RTC_MINUTES}},
                "Metrics": {"Status": "Enabled", "EventThreshold": {"Minutes": RTC_MINUTES}},
            },
        }
        for priority, prefix in enumerate(link.prefixes, start=1)
    ]


def replication_role(scope: Construct, construct_id: str, link: ReplicationLink) -> iam.Role:
    """The role S3 assumes for ``link``: its two buckets and its prefixes, nothing else.

    Inline (not a DefaultPolicy): the role and its permissions are created together, so the
    first object replicated never meets a role without them. The INF11 Deny is appended to
    every role by infra/guardrails.py.
    """
    source, destination = bucket_arn(link.source_bucket), bucket_arn(link.destination_bucket)
    document = iam.PolicyDocument(
        statements=[
            iam.PolicyStatement(
                sid="ReadReplicationConfiguration",
                actions=list(SOURCE_BUCKET_ACTIONS),
                resources=[source],
            ),
            iam.PolicyStatement(
                sid="ReadSourceVersions",
                actions=list(SOURCE_OBJECT_ACTIONS),
                resources=[f"{source}/{prefix}*" for prefix in link.prefixes],
            ),
            iam.PolicyStatement(
                sid="WriteReplicas",
                actions=list(DESTINATION_OBJECT_ACTIONS),
                resources=[f"{destination}/{prefix}*" for prefix in link.prefixes],
            ),
        ]
    )
    role = iam.Role(
        scope,
        construct_id,
        description=f"S3 replication {link.source_region} -> other region, " + ", ".join(link.prefixes),
        # Confused-deputy guard: only S3 acting for this account's source bucket.
        assumed_by=iam.ServicePrincipal("s3.amazonaws.com").with_conditions(
            {
                "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                "ArnLike": {"aws:SourceArn": source},
            }
        ),
        inline_policies={"Replication": document},
    )
    for prefix_list, side in ((link.prefixes, link.source_bucket), (link.prefixes, link.destination_bucket)):
        for prefix in prefix_list:
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{_nag_name(side)}/{prefix}*]",
                "S3 replication reads every new version under this prefix of the source bucket "
                "and writes its replica under the same prefix of the destination; object keys "
                "are not known in advance, the prefix is the narrowest scope.",
            )
    return role


def _nag_name(name: str) -> str:
    """A bucket name as cdk-nag spells it in a finding (tokens as ``<AWS::AccountId>``)."""
    return name.replace(Aws.ACCOUNT_ID, "<AWS::AccountId>")


class Replication(Construct):
    """Both replication directions, owned by the primary stack (see the module docstring)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EtlConfig,
        primary_bucket: s3.Bucket,
    ) -> None:
        super().__init__(scope, construct_id)
        if Stack.of(self).region != PRIMARY_REGION:
            raise ValueError("replication is owned by the primary stack (us-east-1)")
        self.forward = forward_link(config)
        self.reverse = reverse_link(config)

        # Forward: a property of the primary bucket itself.
        self.forward_role = replication_role(self, "ForwardRole", self.forward)
        cfn_bucket = primary_bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.add_property_override(
            "ReplicationConfiguration",
            {
                "Role": self.forward_role.role_arn,
                "Rules": replication_rules(self.forward, id_key="Id"),
            },
        )

        # Reverse: put on the DR bucket (the other stack's) through the S3 API in eu-west-1.
        self.reverse_role = replication_role(self, "ReverseRole", self.reverse)
        dr_bucket_arn = bucket_arn(self.reverse.source_bucket)
        put = cr.AwsSdkCall(
            service="S3",
            action="putBucketReplication",
            region=DR_REGION,
            parameters={
                "Bucket": self.reverse.source_bucket,
                "ReplicationConfiguration": {
                    "Role": self.reverse_role.role_arn,
                    "Rules": replication_rules(self.reverse, id_key="ID"),
                },
            },
            physical_resource_id=cr.PhysicalResourceId.of(f"{self.reverse.source_bucket}-replication"),
        )
        log_group = logs.LogGroup(
            self,
            "ReverseRulesLogGroup",
            log_group_name="/aws/lambda/" + config.name("reverse-replication"),
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.reverse_rules = cr.AwsCustomResource(
            self,
            "ReverseRules",
            on_create=put,
            on_update=put,
            on_delete=cr.AwsSdkCall(
                service="S3",
                action="deleteBucketReplication",
                region=DR_REGION,
                parameters={"Bucket": self.reverse.source_bucket},
                # The DR stack may already be gone (its bucket with it).
                ignore_error_codes_matching="NoSuchBucket",
            ),
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [
                    # Put and delete of a replication configuration are both this action.
                    iam.PolicyStatement(
                        actions=["s3:PutReplicationConfiguration"], resources=[dr_bucket_arn]
                    ),
                    iam.PolicyStatement(
                        actions=["iam:PassRole"],
                        resources=[self.reverse_role.role_arn],
                        conditions={"StringEquals": {"iam:PassedToService": "s3.amazonaws.com"}},
                    ),
                ]
            ),
            log_group=log_group,
            install_latest_aws_sdk=False,
        )
        # The destination (this stack's bucket) must exist, versioned, before the rule is put.
        self.reverse_rules.node.add_dependency(primary_bucket)
        self._acknowledge_sdk_function()

    def _acknowledge_sdk_function(self) -> None:
        """Findings on CDK's AwsCustomResource function (a stack-level singleton) and its role."""
        role = self.reverse_rules.grant_principal
        assert isinstance(role, iam.Role)
        function = role.node.scope
        assert function is not None
        drop_redundant_role_dependency(function, role)  # cfn-lint W3005: GetAtt already orders it
        acknowledge(
            role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "CDK's AwsCustomResource creates this role with the basic execution policy "
            "(CloudWatch Logs only) and offers no way to replace it; its only other grants are "
            "PutReplicationConfiguration on the DR bucket and PassRole of the reverse role.",
        )
        for rule, reason in (
            (
                "Serverless-LambdaDLQ",
                "Invoked synchronously by CloudFormation to put the reverse replication rules; a "
                "failure fails the stack operation, so no asynchronous-invocation DLQ is needed.",
            ),
            (
                "Serverless-LambdaTracing",
                "One S3 API call per stack operation, recorded in CloudTrail and the stack events; "
                "CDK's AwsCustomResource function offers no tracing setting.",
            ),
            (
                "Serverless-LambdaDefaultMemorySize",
                "CDK's AwsCustomResource function makes one small S3 API call per stack "
                "operation; CDK sizes it and offers no memory setting.",
            ),
        ):
            acknowledge(function.node.default_child or function, rule, reason)
