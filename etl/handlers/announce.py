"""Whether this region sends a file's result message or alert now (SPEC DR2, DR3).

Finalize and MarkFailed end with one of these decisions; the workflow's Choice states
(``ShouldAnnounce``, ``ShouldAlert`` in infra/workflow.py) route on them, and the reconcile
function applies the same rules to what it sends itself:

- a *standby* region sends nothing and records on the file item what it would have sent
  (``announce_suppressed`` for a result, which stays in the outbox; ``suppressed_alerts`` for
  alerts), so a promotion can announce what the old active region never did;
- an *active* region does not announce a file whose marker is in its announcement ledger
  (``announced/``, replicated from the other region): that file went downstream already.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from etl import observability as obs
from etl.aws import announcements, role
from etl.aws.status import SUCCEEDED, StatusRepository

# The Finalize output field the ShouldAnnounce Choice reads; the MarkFailed one ShouldAlert reads.
ANNOUNCE = "announce"
REGION_ROLE = "region_role"
ANNOUNCED_ELSEWHERE = "ledger"  # notify_dedup_id of a file found in the announcement ledger


def result_decision(
    repo: StatusRepository, file: Mapping[str, Any], result: Mapping[str, Any]
) -> dict[str, Any]:
    """``result`` plus ``announce`` (true: NotifyResult sends it now)."""
    file_id, partner, bucket = str(file["file_id"]), str(file["partner"]), str(file["bucket"])
    current = role.region_role()
    if current != role.ACTIVE:
        repo.record_suppressed(file_id, "announce_suppressed", {"region_role": current})
        obs.logger.info("standby region: result message not sent (kept in the outbox)")
        return {**result, ANNOUNCE: False}
    if announcements.is_announced(bucket, partner, file_id, str(result.get("status"))):
        if result.get("status") == SUCCEEDED:
            repo.mark_notified(file_id, ANNOUNCED_ELSEWHERE)
        obs.logger.info("result already in the announcement ledger: not announced again")
        return {**result, ANNOUNCE: False}
    return {**result, ANNOUNCE: True}


def alert_allowed(repo: StatusRepository, file_id: str | None, alert: Mapping[str, Any]) -> tuple[bool, str]:
    """(publish now?, region role). A standby region records the alert on the file item."""
    current = role.region_role()
    if current == role.ACTIVE:
        return True, current
    if file_id:
        repo.record_suppressed(
            file_id,
            "suppressed_alerts",
            {"subject": str(alert.get("subject", "")), "region_role": current},
            append=True,
        )
    obs.logger.warning("standby region: alert not published: %s", alert.get("subject"))
    return False, current
