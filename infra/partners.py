"""SEC1: one IAM role per partner, allowed to upload only under ``incoming/<partner>/``.

Partners come from context ``partners`` (infra/config.py ``Partner``). Each gets a role in the
primary stack (IAM is global; the DR stack must not create a second role of the same name) that
the partner assumes from its own account with an external id, and that may ``PutObject`` and
``AbortMultipartUpload`` under ``incoming/<partner>/`` through the Multi-Region Access Point and
directly on either data bucket (uploads keep working whichever region the access point routes
to). Nothing else in the account is granted writes under ``incoming/``: the access point policy
names these roles only (infra/access_point.py), and a key under another partner's prefix is
refused by IAM at upload time, not discovered later.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_iam as iam
from constructs import Construct

from etl import contracts
from infra.config import DR_REGION, PRIMARY_REGION, EtlConfig, Partner
from infra.nag import acknowledge

# Upload (single or multipart: the parts are PutObject too) and abort an unfinished multipart
# upload of its own. No reads, lists or deletes: a partner cannot see other partners' files.
UPLOAD_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload")
MAX_SESSION_HOURS = 1


def partner_prefix(partner: str) -> str:
    """``incoming/<partner>/``: the only prefix the partner's role may write."""
    return f"{contracts.INCOMING_PREFIX}{partner}/"


def role_name(config: EtlConfig, partner: str) -> str:
    """``etl-partner-<name>-<suffix>`` (at most 64 characters: name 40, suffix 16)."""
    return config.name(f"partner-{partner}")


def access_point_object_arn(access_point_arn: str, key_pattern: str) -> str:
    return f"{access_point_arn}/object/{key_pattern}"


class PartnerRoles(Construct):
    """The partner upload roles; ``roles`` maps partner name -> role."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EtlConfig,
        access_point_arn: str,
        access_point_id: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_point_id = access_point_id
        self.roles: dict[str, iam.Role] = {}
        buckets = [config.data_bucket_name(Aws.ACCOUNT_ID, r) for r in (PRIMARY_REGION, DR_REGION)]
        for partner in config.partners:
            self.roles[partner.name] = self._role(config, partner, access_point_arn, buckets)

    def _role(
        self, config: EtlConfig, partner: Partner, access_point_arn: str, buckets: list[str]
    ) -> iam.Role:
        prefix = partner_prefix(partner.name)
        principal: iam.IPrincipal = (
            iam.AccountPrincipal(partner.principal)
            if partner.principal == partner.account
            else iam.ArnPrincipal(partner.principal)
        )
        role = iam.Role(
            self,
            f"Partner-{partner.name}",
            role_name=role_name(config, partner.name),
            description=f"SEC1: partner {partner.name} uploads under {prefix} only",
            # The external id guards the confused deputy: a tool acting for several customers in
            # the partner's account cannot be steered into uploading as this partner.
            assumed_by=principal,
            external_ids=[partner.external_id_for(config.environment_suffix)],
            max_session_duration=Duration.hours(MAX_SESSION_HOURS),
            inline_policies={
                "Upload": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            sid="UploadUnderOwnPrefix",
                            actions=list(UPLOAD_ACTIONS),
                            resources=[
                                access_point_object_arn(access_point_arn, prefix + "*"),
                                *(f"arn:{Aws.PARTITION}:s3:::{b}/{prefix}*" for b in buckets),
                            ],
                        )
                    ]
                )
            },
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3::<AWS::AccountId>:accesspoint/"
            f"<{self.access_point_id}.Alias>/object/{prefix}*]",
            f"Partner {partner.name} names its own files: the role may upload any key under its "
            f"own prefix {prefix} through the upload access point and nothing else.",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::etl-data-"
            f"{config.environment_suffix}-<AWS::AccountId>-{PRIMARY_REGION}/{prefix}*]",
            f"Partner {partner.name} names its own files: the role may upload any key under its "
            f"own prefix {prefix} of the primary bucket and nothing else.",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::etl-data-"
            f"{config.environment_suffix}-<AWS::AccountId>-{DR_REGION}/{prefix}*]",
            f"Partner {partner.name} names its own files: the role may upload any key under its "
            f"own prefix {prefix} of the standby bucket (failover) and nothing else.",
        )
        return role
