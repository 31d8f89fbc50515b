"""The failure alert a person reads (SPEC OPS3): subject, plain-text body, message attributes.

One builder for every publisher: MarkFailed (its output goes to the AlertFailure task),
the reconcile function (publishes itself) and the freshness check. Pure: no AWS calls.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SUBJECT_MAX = 100  # SNS: ASCII printable, no line breaks, at most 100 characters
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]+")
# The attributes a subscriber can filter on (SNS filter policies) or route by.
ATTRIBUTE_NAMES = ("file_id", "partner", "status", "error_type")
UNKNOWN = "unknown"


def sns_subject(text: str) -> str:
    """An SNS-valid subject: ASCII printable, no line breaks, at most 100 characters."""
    clean = _NOT_PRINTABLE.sub(" ", text).strip() or "ETL alert"
    return clean if len(clean) <= SUBJECT_MAX else clean[: SUBJECT_MAX - 3].rstrip() + "..."


def _count(value: Any) -> str:
    return "unknown" if value is None else str(value)


def failure_alert(facts: Mapping[str, Any]) -> dict[str, Any]:
    """``{"subject", "message", "attributes"}`` for a FAILED file.

    ``facts``: ``file_id``, ``partner``, ``name`` (the file name as sent), ``error_type``,
    ``reason``, ``failed_step``, ``bucket``, ``original_key``, ``failed_key`` (None when the
    source could not be moved), ``rows_total``/``rows_valid``/``rows_rejected`` (known at
    failure, else None), ``attempts``, ``execution_arn``, ``detected_by``.
    """
    file_id = str(facts.get("file_id") or UNKNOWN)
    partner = str(facts.get("partner") or UNKNOWN)
    name = str(facts.get("name") or "unknown file")
    error_type = str(facts.get("error_type") or "UnknownError")
    subject = sns_subject(f"ETL FAILED {partner}/{name} ({file_id[:12]}): {error_type}")
    bucket = facts.get("bucket")
    where = (
        f"s3://{bucket}/{facts['failed_key']}"
        if facts.get("failed_key")
        else "not moved (see original key; it may already be gone)"
    )
    lines = [
        f"File {name} from partner {partner} FAILED.",
        "",
        f"Reason:      {facts.get('reason') or 'no reason recorded'}",
        f"Error type:  {error_type}",
        f"Failed step: {facts.get('failed_step') or 'unknown'}",
        f"Detected by: {facts.get('detected_by') or 'the workflow'}",
        "",
        "Rows known at failure: total {}, valid {}, rejected {}".format(
            _count(facts.get("rows_total")),
            _count(facts.get("rows_valid")),
            _count(facts.get("rows_rejected")),
        ),
        f"Attempts:    {_count(facts.get('attempts'))}",
        "",
        f"Sent as:     s3://{bucket}/{facts.get('original_key') or '?'}",
        f"Source now:  {where}",
        f"File id:     {file_id}",
        f"Execution:   {facts.get('execution_arn') or 'unknown'}",
        "",
        "What to do: fix the cause (the partner may send a corrected file), then re-run it:",
        f"  etl reprocess {file_id}",
        f"Details: etl status {file_id} --chunks",
    ]
    return {
        "subject": subject,
        "message": "\n".join(lines) + "\n",
        "attributes": attributes(file_id=file_id, partner=partner, status="FAILED", error_type=error_type),
    }


def attributes(**values: Any) -> dict[str, str]:
    """The message attributes: every name in :data:`ATTRIBUTE_NAMES`, never empty (SNS refuses
    an empty string value)."""
    return {name: str(values.get(name) or UNKNOWN) for name in ATTRIBUTE_NAMES}


def sns_message_attributes(attrs: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``attributes()`` in the shape of SNS Publish's ``MessageAttributes``."""
    return {k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()}


def missing_file_alert(partner: str, due_at: str, window_start: str, last_seen: str | None) -> dict[str, Any]:
    """The alert for a partner whose daily file is overdue (``x-etl-due-by``)."""
    subject = sns_subject(f"ETL MISSING {partner}: no file by {due_at}")
    lines = [
        f"No file from partner {partner} was registered between {window_start} and now;",
        f"its daily file was due by {due_at} (x-etl-due-by in etl/schemas/{partner}.json).",
        "",
        f"Last file registered: {last_seen or 'none on record'}",
        "",
        "What to do: ask the partner whether the file was sent; check the trigger's dead-letter",
        "queue and `etl list --since 1d`. This alert is sent once per due time.",
    ]
    return {
        "subject": subject,
        "message": "\n".join(lines) + "\n",
        "attributes": attributes(partner=partner, status="MISSING", error_type="FileOverdue"),
    }


def not_notified_alert(file_id: str, partner: str, reason: str) -> dict[str, Any]:
    """A SUCCEEDED file whose result message could not be re-sent either."""
    subject = sns_subject(f"ETL RESULT NOT SENT {partner} ({file_id[:12]})")
    lines = [
        f"File {file_id} from partner {partner} SUCCEEDED (its rows are published), but its",
        "result message could not be sent to the result queue, even on a re-send.",
        "",
        f"Reason: {reason}",
        "",
        "The sweep re-sends it every run while it stays not-notified; to re-send now:",
        f"  etl notify {file_id}",
    ]
    return {
        "subject": subject,
        "message": "\n".join(lines) + "\n",
        "attributes": attributes(
            file_id=file_id, partner=partner, status="NOT_NOTIFIED", error_type="ResultNotSent"
        ),
    }
