"""Table maintenance (SPEC TBL6): expire old snapshots, remove orphan files.

Run on a schedule by ``etl.handlers.maintain_tables`` (infra/maintenance.py, both stacks), and
on the emulator by ``etl local maintain``. What the commits already bound by themselves (table
properties, etl.core.dataset.TABLE_PROPERTIES): old metadata.json files (deleted after each
commit beyond the last 20) and the manifest count (merge-append on every commit).

- :func:`expire_snapshots` drops snapshots older than the retention from the table metadata,
  always keeping the newest ``min_snapshots`` (and every branch/tag head). pyiceberg 0.12
  only edits the metadata: files that only expired snapshots referenced become orphans, which
  the next step deletes.
- :func:`remove_orphans` deletes objects under the table's location that no retained snapshot,
  the current metadata or its metadata log references, and that are older than the orphan
  bound. An object younger than the bound may belong to a load still in flight (ProcessChunk
  writes data files hours before Finalize commits them; a commit writes its manifests before
  the catalog swap), so it is never touched: see :data:`MIN_ORPHAN_AGE_SECONDS`.

The load audit trail is the ``transaction_loads`` table, not snapshot summaries, so expiry
erases no history.

Shipped to Lambda: Python 3.9 compatible (pyiceberg itself needs Python >= 3.10).
"""

from __future__ import annotations

import datetime
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from etl import contracts
from etl.aws import clients, s3
from etl.aws.errors import transient_errors
from etl.errors import TransientError

# Defaults of the scheduled run (the function's environment may raise them, never lower the
# orphan bound below the minimum).
# One day: every commit's cost grows with the snapshots the table keeps (pyiceberg copies the
# whole table metadata many times per commit: docs/benchmarks.md "TBL6"), and the audit trail
# does not need them (transaction_loads).
SNAPSHOT_RETENTION_SECONDS = 24 * 3600
MIN_SNAPSHOTS = 100
ORPHAN_AGE_SECONDS = 3 * 24 * 3600
# The longest an object under tables/ may legitimately stay unreferenced: a data file written
# by the first ProcessChunk of an execution is committed by Finalize at the latest when the
# execution times out (EXECUTION_TIMEOUT_SECONDS), and a file whose execution ended without a
# commit has its data deleted by MarkFailed or, when the ending was lost, by the reconcile sweep
# (STALE_UNKNOWN_EXECUTION_SECONDS after registration). Twice that, rounded up to a day, leaves
# room for a slow sweep; the default bound (3 days) is well above it.
MIN_ORPHAN_AGE_SECONDS = max(24 * 3600, 2 * contracts.STALE_UNKNOWN_EXECUTION_SECONDS)
# The expiry should outlive a retried Finalize (it finds its commit by the token in the snapshot
# history): the state machine gives up on an execution after EXECUTION_TIMEOUT_SECONDS.
MIN_SNAPSHOT_RETENTION_SECONDS = contracts.EXECUTION_TIMEOUT_SECONDS
COMMIT_ATTEMPTS = 6
# The scheduled function's environment (infra/maintenance.py sets them from the defaults above).
ENV_RETENTION_DAYS = "SNAPSHOT_RETENTION_DAYS"
ENV_MIN_SNAPSHOTS = "MIN_SNAPSHOTS"
ENV_ORPHAN_AGE_HOURS = "ORPHAN_AGE_HOURS"


@dataclass
class TableReport:
    """What one maintenance run did to one table."""

    table: str
    snapshots_before: int = 0
    snapshots_expired: int = 0
    referenced_files: int = 0
    orphans_deleted: list[str] = field(default_factory=list)
    orphans_kept_young: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "snapshots_before": self.snapshots_before,
            "snapshots_expired": self.snapshots_expired,
            "referenced_files": self.referenced_files,
            "orphans_deleted": len(self.orphans_deleted),
            "orphans_kept_young": self.orphans_kept_young,
        }


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def snapshots_to_expire(
    metadata: Any, now: datetime.datetime, retention_seconds: float, keep: int
) -> list[int]:
    """Ids of the snapshots older than ``now - retention`` that are neither among the newest
    ``keep`` nor the head of a branch or tag."""
    cutoff_ms = int((now.timestamp() - retention_seconds) * 1000)
    protected = {ref.snapshot_id for ref in metadata.refs.values()}
    ordered = sorted(metadata.snapshots, key=lambda s: (s.timestamp_ms, s.sequence_number or 0))
    candidates = ordered[: max(0, len(ordered) - keep)]
    return [
        s.snapshot_id for s in candidates if s.timestamp_ms < cutoff_ms and s.snapshot_id not in protected
    ]


def expire_snapshots(
    catalog: Any,
    ident: str,
    now: datetime.datetime | None = None,
    retention_seconds: float = SNAPSHOT_RETENTION_SECONDS,
    keep: int = MIN_SNAPSHOTS,
) -> tuple[int, int]:
    """Expire the table's old snapshots; returns (snapshots before, snapshots expired).

    A conflict with a concurrent commit (a Finalize) reloads the table and recomputes: the
    expiry is a metadata commit like any other."""
    from pyiceberg.exceptions import CommitFailedException

    now = now or _now()
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        table = catalog.load_table(ident)
        before = len(table.metadata.snapshots)
        ids = snapshots_to_expire(table.metadata, now, retention_seconds, keep)
        if not ids:
            return before, 0
        try:
            table.maintenance.expire_snapshots().by_ids(ids).commit()
        except CommitFailedException:
            if attempt == COMMIT_ATTEMPTS:
                raise TransientError(f"expiring snapshots of {ident} conflicted {attempt} times") from None
            time.sleep(random.uniform(0, min(5.0, 0.2 * 2**attempt)))
            continue
        return before, len(ids)
    raise AssertionError("unreachable")  # pragma: no cover


def referenced_files(table: Any) -> set[str]:
    """Every object the table's metadata reaches: the current metadata file and its log, each
    retained snapshot's manifest list, manifests and live data/delete files, statistics files.
    Manifests shared by several snapshots are read once."""
    md = table.metadata
    io = table.io
    refs: set[str] = {table.metadata_location, *(e.metadata_file for e in md.metadata_log)}
    refs.update(s.statistics_path for s in md.statistics)
    refs.update(s.statistics_path for s in getattr(md, "partition_statistics", []) or [])
    seen_manifests: set[str] = set()
    for snap in md.snapshots:
        refs.add(snap.manifest_list)
        for manifest in snap.manifests(io):
            if manifest.manifest_path in seen_manifests:
                continue
            seen_manifests.add(manifest.manifest_path)
            refs.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
                refs.add(entry.data_file.file_path)
    return {_key_of(r) for r in refs}


def _key_of(location: str) -> str:
    """``s3://bucket/key`` -> ``bucket/key`` (s3a/s3n spellings are the same object)."""
    parsed = urlparse(location)
    return parsed.netloc + "/" + parsed.path.lstrip("/")


def _listing(bucket: str, prefix: str) -> Iterable[tuple[str, datetime.datetime]]:
    with transient_errors(f"ListObjectsV2 s3://{bucket}/{prefix}"):
        for page in clients.s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"], obj["LastModified"]


def remove_orphans(
    table: Any,
    now: datetime.datetime | None = None,
    older_than_seconds: float = ORPHAN_AGE_SECONDS,
    report: TableReport | None = None,
) -> TableReport:
    """Delete the objects under the table's location that its metadata does not reach and that
    are older than ``older_than_seconds`` (:func:`maintain` holds it to at least
    :data:`MIN_ORPHAN_AGE_SECONDS`)."""
    report = report or TableReport(str(table.name()[-1]))
    now = now or _now()
    location = urlparse(table.metadata.location)
    bucket, prefix = location.netloc, location.path.lstrip("/").rstrip("/") + "/"
    refs = referenced_files(table)
    report.referenced_files = len(refs)
    cutoff = now - datetime.timedelta(seconds=older_than_seconds)
    doomed: list[str] = []
    for key, modified in _listing(bucket, prefix):
        if f"{bucket}/{key}" in refs:
            continue
        if modified >= cutoff:
            report.orphans_kept_young += 1
            continue
        doomed.append(key)
    s3.delete_keys(bucket, doomed, "orphans")
    report.orphans_deleted.extend(doomed)
    return report


def sync_properties(catalog: Any, ident: str, attempts: int = COMMIT_ATTEMPTS) -> dict[str, str]:
    """Set the table's mutable properties (etl.core.dataset.MUTABLE_PROPERTIES) to their
    current values where they differ; returns what changed. Called by ensure_tables for an
    existing table, so a deploy upgrades tables created by an older version."""
    from pyiceberg.exceptions import CommitFailedException

    from etl.core import dataset

    for attempt in range(1, attempts + 1):
        table = catalog.load_table(ident)
        wanted = {k: dataset.TABLE_PROPERTIES[k] for k in dataset.MUTABLE_PROPERTIES}
        changed = {k: v for k, v in wanted.items() if table.properties.get(k) != v}
        if not changed:
            return {}
        try:
            table.transaction().set_properties(changed).commit_transaction()
        except CommitFailedException:
            if attempt == attempts:
                raise TransientError(
                    f"updating the properties of {ident} conflicted {attempt} times"
                ) from None
            time.sleep(random.uniform(0, min(5.0, 0.2 * 2**attempt)))
            continue
        return changed
    raise AssertionError("unreachable")  # pragma: no cover


def maintain(
    catalog: Any,
    database: str,
    *,
    tables: Iterable[str] = contracts.DATASET_TABLES,
    now: datetime.datetime | None = None,
    retention_seconds: float = SNAPSHOT_RETENTION_SECONDS,
    min_snapshots: int = MIN_SNAPSHOTS,
    orphan_age_seconds: float = ORPHAN_AGE_SECONDS,
    allow_short_bounds: bool = False,
) -> list[TableReport]:
    """Expire snapshots, then remove orphans (including what the expiry just released), table
    by table. The bounds may not go below the safe minimums unless ``allow_short_bounds`` (the
    emulator's tests and `etl local maintain`, where no load runs meanwhile)."""
    if not allow_short_bounds:
        if orphan_age_seconds < MIN_ORPHAN_AGE_SECONDS:
            raise ValueError(
                f"orphan bound {orphan_age_seconds:.0f} s is below {MIN_ORPHAN_AGE_SECONDS} s: it could "
                "delete the data files of a load still in flight"
            )
        if retention_seconds < MIN_SNAPSHOT_RETENTION_SECONDS:
            raise ValueError(
                f"snapshot retention {retention_seconds:.0f} s is below {MIN_SNAPSHOT_RETENTION_SECONDS} s: "
                "a retried Finalize could no longer find its commit"
            )
    now = now or _now()
    reports = []
    for name in tables:
        ident = f"{database}.{name}"
        report = TableReport(name)
        report.snapshots_before, report.snapshots_expired = expire_snapshots(
            catalog, ident, now, retention_seconds, min_snapshots
        )
        remove_orphans(catalog.load_table(ident), now, orphan_age_seconds, report)
        reports.append(report)
    return reports
