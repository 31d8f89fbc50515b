"""Reconcile: no file stays non-terminal silently, no result stays unsent (SPEC OPS1, OPS3, OPS4).

One function, four inputs:

- an EventBridge ``Step Functions Execution Status Change`` event (FAILED, TIMED_OUT, ABORTED)
  of this state machine: the file the execution was working on is found from the execution
  input (an S3 event -> ``file_id``; a reprocess request -> its ``file_id``; else the in-flight
  file whose ``execution_arn`` is this execution). If that file is not terminal, it is marked
  FAILED with the execution's error and cause, its source moved to ``failed/``, its
  unpublished data deleted, and one alert published. A file already terminal (MarkFailed ran
  and alerted) is left alone, so one failure alerts once. A SUCCEEDED file whose result
  message was not sent is re-sent (the outbox).
- ``{"mode": "sweep"}`` (the schedule): in-flight files open longer than the stale bound whose
  execution is not RUNNING are reconciled the same way; SUCCEEDED files still not notified are
  re-sent; the metrics StaleFiles and UnnotifiedFiles are emitted (0 included); then the
  freshness check runs.
- ``{"mode": "freshness"}``: partners whose schema declares ``x-etl-due-by`` and from whom no
  file was registered since the due time before the last one get one alert per due time.
- ``{"mode": "notify", "file_id": "...", "force": false}`` (``etl notify``): re-send a
  SUCCEEDED file's result message.
- ``{"mode": "drain"}`` (``etl dr promote``/``demote``, DR3): announce every outbox file the
  announcement ledger does not hold.

In a standby region (etl/aws/role.py, DR2) nothing is sent: alerts are recorded on the file
item, results stay in the outbox. A re-send first looks for the file in the announcement
ledger (etl/aws/announcements.py) and writes its marker after sending.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

from etl import contracts
from etl import observability as obs
from etl.aws import announcements, messaging, role
from etl.aws.status import FAILED, FILE_STATUSES, SUCCEEDED, TERMINAL_STATUSES, StatusRepository
from etl.core import alerts
from etl.core.identity import decode_event_key, file_id_for
from etl.core.schema import load_schema, partner_schemas
from etl.errors import EtlError, InvalidEvent, InvalidFileState
from etl.handlers import announce
from etl.handlers.common import stale_after_seconds, table_name
from etl.handlers.failure import (
    adopt_from_s3_event,
    alert_for,
    fail_file,
    parse_error,
    reason_text,
    s3_event_of,
)
from etl.handlers.unseen import sweep_unseen
from etl.payloads import FileItem

STATUS_CHANGE = "Step Functions Execution Status Change"
# The Fail state of infra/workflow.py when the result was sent but `notified` not recorded.
NOTIFIED_NOT_RECORDED = "NotifiedNotRecorded"
# ... and when the announcement ledger marker (DR3) could not be written after the send.
ANNOUNCED_NOT_RECORDED = "AnnouncedNotRecorded"
ENDED_BADLY = ("FAILED", "TIMED_OUT", "ABORTED")
NON_TERMINAL = tuple(s for s in FILE_STATUSES if s not in TERMINAL_STATUSES)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(moment: datetime.datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(text: Any) -> datetime.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def publish_alert(repo: StatusRepository, file_id: str | None, alert: Mapping[str, Any]) -> bool:
    """Publish an alert unless this region is the standby (DR2: it records it instead)."""
    publish, _ = announce.alert_allowed(repo, file_id, alert)
    if publish:
        messaging.publish_alert(alert)
    return publish


# ---- finding the file of an execution ----------------------------------------------------------


def _file_id_from_s3_event(event: Mapping[str, Any]) -> str | None:
    detail = event.get("detail") or {}
    obj = detail.get("object") or {}
    try:
        key = decode_event_key(str(obj["key"]))
    except (KeyError, TypeError, EtlError):
        return None
    version = obj.get("version-id") or None
    etag = str(obj.get("etag") or obj.get("eTag") or "").strip('"') or None
    if not version and not etag:
        return None
    return file_id_for(key, version, etag)


def find_file_id(execution_input: Any, execution_arn: str, repo: StatusRepository) -> str | None:
    """The file an execution was working on (see the module docstring)."""
    if isinstance(execution_input, Mapping):
        request = execution_input.get("reprocess")
        if isinstance(request, Mapping) and isinstance(request.get("file_id"), str):
            return str(request["file_id"])
        s3_event = s3_event_of(execution_input)
        if s3_event is not None:
            found = _file_id_from_s3_event(s3_event)
            if found:
                return found
    for item in repo.list_open(contracts.OPEN_IN_FLIGHT):  # small: only files in flight
        if item.get("execution_arn") == execution_arn:
            return str(item["file_id"])
    return None


# ---- failing a file after its execution ----------------------------------------------------------


def reconcile_file(
    repo: StatusRepository,
    item: Mapping[str, Any],
    reason: str,
    error_type: str,
    *,
    detected_by: str,
    execution_arn: str | None,
) -> bool:
    """Fail a non-terminal file, delete its unpublished data, alert once. True if it did."""
    file = dict(item)
    obs.bind(file_id=file["file_id"])
    failure = fail_file(repo, file, reason, error_type, allowed_from=NON_TERMINAL)
    if not failure.changed:
        obs.logger.info("file was terminal already; nothing to reconcile")
        return False
    deleted = failure.deleted
    alert = alert_for(
        file,
        failure.item,
        reason=reason,
        error_type=error_type,
        failed_key=failure.failed_key,
        failed_step=str(item.get("status")),
        detected_by=detected_by,
        execution_arn=execution_arn,
        counts=failure.counts,
    )
    publish_alert(repo, file["file_id"], alert)
    obs.add_metric(obs.FILES_FAILED, 1)
    obs.logger.error(
        "file reconciled to FAILED: %s",
        reason,
        extra={"failed_key": failure.failed_key, "unpublished_deleted": deleted},
    )
    return True


def _execution_error(detail: Mapping[str, Any]) -> tuple[str, str]:
    status = str(detail.get("status"))
    if detail.get("error") or detail.get("cause"):
        error_type, message = parse_error(
            {"Error": detail.get("error") or status, "Cause": detail.get("cause")}
        )
    else:
        error_type, message = "Execution" + status.title().replace("_", ""), "no error or cause given"
    message = f"{message} (execution {detail.get('name') or detail.get('executionArn')} ended {status})"
    return error_type, message


def on_status_change(event: Mapping[str, Any], repo: StatusRepository) -> dict[str, Any]:
    detail = event.get("detail")
    if not isinstance(detail, Mapping) or detail.get("status") not in ENDED_BADLY:
        return {"action": "ignored", "reason": "not a FAILED/TIMED_OUT/ABORTED status change"}
    execution_arn = str(detail.get("executionArn") or "")
    try:
        execution_input = json.loads(detail.get("input") or "null")
    except ValueError:
        execution_input = None
    error_type, message = _execution_error(detail)
    reason = reason_text(error_type, message)
    file_id = find_file_id(execution_input, execution_arn, repo)
    item = repo.get_file(file_id) if file_id else None
    if item is None:
        return _no_item(execution_input, repo, reason, error_type, execution_arn)
    obs.bind(file_id=item["file_id"])
    if item.get("execution_arn") not in (None, execution_arn):
        # A duplicate event's execution, or an earlier run of a file since reprocessed.
        return {"action": "none", "file_id": item["file_id"], "reason": "another execution owns the file"}
    if item.get("status") == SUCCEEDED:
        return _after_success(repo, item, str(detail.get("error") or ""))
    if item.get("status") == FAILED:
        return {
            "action": "none",
            "file_id": item["file_id"],
            "reason": "FAILED already (alerted by MarkFailed)",
        }
    done = reconcile_file(
        repo,
        item,
        reason,
        error_type,
        detected_by="reconcile (execution status change)",
        execution_arn=execution_arn,
    )
    return {"action": "failed" if done else "none", "file_id": item["file_id"], "reason": reason}


def _after_success(repo: StatusRepository, item: Mapping[str, Any], error: str) -> dict[str, Any]:
    """The execution failed after Finalize: the file stays SUCCEEDED (its rows are published);
    only its result message may be missing (the outbox, OPS4)."""
    file_id = str(item["file_id"])
    if item.get("notified") is True:
        if error == ANNOUNCED_NOT_RECORDED:  # sent and recorded; only the ledger marker is missing
            body = item.get("result") or {}
            announcements.record_announced(str(item["bucket"]), str(item["partner"]), file_id, body)
            return {"action": "ledger", "file_id": file_id}
        return {"action": "none", "file_id": file_id, "reason": "SUCCEEDED and notified"}
    if error == NOTIFIED_NOT_RECORDED:
        # The message went out; only the bookkeeping failed. Sending again would duplicate it.
        repo.mark_notified(file_id, str((item.get("result") or {}).get("dedup_id") or file_id))
        return {"action": "recorded", "file_id": file_id}
    try:
        return {"action": "notify", **resend_result(repo, file_id, detected_by="status-change event")}
    except Exception as exc:  # recorded and alerted once by resend_result; the sweep retries
        return {"action": "notify", "file_id": file_id, "sent": False, "error": str(exc)}


def _no_item(
    execution_input: Any, repo: StatusRepository, reason: str, error_type: str, execution_arn: str
) -> dict[str, Any]:
    """The execution ended before RegisterFile wrote the item: register it FAILED and move it
    (as MarkFailed does), then alert; unless another execution owns it or it is gone."""
    s3_event = s3_event_of(execution_input)
    if s3_event is None:
        obs.logger.warning("no file found for execution %s", execution_arn)
        return {"action": "none", "reason": "no file found for the execution"}
    file, may_act = adopt_from_s3_event(s3_event, repo, {"error": reason, "error_type": error_type})
    if file is None or not may_act:
        return {"action": "none", "reason": "source gone or owned by another execution"}
    obs.bind(file_id=file["file_id"])
    failure = fail_file(repo, file, reason, error_type)  # it is FAILED (ours): quarantine it
    publish_alert(
        repo,
        file["file_id"],
        alert_for(
            file,
            failure.item,
            reason=reason,
            error_type=error_type,
            failed_key=failure.failed_key,
            failed_step="RegisterFile",
            detected_by="reconcile (execution status change)",
            execution_arn=execution_arn,
        ),
    )
    obs.add_metric(obs.FILES_FAILED, 1)
    return {"action": "failed", "file_id": file["file_id"], "reason": reason}


# ---- the outbox (OPS4) ---------------------------------------------------------------------------


def resend_result(
    repo: StatusRepository, file_id: str, *, force: bool = False, detected_by: str = "etl notify"
) -> dict[str, Any]:
    """Re-send a SUCCEEDED file's result message. Each re-send counts an attempt and uses the
    FIFO dedup id ``<file_id>#<attempt>`` (a deliberate re-send is never swallowed by the
    5-minute de-duplication of the original ``<file_id>``). Only files not notified are
    re-sent unless ``force``."""
    item = repo.get_file(file_id)
    if item is None or item.get("status") != SUCCEEDED:
        status = (item or {}).get("status", "unknown")
        raise InvalidFileState(f"file {file_id} is {status}; only a SUCCEEDED file has a result to send")
    if item.get("notified") is True and not force:
        return {"file_id": file_id, "sent": False, "reason": "already notified (use --force to send again)"}
    body = item.get("result")
    if not isinstance(body, Mapping):
        raise InvalidFileState(f"file {file_id} has no recorded result message to send")
    if not role.is_active():  # DR2: the standby keeps it in the outbox
        return {
            "file_id": file_id,
            "sent": False,
            "reason": "this region is the standby; it announces nothing",
        }
    bucket, partner = str(item["bucket"]), str(item["partner"])
    if not force and announcements.is_announced(
        bucket, partner, file_id, str(body.get("status"))
    ):  # DR3: never twice
        repo.mark_notified(file_id, announce.ANNOUNCED_ELSEWHERE)
        return {"file_id": file_id, "sent": False, "reason": "in the announcement ledger: announced already"}
    attempt = int(repo.claim_notify_attempt(file_id).get("notify_attempts") or 1)
    dedup_id = f"{file_id}#{attempt}"
    message = {**body, "dedup_id": dedup_id, "notify_attempt": attempt}
    try:
        message_id = messaging.send_result(
            message, str(body.get("message_group_id") or item["partner"]), dedup_id
        )
    except Exception as exc:  # any failure to send: record it, tell a person once, re-raise
        repo.mark_not_notified(file_id, f"{type(exc).__name__}: {exc}")
        if repo.put_marker(f"ALERT#{file_id}", "NOT_NOTIFIED"):
            publish_alert(repo, file_id, alerts.not_notified_alert(file_id, str(item["partner"]), str(exc)))
        obs.logger.error("result re-send failed (%s): %s", detected_by, exc)
        raise
    repo.mark_notified(file_id, dedup_id)
    announcements.record_announced(bucket, partner, file_id, message)
    obs.logger.info("result re-sent", extra={"dedup_id": dedup_id, "by": detected_by})
    return {"file_id": file_id, "sent": True, "dedup_id": dedup_id, "message_id": message_id}


# ---- the sweep (OPS1, OPS4) -----------------------------------------------------------------------


def _is_stale(item: Mapping[str, Any], now: datetime.datetime) -> tuple[bool, str | None]:
    """(stale?, execution status). An open file whose execution still runs is not stale (the
    execution's own timeout will end it and its status change reconciles it); one whose
    execution ended is stale after the stale bound; one whose execution cannot be found only
    after the execution timeout could no longer hide a running execution."""
    execution = messaging.execution_status(item.get("execution_arn"))
    if execution == "RUNNING":
        return False, execution
    since = _parse_iso(item.get(contracts.OPEN_SINCE)) or _parse_iso(item.get("updated_at"))
    if since is None:
        return True, execution
    stale_after = stale_after_seconds()
    bound = stale_after if execution else contracts.EXECUTION_TIMEOUT_SECONDS + stale_after
    return (now - since).total_seconds() >= bound, execution


def sweep(repo: StatusRepository, now: datetime.datetime | None = None) -> dict[str, Any]:
    """Reconcile stale in-flight files and re-send unsent results; emit the two gauges."""
    now = now or _now()
    cutoff = _iso(now - datetime.timedelta(seconds=stale_after_seconds()))
    stale: list[tuple[FileItem, str | None]] = []  # (item, its execution's status)
    for candidate in repo.list_open(contracts.OPEN_IN_FLIGHT, older_than=cutoff):
        item = repo.get_file(str(candidate["file_id"]))  # the index is eventually consistent
        if item is None or item.get("status") in TERMINAL_STATUSES:
            continue
        is_stale, execution = _is_stale(item, now)
        if is_stale:
            stale.append((item, execution))
    obs.add_metric(contracts.METRIC_STALE_FILES, len(stale))
    unseen = sweep_unseen(repo, now, stale_after_seconds())  # SEC4: events that never arrived
    reconciled = []
    for item, execution in stale:
        message = "non-terminal ({}) since {}; its execution {} is {}".format(
            item.get("status"),
            item.get(contracts.OPEN_SINCE),
            item.get("execution_arn"),
            execution or "not found",
        )
        if reconcile_file(
            repo,
            item,
            reason_text("StaleFile", message),
            "StaleFile",
            detected_by="reconcile sweep (scheduled)",
            execution_arn=item.get("execution_arn"),
        ):
            reconciled.append(item["file_id"])
    unnotified = [
        item
        for item in repo.list_open(contracts.OPEN_NOT_NOTIFIED, older_than=cutoff)
        if messaging.execution_status(item.get("execution_arn")) != "RUNNING"
    ]
    if not role.is_active():  # DR2: nothing is owed downstream by the standby
        obs.add_metric(contracts.METRIC_UNNOTIFIED_FILES, 0)
        return {
            "stale": [i["file_id"] for i, _ in stale],
            "reconciled": reconciled,
            "resent": [],
            "unsent": [],
            **unseen,
        }
    obs.add_metric(contracts.METRIC_UNNOTIFIED_FILES, len(unnotified))
    resent, unsent = _resend_all(repo, unnotified, "reconcile sweep (scheduled)")
    return {
        "stale": [i["file_id"] for i, _ in stale],
        "reconciled": reconciled,
        "resent": resent,
        "unsent": unsent,
        **unseen,
    }


def _resend_all(
    repo: StatusRepository, items: Sequence[Mapping[str, Any]], by: str
) -> tuple[list[str], list[str]]:
    resent, unsent = [], []
    for item in items:
        try:
            if resend_result(repo, str(item["file_id"]), detected_by=by).get("sent"):
                resent.append(str(item["file_id"]))
        except Exception as exc:  # keep sweeping; the file stays not notified (and alerted)
            obs.logger.error("re-send of %s failed: %s", item["file_id"], exc)
            unsent.append(str(item["file_id"]))
    return resent, unsent


def drain(repo: StatusRepository) -> dict[str, Any]:
    """DR3, after a promotion: announce every SUCCEEDED file of the outbox that is not in the
    announcement ledger (the old active region never announced it), each exactly once; files
    in the ledger are marked notified without sending. Only an active region sends."""
    if not role.is_active():
        return {"drained": False, "reason": "this region is the standby", "resent": [], "unsent": []}
    items: list[FileItem] = []
    for candidate in repo.list_open(contracts.OPEN_NOT_NOTIFIED):
        item = repo.get_file(str(candidate["file_id"]))  # the index is eventually consistent
        if item is not None and item.get("status") == SUCCEEDED and item.get("notified") is not True:
            items.append(item)
    resent, unsent = _resend_all(repo, items, "etl dr promote (outbox drain)")
    skipped = [str(i["file_id"]) for i in items if str(i["file_id"]) not in resent + unsent]
    return {"drained": True, "resent": resent, "unsent": unsent, "in_ledger": skipped}


# ---- freshness (OPS3) -------------------------------------------------------------------------------


def last_due(now: datetime.datetime, hour: int, minute: int) -> datetime.datetime:
    """The latest due time (today's or yesterday's HH:MM UTC) at or before ``now``."""
    due = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return due if due <= now else due - datetime.timedelta(days=1)


def freshness(repo: StatusRepository, now: datetime.datetime | None = None) -> dict[str, Any]:
    """Alert (once per partner and due time) when a partner's daily file has not arrived: no
    file registered in the day before its last due time, nor since."""
    now = now or _now()
    missing = []
    for partner in partner_schemas():
        due_by = load_schema(partner).due_by
        if due_by is None:
            continue
        due = last_due(now, *due_by)
        window_start = due - datetime.timedelta(days=1)
        latest = repo.latest_registration(partner)
        seen = _parse_iso(latest)
        if seen is not None and seen > window_start:
            continue
        missing.append(partner)
        if repo.put_marker(f"FRESHNESS#{partner}", "DUE#" + _iso(due)):
            publish_alert(
                repo, None, alerts.missing_file_alert(partner, _iso(due), _iso(window_start), latest)
            )
    return {"missing": missing}


@obs.lambda_handler("Reconcile")
def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Dispatch on the input: a status-change event, or ``mode`` sweep/freshness/notify."""
    if not isinstance(event, Mapping):
        raise InvalidEvent("Reconcile expects a JSON object")
    repo = StatusRepository(table_name())
    if event.get("detail-type") == STATUS_CHANGE:
        return on_status_change(event, repo)
    mode = event.get("mode")
    if mode == "sweep":
        return {**sweep(repo), **freshness(repo)}
    if mode == "freshness":
        return freshness(repo)
    if mode == "drain":
        return drain(repo)
    if mode == "notify":
        file_id = event.get("file_id")
        if not isinstance(file_id, str) or not file_id:
            raise InvalidEvent('notify needs {"mode": "notify", "file_id": "<id>"}')
        obs.bind(file_id=file_id)
        return resend_result(repo, file_id, force=bool(event.get("force")))
    raise InvalidEvent(f"unknown reconcile input: mode={mode!r}, detail-type={event.get('detail-type')!r}")
