"""MarkFailed: record why the file failed, quarantine the source, shape the alert.

A FAILED file has no visible rows (SPEC TBL3 I1): the table decides, not the file item. A commit
that landed before Finalize died is undone (``etl.aws.catalog.unpublish``), then the file's data
objects that no snapshot references are deleted; its rejects stay (TBL7). See
``etl.handlers.failure.delete_unpublished_data``.

Input: the whole state (``$``): ``error`` = ``{"Error", "Cause"}`` from the Catch (``Cause`` is
usually Lambda's JSON ``{"errorMessage", "errorType", ...}``), ``file`` when RegisterFile had
succeeded. Output ``$.failure`` = ``{"file_id", "status": "FAILED", "reason", "failed_key",
"failed_step", "subject", "message", "attributes", "alert", "region_role"}`` for the SNS alert
(``alert`` false in a standby region: ShouldAlert skips AlertFailure, DR2) (AlertFailure publishes
``message`` as plain text with ``attributes`` as SNS message attributes, SPEC OPS3).

This step must not fail for want of state: a missing file item or a source that is already
gone is logged, not raised. Throttling still raises ``TransientError`` (the step is retried).
When RegisterFile itself failed but the input is an S3 event for an object that exists, the
file is registered here as FAILED (only if no item exists: another execution may own it) and
moved to ``failed/``, so that ``etl reprocess`` can pick it up.

The work itself lives in etl/handlers/failure.py, shared with the reconcile function.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from etl import faults
from etl import observability as obs
from etl.aws.status import FAILED, SUCCEEDED, StatusRepository
from etl.core.alerts import SUBJECT_MAX, sns_subject
from etl.handlers import announce
from etl.handlers.common import table_name
from etl.handlers.failure import (
    adopt_from_s3_event,
    alert_for,
    fail_file,
    parse_error,
    reason_text,
    s3_event_of,
)
from etl.payloads import FailureResult, FileItem

__all__ = ["SUBJECT_MAX", "handler", "parse_error", "sns_subject"]


def _stage(state: Mapping[str, Any], chunk_statuses: list[str]) -> str:
    """Which step failed, inferred from what the state already holds."""
    if not isinstance(state.get("file"), Mapping):
        return "RegisterFile"
    if "result" in state:  # Finalize succeeded; only a late step can have failed
        return "NotifyResult"
    if "header" not in state:
        return "ValidateHeader"
    if "plan" not in state:
        return "PlanChunks"
    if chunk_statuses and all(s == SUCCEEDED for s in chunk_statuses):
        return "Finalize"
    return "ProcessChunks"


@obs.lambda_handler("MarkFailed")
def handler(event: Any, context: Any = None) -> FailureResult:
    """Mark the file FAILED with a reason, move it to failed/, return the alert."""
    state: Mapping[str, Any] = event if isinstance(event, Mapping) else {}
    error_type, error_message = parse_error(state.get("error"))
    reason = reason_text(error_type, error_message)
    repo = StatusRepository(table_name())

    file: Mapping[str, Any] | None = state["file"] if isinstance(state.get("file"), Mapping) else None
    may_act = file is not None
    if file is None:
        s3_event = s3_event_of(state)
        if s3_event is not None:
            file, may_act = adopt_from_s3_event(s3_event, repo, {"error": reason, "error_type": error_type})
        if file is not None:
            obs.bind(file_id=file["file_id"])
            if not may_act:
                obs.logger.warning("RegisterFile failed and another execution owns this file: not touched")
    chunk_statuses: list[str] = []
    target: str | None = None
    item: FileItem | None = None
    counts: dict[str, int] = {}
    if file is not None and may_act:
        faults.point("mark_failed.crash", str(file["file_id"]))
        failure = fail_file(repo, file, reason, error_type)
        chunk_statuses, target, item, counts = (
            failure.chunk_statuses,
            failure.failed_key,
            failure.item,
            failure.counts,
        )

    stage = _stage(state, chunk_statuses)
    alert = alert_for(
        file,
        item,
        reason=reason,
        error_type=error_type,
        failed_key=target,
        failed_step=stage,
        detected_by="the workflow's failure path (MarkFailed)",
        execution_arn=(item or {}).get("execution_arn"),
        counts=counts,
    )
    obs.add_metric(obs.FILES_FAILED, 1)
    obs.logger.error("file failed in %s: %s", stage, reason, extra={"failed_key": target})
    # DR2: a standby region pages nobody; ShouldAlert skips AlertFailure on alert=false.
    publish, current_role = announce.alert_allowed(repo, file["file_id"] if file and may_act else None, alert)
    return {
        "file_id": file["file_id"] if file else None,
        "status": FAILED,
        "reason": reason,
        "failed_key": target,
        "failed_step": stage,
        "file_status": (item or {}).get("status"),
        **alert,
        "alert": publish,
        "region_role": current_role,
    }
