"""OPS1/OPS3/OPS4: the reconcile function, the rule on this state machine's status changes and
the schedule of the sweep (stale files, unsent results, partner freshness).

Step Functions' own Catch cannot see every ending (``States.DataLimitExceeded``,
``States.Runtime``, a stopped or timed-out execution run no Catch): only the
``Step Functions Execution Status Change`` event does. The reconcile function
(etl/handlers/reconcile.py) fails the file the execution left behind and alerts once.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from etl import contracts as c
from infra.config import EtlConfig
from infra.functions import (
    DELETE,
    GET_CURRENT,
    MOVE_SOURCE,
    PUT,
    WRITE_TAGS,
    Access,
    EtlFunctions,
)
from infra.nag import acknowledge

STEP = c.RECONCILE_STEP
STATUS_CHANGE = "Step Functions Execution Status Change"
ENDED_BADLY = ["FAILED", "TIMED_OUT", "ABORTED"]
SWEEP_INPUT = {"mode": "sweep"}

INC, FAIL, SCR = c.INCOMING_PREFIX, c.FAILED_PREFIX, c.SCRATCH_PREFIX
OUT, REJ, TAB = c.OUTPUT_PREFIX, c.REJECTED_PREFIX, c.TABLES_PREFIX
ANN = c.ANNOUNCED_PREFIX

# Failing a file as MarkFailed does (move incoming/ -> failed/, scratch cleanup) plus deleting
# the unreferenced data of a stopped execution (output/, tables/); markers and the outbox
# counters are items of the status table; the two indexes are queried; the region role switch
# (DR2: a standby sends nothing) and the announcement ledger (DR3).
ACCESS = Access(
    s3=(
        (MOVE_SOURCE, (INC,)),
        (GET_CURRENT + PUT + WRITE_TAGS, (FAIL,)),
        (DELETE, (SCR, OUT)),
        # TBL4: the table is checked (and a landed commit of a failing file undone) before
        # unreferenced data files are removed; rejects under rejected/ stay (TBL7).
        (GET_CURRENT + PUT + DELETE, (TAB,)),
        # DR3: the announcement ledger (is a file in it? write its marker after a re-send).
        (GET_CURRENT + PUT, (ANN,)),
    ),
    table=(
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "dynamodb:DeleteItem",
    ),
    list_prefixes=(INC, FAIL, SCR, OUT, TAB, ANN),
    glue=("glue:GetDatabase", "glue:GetTable", "glue:UpdateTable"),
    glue_write_tables=(c.TRANSACTIONS_TABLE,),
    glue_tables=(c.TRANSACTIONS_TABLE, c.REJECTS_TABLE),
    region_role=True,
)


class Reconciliation(Construct):
    """The reconcile function with its two rules and their dead-letter queue."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EtlConfig,
        functions: EtlFunctions,
        state_machine: sfn.IStateMachine,
        alert_topic: sns.ITopic,
        alert_key: kms.IKey,
        result_queue: sqs.IQueue,
        schedule_enabled: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        # Events EventBridge could not deliver, and invocations that failed after Lambda's
        # asynchronous retries: their depth is alarmed (a reconciliation that did not happen).
        self.dead_letter_queue = sqs.Queue(
            self,
            "ReconcileDlq",
            queue_name=config.name("reconcile-dlq"),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=RemovalPolicy.DESTROY,
        )
        for rule, reason in (
            ("AwsSolutions-SQS3", "This queue is the reconcile rules' and function's dead-letter queue."),
            (
                "Serverless-SQSRedrivePolicy",
                "A dead-letter queue has no redrive target of its own; its depth is alarmed to the "
                "alert topic.",
            ),
        ):
            acknowledge(self.dead_letter_queue, rule, reason)

        short_name, handler = c.RECONCILE_FUNCTION
        self.function = functions.add_function(
            self,
            STEP,
            short_name,
            handler,
            ACCESS,
            extra_environment={
                "ALERT_TOPIC_ARN": alert_topic.topic_arn,
                "RESULT_QUEUE_URL": result_queue.queue_url,
                "STALE_AFTER_SECONDS": str(config.stale_after_minutes * 60),
            },
            # Asynchronous invocations (both rules) that fail after Lambda's two retries.
            dead_letter_queue=self.dead_letter_queue,
        )
        role = functions.roles[STEP]
        alert_topic.grant_publish(role)
        alert_key.grant(role, "kms:Decrypt", "kms:GenerateDataKey*")
        # SendMessage only (grant_send_messages adds GetQueueAttributes/GetQueueUrl, which the
        # handler never calls: OPS5).
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[result_queue.queue_arn])
        )
        table = functions.table
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["dynamodb:Query"],
                resources=[
                    f"{table.table_arn}/index/{c.OPEN_INDEX}",
                    f"{table.table_arn}/index/{c.PARTNER_INDEX}",
                ],
            )
        )
        # The sweep asks whether a file's execution still runs: executions of this state
        # machine only (its name is known before the state machine exists: no dependency).
        executions = Stack.of(self).format_arn(
            service="states",
            resource="execution",
            resource_name=config.name("pipeline") + ":*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["states:DescribeExecution"], resources=[executions])
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{_as_nag_prints_it(Stack.of(self), 'states', 'execution')}:"
            f"{config.name('pipeline')}:*]",
            "DescribeExecution on the executions of this one state machine; execution names are "
            "per file, so they cannot be listed in advance.",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
            "Publishing to the KMS-encrypted alert topic needs the GenerateDataKey family on that "
            "one key (the statement's resource is the key ARN).",
        )

        # OPS1: every ending the Catch cannot see. Retry + DLQ as for every target (INF4).
        self.status_rule = events.Rule(
            self,
            "StatusChangeRule",
            rule_name=config.name("execution-ended"),
            description="Executions of this state machine that ended FAILED, TIMED_OUT or ABORTED",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=[STATUS_CHANGE],
                detail={"status": ENDED_BADLY, "stateMachineArn": [state_machine.state_machine_arn]},
            ),
        )
        self.status_rule.add_target(self._target(None))
        # OPS1/OPS3/OPS4: the sweep and the freshness check. Off on a standby that processes
        # nothing (its trigger is off too), so it pages nobody.
        self.schedule_rule = events.Rule(
            self,
            "SweepSchedule",
            rule_name=config.name("reconcile-sweep"),
            description="Reconcile sweep: stale files, unsent results, overdue partner files",
            schedule=events.Schedule.rate(Duration.minutes(c.SWEEP_PERIOD_MINUTES)),
            enabled=schedule_enabled,
        )
        self.schedule_rule.add_target(self._target(events.RuleTargetInput.from_object(SWEEP_INPUT)))

    def _target(self, event: events.RuleTargetInput | None) -> targets.LambdaFunction:
        return targets.LambdaFunction(
            self.function,
            event=event,
            dead_letter_queue=self.dead_letter_queue,
            retry_attempts=8,
            max_event_age=Duration.hours(2),
        )


def _as_nag_prints_it(stack: Stack, service: str, resource: str) -> str:
    """``arn:<partition>:<service>:<region>:<account>:<resource>`` with the unresolved parts
    written the way cdk-nag names them in a finding (``<AWS::AccountId>``)."""

    def part(value: str, pseudo: str) -> str:
        return f"<AWS::{pseudo}>" if Token.is_unresolved(value) else value

    return "arn:{}:{}:{}:{}:{}".format(
        part(stack.partition, "Partition"),
        service,
        part(stack.region, "Region"),
        part(stack.account, "AccountId"),
        resource,
    )
