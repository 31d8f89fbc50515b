"""INF5: the Standard state machine, built exactly from docs/contracts.md.

JSONPath only (no JSONata, no ``Assign``): the local mode runs this very definition on moto's
Step Functions executor, which supports neither.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from etl import contracts
from etl.core.alerts import ATTRIBUTE_NAMES
from etl.errors import RETRYABLE_ERRORS
from infra.config import CHUNKS_PER_FILE, EtlConfig
from infra.guardrails import drop_redundant_role_dependency
from infra.nag import acknowledge, logical_id

# Lambda's own transient failures plus our TransientError. PermanentError subclasses are
# deliberately absent: retrying a bad header three times only delays the alert.
LAMBDA_RETRY_ERRORS: Sequence[str] = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    # A function that timed out (or its sandbox died) is retried: every step is idempotent, and
    # Finalize dying after its commit must get the chance to finish it (SPEC TBL4).
    "Sandbox.Timedout",
    "Lambda.Unknown",
    *RETRYABLE_ERRORS,
)
SQS_RETRY_ERRORS: Sequence[str] = ("SQS.SdkClientException", "States.Timeout")
SNS_RETRY_ERRORS: Sequence[str] = ("SNS.SdkClientException", "States.Timeout")
S3_RETRY_ERRORS: Sequence[str] = ("S3.SdkClientException", "S3.S3Exception", "States.Timeout")
DYNAMODB_RETRY_ERRORS: Sequence[str] = (
    "DynamoDB.SdkClientException",
    "DynamoDB.ProvisionedThroughputExceededException",
    "DynamoDB.ThrottlingException",
    "DynamoDB.InternalServerErrorException",
    "States.Timeout",
)
RETRY_INTERVAL = Duration.seconds(2)
RETRY_MAX_ATTEMPTS = 3
RETRY_BACKOFF_RATE = 2.0
MAP_MAX_CONCURRENCY = 10
# The chunk function's reserved concurrency (OPS2) is sized from this number.
assert MAP_MAX_CONCURRENCY == CHUNKS_PER_FILE, "infra/config.py CHUNKS_PER_FILE must match"
ERROR_PATH = "$.error"
# OPS1 timeouts (arithmetic in docs/infrastructure.md "Timeouts"): a Lambda Task may take one
# function timeout plus invoke overhead; a service call (SQS, SNS, DynamoDB) a minute; the
# execution outlasts the slowest legitimate run.
LAMBDA_TASK_TIMEOUT = Duration.seconds(contracts.TASK_TIMEOUT_SECONDS)
SERVICE_TASK_TIMEOUT = Duration.seconds(60)
EXECUTION_TIMEOUT = Duration.seconds(contracts.EXECUTION_TIMEOUT_SECONDS)
# OPS4: the Fail states of the outbox path, which reconcile tells apart.
RESULT_NOT_SENT = "ResultNotSent"
NOTIFIED_NOT_RECORDED = "NotifiedNotRecorded"
# DR3: the announcement ledger marker could not be written after the send (reconcile writes it).
ANNOUNCED_NOT_RECORDED = "AnnouncedNotRecorded"


def _retry(state: sfn.TaskStateBase, errors: Sequence[str]) -> None:
    state.add_retry(
        errors=list(errors),
        interval=RETRY_INTERVAL,
        max_attempts=RETRY_MAX_ATTEMPTS,
        backoff_rate=RETRY_BACKOFF_RATE,
        jitter_strategy=sfn.JitterType.FULL,
    )


def flag_is(path: str, value: bool) -> sfn.Condition:
    """``path`` is present and is the boolean ``value`` (an absent flag matches neither)."""
    return sfn.Condition.and_(sfn.Condition.is_present(path), sfn.Condition.boolean_equals(path, value))


class EtlWorkflow(Construct):
    """RegisterFile -> IsDuplicate -> ValidateHeader -> PlanChunks -> IsDuplicateContent ->
    Map -> Finalize -> SQS."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EtlConfig,
        functions: dict[str, lambda_.IFunction],
        result_queue: sqs.IQueue,
        alert_topic: sns.ITopic,
        alert_key: kms.IKey,
        table: dynamodb.ITable,
        bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)

        def invoke(step: str, payload: sfn.TaskInput | None, result_path: str) -> tasks.LambdaInvoke:
            task = tasks.LambdaInvoke(
                self,
                step,
                state_name=step,
                lambda_function=functions[step],
                # None = the whole state is the input (a Parameters of "$" is not valid ASL).
                payload=payload,
                # The handler's return value is the result (`$.file = {...}` in the contract):
                # a ResultSelector can only nest `$.Payload` under a new key, never unwrap it.
                payload_response_only=True,
                # Otherwise CDK adds its own Retry (MaxAttempts 6) in front of ours.
                retry_on_service_exceptions=False,
                result_path=result_path,
                task_timeout=sfn.Timeout.duration(LAMBDA_TASK_TIMEOUT),
            )
            _retry(task, LAMBDA_RETRY_ERRORS)
            return task

        # ---- failure path: MarkFailed -> AlertFailure -> Fail --------------------------------
        file_failed = sfn.Fail(
            self,
            "FileFailed",
            state_name="FileFailed",
            error="FileFailed",
            cause="The file failed; see MarkFailed's output ($.failure) and the SNS alert.",
        )
        # MarkFailed gets the whole state (`$.file` may be missing if RegisterFile failed).
        mark_failed = invoke("MarkFailed", None, "$.failure")
        alert_failure = tasks.SnsPublish(
            self,
            "AlertFailure",
            state_name="AlertFailure",
            topic=alert_topic,
            subject=sfn.JsonPath.string_at("$.failure.subject"),
            message=sfn.TaskInput.from_json_path_at("$.failure.message"),
            # OPS3: machine-readable routing keys beside the readable text.
            message_attributes={
                name: tasks.MessageAttribute(
                    value=sfn.JsonPath.string_at(f"$.failure.attributes.{name}"),
                    data_type=tasks.MessageAttributeDataType.STRING,
                )
                for name in ATTRIBUTE_NAMES
            },
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.duration(SERVICE_TASK_TIMEOUT),
        )
        _retry(alert_failure, SNS_RETRY_ERRORS)
        # If even the failure handling fails, the execution must still end FAILED.
        mark_failed.add_catch(file_failed, errors=["States.ALL"], result_path="$.markFailedError")
        alert_failure.add_catch(file_failed, errors=["States.ALL"], result_path="$.alertError")
        alert_failure.next(file_failed)
        # DR2: MarkFailed says alert=false in a standby region (the alert is recorded on the
        # file item instead); the execution still ends FAILED.
        should_alert = (
            sfn.Choice(self, "ShouldAlert", state_name="ShouldAlert")
            .when(
                flag_is("$.failure.alert", False),
                file_failed,
            )
            .otherwise(alert_failure)
        )
        mark_failed.next(should_alert)

        def on_error(state: sfn.TaskStateBase | sfn.Map) -> None:
            state.add_catch(mark_failed, errors=["States.ALL"], result_path=ERROR_PATH)

        # ---- happy path --------------------------------------------------------------------
        register = invoke(
            "RegisterFile",
            sfn.TaskInput.from_object(
                {
                    "event": sfn.JsonPath.entire_payload,
                    "execution_arn": sfn.JsonPath.execution_id,
                }
            ),
            "$.file",
        )
        validate = invoke(
            "ValidateHeader",
            sfn.TaskInput.from_object({"file": sfn.JsonPath.object_at("$.file")}),
            "$.header",
        )
        plan = invoke(
            "PlanChunks",
            sfn.TaskInput.from_object(
                {
                    "file": sfn.JsonPath.object_at("$.file"),
                    "header": sfn.JsonPath.object_at("$.header"),
                }
            ),
            "$.plan",
        )
        process_chunk = invoke(
            "ProcessChunk",
            sfn.TaskInput.from_object(
                {
                    "file": sfn.JsonPath.object_at("$.file"),
                    "header": sfn.JsonPath.object_at("$.header"),
                    "chunk": sfn.JsonPath.object_at("$.chunk"),
                }
            ),
            sfn.JsonPath.DISCARD,
        )
        process_chunks = sfn.Map(
            self,
            "ProcessChunks",
            state_name="ProcessChunks",
            max_concurrency=MAP_MAX_CONCURRENCY,
            items_path="$.plan.chunks",
            item_selector={
                "file": sfn.JsonPath.object_at("$.file"),
                "header": sfn.JsonPath.object_at("$.header"),
                "chunk": sfn.JsonPath.object_at("$$.Map.Item.Value"),
            },
            # Totals are read back from the status table by Finalize: keep the state small.
            result_path=sfn.JsonPath.DISCARD,
        )
        process_chunks.item_processor(process_chunk)
        finalize = invoke(
            "Finalize",
            sfn.TaskInput.from_object(
                {
                    "file": sfn.JsonPath.object_at("$.file"),
                    "header": sfn.JsonPath.object_at("$.header"),
                    "plan": sfn.JsonPath.object_at("$.plan"),
                    "execution_arn": sfn.JsonPath.execution_id,
                }
            ),
            "$.result",
        )
        notify = tasks.SqsSendMessage(
            self,
            "NotifyResult",
            state_name="NotifyResult",
            queue=result_queue,
            message_body=sfn.TaskInput.from_json_path_at("$.result"),
            message_group_id=sfn.JsonPath.string_at("$.result.message_group_id"),
            message_deduplication_id=sfn.JsonPath.string_at("$.result.dedup_id"),
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.duration(SERVICE_TASK_TIMEOUT),
        )
        _retry(notify, SQS_RETRY_ERRORS)

        # ---- OPS4 outbox: the file is SUCCEEDED (rows published) whether or not the message
        # went out; `notified` says which, and reconcile / `etl notify` re-send when false.
        file_key = {
            "file_id": tasks.DynamoAttributeValue.from_string(sfn.JsonPath.string_at("$.file.file_id")),
            "chunk_id": tasks.DynamoAttributeValue.from_string(contracts.FILE_ITEM),
        }
        record_notified = tasks.DynamoUpdateItem(
            self,
            "RecordNotified",
            state_name="RecordNotified",
            table=table,
            key=file_key,
            update_expression="SET #notified = :yes, #at = :at, #dedup = :dedup REMOVE #open, #since",
            expression_attribute_names={
                "#notified": "notified",
                "#at": "notified_at",
                "#dedup": "notify_dedup_id",
                "#open": contracts.OPEN_STATE,
                "#since": contracts.OPEN_SINCE,
            },
            expression_attribute_values={
                ":yes": tasks.DynamoAttributeValue.from_boolean(True),
                ":at": tasks.DynamoAttributeValue.from_string(sfn.JsonPath.string_at("$$.State.EnteredTime")),
                ":dedup": tasks.DynamoAttributeValue.from_string(sfn.JsonPath.string_at("$.result.dedup_id")),
            },
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.duration(SERVICE_TASK_TIMEOUT),
        )
        _retry(record_notified, DYNAMODB_RETRY_ERRORS)
        record_not_sent = tasks.DynamoUpdateItem(
            self,
            "RecordResultNotSent",
            state_name="RecordResultNotSent",
            table=table,
            key=file_key,
            update_expression="SET #notified = :no, #error = :error",
            expression_attribute_names={"#notified": "notified", "#error": "notify_error"},
            expression_attribute_values={
                ":no": tasks.DynamoAttributeValue.from_boolean(False),
                ":error": tasks.DynamoAttributeValue.from_string(
                    sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.notifyError"))
                ),
            },
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.duration(SERVICE_TASK_TIMEOUT),
        )
        _retry(record_not_sent, DYNAMODB_RETRY_ERRORS)
        result_not_sent = sfn.Fail(
            self,
            RESULT_NOT_SENT,
            state_name=RESULT_NOT_SENT,
            error=RESULT_NOT_SENT,
            cause="The file SUCCEEDED but its result message was not sent; reconcile re-sends it "
            "(or: etl notify <file_id>).",
        )
        notified_not_recorded = sfn.Fail(
            self,
            NOTIFIED_NOT_RECORDED,
            state_name=NOTIFIED_NOT_RECORDED,
            error=NOTIFIED_NOT_RECORDED,
            cause="The result message was sent but notified=true could not be recorded; reconcile "
            "records it without sending again.",
        )
        notify.add_catch(record_not_sent, errors=["States.ALL"], result_path="$.notifyError")
        record_not_sent.add_catch(result_not_sent, errors=["States.ALL"], result_path="$.recordError")
        record_not_sent.next(result_not_sent)
        record_notified.add_catch(notified_not_recorded, errors=["States.ALL"], result_path="$.recordError")

        # DR3 announcement ledger: announced/<partner>/<file_id>.json after the send; replicated
        # to the other region, which then never announces the file again.
        record_announced = tasks.CallAwsService(
            self,
            "RecordAnnounced",
            state_name="RecordAnnounced",
            service="s3",
            action="putObject",
            parameters={
                "Bucket": bucket.bucket_name,
                "Key": sfn.JsonPath.format(
                    contracts.ANNOUNCED_PREFIX + "{}/{}.json",
                    sfn.JsonPath.string_at("$.file.partner"),
                    sfn.JsonPath.string_at("$.file.file_id"),
                ),
                "Body": sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.result")),
                "ContentType": "application/json",
            },
            iam_resources=[bucket.arn_for_objects(contracts.ANNOUNCED_PREFIX + "*")],
            iam_action="s3:PutObject",
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.duration(SERVICE_TASK_TIMEOUT),
        )
        _retry(record_announced, S3_RETRY_ERRORS)
        announced_not_recorded = sfn.Fail(
            self,
            ANNOUNCED_NOT_RECORDED,
            state_name=ANNOUNCED_NOT_RECORDED,
            error=ANNOUNCED_NOT_RECORDED,
            cause="The result message was sent and recorded but its announcement ledger marker "
            "was not written; reconcile writes it without sending again.",
        )
        record_announced.add_catch(announced_not_recorded, errors=["States.ALL"], result_path="$.recordError")

        for state in (register, validate, plan, process_chunks, finalize):
            on_error(state)

        notify.next(record_notified).next(record_announced).next(
            sfn.Succeed(self, "FileSucceeded", state_name="FileSucceeded")
        )
        # DR2/DR3: Finalize says announce=false in a standby region (the result stays in the
        # outbox) or for a file already in the announcement ledger; the execution succeeds.
        should_announce = (
            sfn.Choice(self, "ShouldAnnounce", state_name="ShouldAnnounce")
            .when(
                flag_is("$.result.announce", False),
                sfn.Succeed(self, "NotAnnounced", state_name="NotAnnounced"),
            )
            .otherwise(notify)
        )
        finalize.next(should_announce)
        process_chunks.next(finalize)
        # DATA4(a): content already loaded for the partner -> no chunk runs; Finalize ends the
        # file DUPLICATE_CONTENT and NotifyResult sends that result (the execution succeeds).
        is_duplicate_content = (
            sfn.Choice(self, "IsDuplicateContent", state_name="IsDuplicateContent")
            .when(
                flag_is("$.plan.duplicate_content", True),
                finalize,
            )
            .otherwise(process_chunks)
        )
        is_duplicate = (
            sfn.Choice(self, "IsDuplicate", state_name="IsDuplicate")
            .when(
                sfn.Condition.boolean_equals("$.file.duplicate", True),
                sfn.Succeed(self, "DuplicateIgnored", state_name="DuplicateIgnored"),
            )
            .otherwise(validate.next(plan).next(is_duplicate_content))
        )
        definition = register.next(is_duplicate)

        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name="/aws/vendedlogs/states/{}".format(config.name("pipeline")),
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=config.name("pipeline"),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=EXECUTION_TIMEOUT,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            comment="Transaction ETL: validate, split, process in parallel, publish "
            f"({config.environment_suffix})",
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group,
                level=sfn.LogLevel.ALL,
                include_execution_data=True,
            ),
        )
        self.state_machine.apply_removal_policy(RemovalPolicy.DESTROY)
        # SnsPublish grants sns:Publish only; the topic is KMS-encrypted.
        alert_key.grant(self.state_machine, "kms:Decrypt", "kms:GenerateDataKey*")

        drop_redundant_role_dependency(self.state_machine, self.state_machine.role)
        for step, function in functions.items():
            acknowledge(
                self.state_machine,
                f"AwsSolutions-IAM5[Resource::<{logical_id(function)}.Arn>:*]",
                f"LambdaInvoke grants lambda:InvokeFunction on the {step} function and its "
                "qualified ARNs (versions/aliases); no other function.",
            )
        acknowledge(
            self.state_machine,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray tracing and CloudWatch Logs vended delivery (logs:CreateLogDelivery, "
            "PutResourcePolicy, DescribeLogGroups ...) support no resource-level permissions.",
        )
        acknowledge(
            self.state_machine,
            f"AwsSolutions-IAM5[Resource::<{logical_id(bucket)}.Arn>/{contracts.ANNOUNCED_PREFIX}*]",
            "RecordAnnounced writes announced/<partner>/<file_id>.json (DR3 ledger): keys are "
            "data-driven, so s3:PutObject is granted on that one prefix, nothing wider.",
        )
        acknowledge(
            self.state_machine,
            "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
            "Publishing to the KMS-encrypted alert topic needs the GenerateDataKey family on that "
            "one key (the statement's resource is the key ARN).",
        )
