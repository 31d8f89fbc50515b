"""OPS2 admission control: the S3 rule fills a buffer queue that StartFiles drains.

A burst of files must not ask for more chunk functions than the account can run: the rule on
``incoming/`` (infra/trigger.py) sends every ``Object Created`` event to an SQS buffer queue and
wakes StartFiles (etl/handlers/start_files.py), which starts executions only while fewer than
``maxFilesInFlight`` are RUNNING. Three things wake it, each enough on its own to drain the
queue eventually: the S3 rule itself (a new file), the state machine's execution-end events (a
slot became free) and a 1-minute schedule (the safety net). StartFiles has reserved concurrency
1, so two admission decisions never race; the chunk function's reserved concurrency is sized
from the same number (infra/functions.py, docs/infrastructure.md "Admission control").
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from etl.contracts import BUFFER_VISIBILITY_SECONDS
from infra.config import EtlConfig
from infra.nag import acknowledge

# A message StartFiles could not start this many times (e.g. StartExecution denied) goes to
# the buffer's DLQ (alarmed). Waiting for a free slot does not count: StartFiles receives a
# message only when it can start it.
MAX_RECEIVE_COUNT = 5
WAKE_UP_SCHEDULE = Duration.minutes(1)
# Alarm when the oldest waiting file has waited this long (docs: README "Operate").
OLDEST_MESSAGE_ALARM_SECONDS = 30 * 60
EXECUTION_END_STATUSES = ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]
# EventBridge target settings shared with the S3 rule (infra/trigger.py).
TARGET_RETRY_ATTEMPTS = 8
TARGET_MAX_EVENT_AGE = Duration.hours(2)


def _dlq_acknowledgements(queue: sqs.Queue, what: str) -> None:
    acknowledge(
        queue,
        "AwsSolutions-SQS3",
        f"This queue is the {what}'s dead-letter queue; its depth is alarmed rather than "
        "redriven into yet another queue.",
    )
    acknowledge(
        queue,
        "Serverless-SQSRedrivePolicy",
        "A dead-letter queue has no redrive target of its own; its depth is on the dashboard "
        "and alarmed to the alert topic.",
    )


def _as_nag_spells_it(stack: Stack, arn: str) -> str:
    """An ARN with the pseudo parameters CDK could not resolve as ``<AWS::...>`` (cdk-nag's
    spelling of a finding's resource)."""
    resolved = stack.resolve(arn)
    if isinstance(resolved, str):
        return resolved
    parts = resolved["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else "<{}>".format(p["Ref"]) for p in parts)


class Admission(Construct):
    """Buffer queue (+ DLQ), the starter's grants and environment, and its wake-up rules."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EtlConfig,
        state_machine: sfn.StateMachine,
        starter: lambda_.Function,
        s3_rule: events.Rule,
        rule_dead_letter_queue: sqs.IQueue,
        enabled: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.buffer_dlq = sqs.Queue(
            self,
            "BufferDlq",
            queue_name=config.name("buffer-dlq"),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=RemovalPolicy.DESTROY,
        )
        _dlq_acknowledgements(self.buffer_dlq, "admission buffer")
        self.buffer_queue = sqs.Queue(
            self,
            "BufferQueue",
            queue_name=config.name("buffer"),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            # Files wait here during a burst; 14 days (SQS's maximum) outlasts any outage.
            retention_period=Duration.days(14),
            visibility_timeout=Duration.seconds(BUFFER_VISIBILITY_SECONDS),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.buffer_dlq, max_receive_count=MAX_RECEIVE_COUNT),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.starter = starter

        # ---- the starter: environment and exactly the calls it makes ----------------------
        starter.add_environment("BUFFER_QUEUE_URL", self.buffer_queue.queue_url)
        starter.add_environment("STATE_MACHINE_ARN", state_machine.state_machine_arn)
        starter.add_environment("MAX_FILES_IN_FLIGHT", str(config.max_files_in_flight))
        starter.add_to_role_policy(
            iam.PolicyStatement(
                actions=["sqs:ReceiveMessage", "sqs:DeleteMessage"],
                resources=[self.buffer_queue.queue_arn],
            )
        )
        starter.add_to_role_policy(
            iam.PolicyStatement(
                actions=["states:ListExecutions", "states:StartExecution"],
                resources=[state_machine.state_machine_arn],
            )
        )
        executions = Stack.of(self).format_arn(
            service="states",
            resource="execution",
            resource_name=f"{config.name('pipeline')}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        starter.add_to_role_policy(
            iam.PolicyStatement(actions=["states:DescribeExecution"], resources=[executions])
        )
        acknowledge(
            starter.role,  # type: ignore[arg-type]
            f"AwsSolutions-IAM5[Resource::{_as_nag_spells_it(Stack.of(self), executions)}]",
            "DescribeExecution on this one state machine's executions, whose names are "
            "generated per file; no other state machine.",
        )
        # A wake-up that fails is not retried: the next wake-up (at most a minute away) does
        # the same work, and the files themselves wait in the buffer queue.
        starter.configure_async_invoke(retry_attempts=0, max_event_age=Duration.minutes(15))
        for rule in ("Serverless-LambdaDLQ", "Serverless-LambdaAsyncFailureDestination"):
            acknowledge(
                starter,
                rule,
                "StartFiles' invocations are wake-up signals without data: the files wait in the "
                "buffer queue (which has its own dead-letter queue) and the 1-minute schedule "
                "wakes it again, so a lost invocation loses nothing.",
            )

        # ---- wake-ups ---------------------------------------------------------------------
        def wake(rule: events.Rule) -> None:
            rule.add_target(
                targets.LambdaFunction(
                    starter,
                    dead_letter_queue=rule_dead_letter_queue,
                    retry_attempts=TARGET_RETRY_ATTEMPTS,
                    max_event_age=TARGET_MAX_EVENT_AGE,
                )
            )

        # The S3 rule: the event is buffered first, then the starter is woken.
        s3_rule.add_target(
            targets.SqsQueue(
                self.buffer_queue,
                dead_letter_queue=rule_dead_letter_queue,
                retry_attempts=TARGET_RETRY_ATTEMPTS,
                max_event_age=TARGET_MAX_EVENT_AGE,
            )
        )
        wake(s3_rule)
        self.execution_end_rule = events.Rule(
            self,
            "ExecutionEndRule",
            rule_name=config.name("admit-on-execution-end"),
            description="An execution of the ETL state machine ended: a slot is free, admit the next file",
            enabled=enabled,
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "stateMachineArn": [state_machine.state_machine_arn],
                    "status": EXECUTION_END_STATUSES,
                },
            ),
        )
        wake(self.execution_end_rule)
        self.schedule_rule = events.Rule(
            self,
            "ScheduleRule",
            rule_name=config.name("admit-every-minute"),
            description="Safety net: admit queued files every minute",
            enabled=enabled,
            schedule=events.Schedule.rate(WAKE_UP_SCHEDULE),
        )
        wake(self.schedule_rule)
