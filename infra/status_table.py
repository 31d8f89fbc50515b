"""INF7: the single status table (one file item + one item per chunk, see docs/contracts.md)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from etl import contracts
from infra.config import EtlConfig


class StatusTable(Construct):
    """On-demand table keyed ``file_id`` / ``chunk_id`` with PITR and no deletion protection."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EtlConfig) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=config.name("status"),
            partition_key=dynamodb.Attribute(name="file_id", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="chunk_id", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # Encryption at rest with the AWS managed key (aws/dynamodb).
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            deletion_protection=False,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # OPS1: sparse, only file items in flight or not yet notified carry open_state, so the
        # reconcile sweep queries a handful of items instead of scanning the table.
        self.table.add_global_secondary_index(
            index_name=contracts.OPEN_INDEX,
            partition_key=dynamodb.Attribute(name=contracts.OPEN_STATE, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=contracts.OPEN_SINCE, type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        # OPS3: the latest registration per partner (file items only: chunk items have no
        # created_at), for the due-by freshness check.
        self.table.add_global_secondary_index(
            index_name=contracts.PARTNER_INDEX,
            partition_key=dynamodb.Attribute(name="partner", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="created_at", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
