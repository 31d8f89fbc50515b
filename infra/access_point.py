"""DR3: one upload address for partners, an S3 Multi-Region Access Point over both data buckets.

Owned by the primary stack, deployed after the DR stack (both buckets must exist when S3
creates the access point); the DR bucket is named from account, region and suffix
(``EtlConfig.data_bucket_name``), so no cross-region reference is needed. Access points are
global: one per environment (``etl-uploads-<suffix>``).

Routing (which bucket receives requests) is NOT a CloudFormation property: the resource has
only ``Name``, ``Regions`` and ``PublicAccessBlockConfiguration``, and S3 creates the access
point with every Region active. Active/passive failover is the S3 Control API
``SubmitMultiRegionAccessPointRoutes`` (``TrafficDialPercentage`` 100 = active, 0 = passive),
served by the failover control endpoints in us-east-1, us-west-2, ap-southeast-2,
ap-northeast-1 and eu-west-1, so it works with us-east-1 down; ``etl dr promote/demote`` call it
with the names from the stack outputs (etl/stack_outputs.py). Keeping routes out of the template
is also what keeps a routine ``cdk deploy`` from flipping a failover back.
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_s3 as s3
from constructs import Construct

from etl import contracts
from infra.config import DR_REGION, EtlConfig

# What a partner may do through the access point: upload (single or multipart) and abort its
# own multipart uploads, under incoming/ only. No reads, lists or deletes.
PARTNER_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload")


def access_point_name(config: EtlConfig) -> str:
    """``etl-uploads-<suffix>`` (3-50 lowercase letters, digits, hyphens; unique per account)."""
    return config.name("uploads")


class UploadAccessPoint(Construct):
    """The Multi-Region Access Point and its least-privilege policy."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EtlConfig,
        primary_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        self.name = access_point_name(config)
        self.access_point = s3.CfnMultiRegionAccessPoint(
            self,
            "AccessPoint",
            name=self.name,
            regions=[
                # The Ref orders the access point after this stack's bucket; the DR bucket is
                # created by the DR stack, deployed first.
                s3.CfnMultiRegionAccessPoint.RegionProperty(bucket=primary_bucket.bucket_name),
                s3.CfnMultiRegionAccessPoint.RegionProperty(
                    bucket=config.data_bucket_name(Aws.ACCOUNT_ID, DR_REGION)
                ),
            ],
            public_access_block_configuration=s3.CfnMultiRegionAccessPoint.PublicAccessBlockConfigurationProperty(
                block_public_acls=True,
                block_public_policy=True,
                ignore_public_acls=True,
                restrict_public_buckets=True,
            ),
        )
        self.alias = self.access_point.attr_alias
        self.arn = f"arn:{Aws.PARTITION}:s3::{Aws.ACCOUNT_ID}:accesspoint/{self.alias}"
        # Partners are IAM principals of this account (users or roles the operator gives an
        # identity policy); the access point policy delegates to them and limits what any of
        # them can do through it to uploads under incoming/.
        self.policy = s3.CfnMultiRegionAccessPointPolicy(
            self,
            "Policy",
            mrap_name=self.access_point.ref,
            policy={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "PartnerUploadsToIncoming",
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:root"},
                        "Action": list(PARTNER_ACTIONS),
                        "Resource": f"{self.arn}/object/{contracts.INCOMING_PREFIX}*",
                    }
                ],
            },
        )
