"""MaintainTables: the dataset tables' scheduled upkeep (SPEC TBL6).

Invoked by an EventBridge schedule (infra/maintenance.py, both stacks; every 6 hours). For each table of
the dataset (``transactions``, ``transaction_rejects``, ``transaction_loads``): expire the
snapshots older than the retention, keeping the newest ones, then delete the orphan files older
than the orphan bound (etl/aws/maintenance.py; docs/dataset.md "Maintenance" for why the bounds
are safe). Its environment sets the bounds; they are refused below the safe minimums.

Returns ``{"tables": [{table, snapshots_before, snapshots_expired, referenced_files,
orphans_deleted, orphans_kept_young}]}``. Glue: GetTable, UpdateTable; S3 under ``tables/``:
ListBucket, GetObject, PutObject (the expiry's metadata file), DeleteObject (orphans).

Shipped to Lambda: Python 3.9 compatible (pyiceberg itself needs Python >= 3.10).
"""

from __future__ import annotations

import os
from typing import Any

from etl import observability as obs
from etl.aws import catalog, maintenance
from etl.aws.maintenance import ENV_MIN_SNAPSHOTS, ENV_ORPHAN_AGE_HOURS, ENV_RETENTION_DAYS


def _float_env(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@obs.lambda_handler("MaintainTables")
def handler(event: Any = None, context: Any = None) -> dict[str, Any]:
    """Expire snapshots and remove orphan files of every dataset table (the event is ignored:
    the schedule sends no parameters, and none may shorten the bounds)."""
    reports = maintenance.maintain(
        catalog.load_catalog(),
        catalog.glue_database_name(),
        retention_seconds=_float_env(ENV_RETENTION_DAYS, maintenance.SNAPSHOT_RETENTION_SECONDS / 86400)
        * 86400,
        min_snapshots=int(_float_env(ENV_MIN_SNAPSHOTS, maintenance.MIN_SNAPSHOTS)),
        orphan_age_seconds=_float_env(ENV_ORPHAN_AGE_HOURS, maintenance.ORPHAN_AGE_SECONDS / 3600) * 3600,
    )
    out = [r.as_dict() for r in reports]
    for r in out:
        obs.logger.info("table maintained", extra=r)
    return {"tables": out}
