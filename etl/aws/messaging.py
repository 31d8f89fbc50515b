"""Small adapters for what the reconcile function sends and asks: the alert topic (SNS), the
result queue (SQS FIFO) and an execution's status (Step Functions).

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from etl.aws import clients
from etl.aws.errors import error_code, transient_errors
from etl.core.alerts import sns_message_attributes


def alert_topic_arn() -> str:
    """The alert topic (``ALERT_TOPIC_ARN``)."""
    return os.environ["ALERT_TOPIC_ARN"]


def result_queue_url() -> str:
    """The result FIFO queue (``RESULT_QUEUE_URL``)."""
    return os.environ["RESULT_QUEUE_URL"]


def publish_alert(alert: Mapping[str, Any]) -> str:
    """Publish ``{"subject", "message", "attributes"}`` (etl/core/alerts.py); the message id."""
    with transient_errors("SNS Publish"):
        resp = clients.client("sns").publish(
            TopicArn=alert_topic_arn(),
            Subject=alert["subject"],
            Message=alert["message"],
            MessageAttributes=sns_message_attributes(alert["attributes"]),
        )
    return str(resp.get("MessageId", ""))


def send_result(body: Mapping[str, Any], group_id: str, dedup_id: str) -> str:
    """Send a result message to the FIFO queue; the message id. Errors propagate (the caller
    records the file as not notified)."""
    resp = clients.client("sqs").send_message(
        QueueUrl=result_queue_url(),
        MessageBody=json.dumps(body, sort_keys=True),
        MessageGroupId=group_id,
        MessageDeduplicationId=dedup_id,
    )
    return str(resp.get("MessageId", ""))


def execution_status(execution_arn: str | None) -> str | None:
    """RUNNING / SUCCEEDED / FAILED / TIMED_OUT / ABORTED, or None when there is no such
    execution (never started, or past Step Functions' 90-day history)."""
    if not execution_arn or not execution_arn.startswith("arn:"):
        return None
    try:
        with transient_errors(f"DescribeExecution {execution_arn}"):
            resp = clients.client("stepfunctions").describe_execution(executionArn=execution_arn)
    except ClientError as exc:
        if error_code(exc) in ("ExecutionDoesNotExist", "InvalidArn"):
            return None
        raise
    return str(resp.get("status"))
