"""The stack's outputs: their names (written by infra/stack.py) and what readers make of them.

One table shared by the stack (``CfnOutput`` ids), the operator CLI (``describe_stacks``) and the
local harness (the emulated stack's resolved Outputs section), so neither side restates a name.
It lives in ``etl`` because ``etl`` is the package every other one may import (infra, etl_local
and etl_cli all depend on it; it depends on none of them), which keeps the package graph acyclic.
Shipped to Lambda with the rest of ``etl``: Python 3.9 compatible; no AWS calls here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from etl import contracts

BUCKET_NAME = "BucketName"
TABLE_NAME = "TableName"
STATE_MACHINE_ARN = "StateMachineArn"
RESULT_QUEUE_URL = "ResultQueueUrl"
RESULT_DLQ_URL = "ResultDlqUrl"
ALERT_TOPIC_ARN = "AlertTopicArn"
TRIGGER_RULE_NAME = "TriggerRuleName"
TRIGGER_DLQ_URL = "TriggerDlqUrl"
DASHBOARD_NAME = "DashboardName"
STATE_MACHINE_LOG_GROUP_NAME = "StateMachineLogGroupName"
PIPELINE_ROLE = "PipelineRole"
# The dataset (SPEC DATA1/DATA6; infra/dataset.py).
GLUE_DATABASE_NAME = "GlueDatabaseName"
ATHENA_WORKGROUP_NAME = "AthenaWorkGroupName"
# Reconciliation (SPEC OPS1/OPS4; infra/reconciliation.py): `etl notify` and `etl sweep` invoke it.
RECONCILE_FUNCTION_NAME = "ReconcileFunctionName"
RECONCILE_DLQ_URL = "ReconcileDlqUrl"
# Admission control (SPEC OPS2; infra/admission.py).
BUFFER_QUEUE_URL = "BufferQueueUrl"
BUFFER_DLQ_URL = "BufferDlqUrl"
MAX_FILES_IN_FLIGHT = "MaxFilesInFlight"
# DR3: the region's role switch (an SSM parameter the CLI sets; CloudFormation does not own it)
# and, when the stack defines one, the partners' upload address (S3 Multi-Region Access Point).
REGION_ROLE_PARAMETER = "RegionRoleParameter"
MULTI_REGION_ACCESS_POINT_ARN = "MultiRegionAccessPointArn"


def region_role_parameter(suffix: str) -> str:
    """Name of the per-region SSM String parameter holding ``active`` or ``standby`` (DR3)."""
    return f"/transaction-etl/{suffix}/region-role"


# Output name -> :class:`Outputs` field, for the outputs a reader needs.
OUTPUT_FIELDS = {
    BUCKET_NAME: "bucket",
    TABLE_NAME: "table",
    STATE_MACHINE_ARN: "state_machine_arn",
    RESULT_QUEUE_URL: "results_queue_url",
    ALERT_TOPIC_ARN: "alerts_topic_arn",
    GLUE_DATABASE_NAME: "glue_database",
    ATHENA_WORKGROUP_NAME: "athena_workgroup",
    RECONCILE_FUNCTION_NAME: "reconcile_function",
    REGION_ROLE_PARAMETER: "region_role_parameter",
    PIPELINE_ROLE: "pipeline_role",
    MULTI_REGION_ACCESS_POINT_ARN: "access_point_arn",
}
REQUIRED_OUTPUTS = (BUCKET_NAME, TABLE_NAME, STATE_MACHINE_ARN)


def function_output_id(step: str) -> str:
    """Output name of a step's function, e.g. ``RegisterFileFunctionName``."""
    return step + "FunctionName"


class MissingStackOutputs(ValueError):
    """The stack lacks an output a reader needs (not this project's stack, or too old)."""


@dataclass
class Outputs:
    """What the CLI and the local harness need to know about a deployed stack (real or emulated)."""

    bucket: str
    table: str
    state_machine_arn: str
    results_queue_url: str | None = None
    alerts_topic_arn: str | None = None
    glue_database: str | None = None
    athena_workgroup: str | None = None
    reconcile_function: str | None = None
    region_role_parameter: str | None = None
    pipeline_role: str | None = None  # "primary" or "dr"
    access_point_arn: str | None = None
    region: str = "us-east-1"
    endpoint: str | None = None
    functions: dict[str, str] = field(default_factory=dict)  # step -> function name
    chunk_size_bytes: int | None = None
    stack_name: str | None = None

    @classmethod
    def from_stack_outputs(cls, outputs: dict[str, str], **extra: Any) -> Outputs:
        missing = [k for k in REQUIRED_OUTPUTS if k not in outputs]
        if missing:
            raise MissingStackOutputs(f"stack outputs lack {', '.join(missing)}")
        values: dict[str, Any] = {field_: outputs.get(key) for key, field_ in OUTPUT_FIELDS.items()}
        names = {step: outputs.get(function_output_id(step)) for step in contracts.HANDLERS}
        functions = {step: name for step, name in names.items() if name}
        return cls(**values, functions=functions, **extra)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outputs:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
