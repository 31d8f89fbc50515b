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
is also what keeps a routine ``cdk deploy`` from flipping a failover back; the initial routes
(100 % primary) are submitted once, at creation, by infra/dr_defaults.py (DR7). Who may upload
through it: one role per partner, under its own prefix (SEC1, infra/partners.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import DR_REGION, EtlConfig
from infra.partners import UPLOAD_ACTIONS, access_point_object_arn, partner_prefix

# What a partner may do through the access point (SEC1): upload (single or multipart) and abort
# its own multipart uploads, under incoming/<partner>/ only. No reads, lists or deletes.
PARTNER_ACTIONS = UPLOAD_ACTIONS


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
        self.policy: s3.CfnMultiRegionAccessPointPolicy | None = None

    def allow_partners(self, roles: Mapping[str, iam.IRole]) -> None:
        """SEC1: the access point policy: each partner's role may upload under its own prefix,
        and no other principal (the account root included) is granted anything. Without
        partners there is no policy, and S3 refuses every request through the access point."""
        if not roles:
            return
        self.policy = s3.CfnMultiRegionAccessPointPolicy(
            self,
            "Policy",
            mrap_name=self.access_point.ref,
            policy={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "Partner" + "".join(part.capitalize() for part in name.split("_")),
                        "Effect": "Allow",
                        "Principal": {"AWS": role.role_arn},
                        "Action": list(PARTNER_ACTIONS),
                        "Resource": access_point_object_arn(self.arn, partner_prefix(name) + "*"),
                    }
                    for name, role in sorted(roles.items())
                ],
            },
        )
