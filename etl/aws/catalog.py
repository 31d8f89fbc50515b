"""The Iceberg tables in the Glue Data Catalog (SPEC DATA1, DATA2): creation and commits.

- :func:`ensure_tables` creates the missing tables (idempotent). Called by the CloudFormation
  custom resource (``etl.handlers.ensure_tables``) on AWS and by the local deploy.
- :func:`publish` commits one file: in ONE Iceberg transaction on a table it deletes the
  file's earlier rows (same ``file_id``: a reprocess) and the rows of earlier versions of the
  same source key (a correction, DATA4(b)), then adds the file's data files. The protocol
  under faults (no replayed commits, "outcome unknown" resolved by the commit token, a lost
  race re-planned) is docs/dataset.md "Commit protocol under faults" (SPEC TBL4).
- :func:`unpublish` undoes a failing file's landed commit; :func:`remove_unreferenced` deletes
  the file's data objects that no snapshot references (the failure path and Finalize).

pyiceberg is imported inside the functions that need it: ProcessChunk does not pay for it.

Shipped to Lambda: Python 3.9 compatible (pyiceberg itself needs Python >= 3.10: on the
python3.9 runtime publication is not available, see README "Known limits").
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from etl.aws import clients, s3
from etl.contracts import DATASET_TABLES
from etl.core import dataset
from etl.errors import TransientError

CATALOG_NAME = "glue"
FILE_IO = "etl.aws.iceberg_io.S3FileIO"
COMMIT_ATTEMPTS = 6
_BACKOFF_BASE_S = 0.2
_BACKOFF_CAP_S = 5.0


def glue_database_name() -> str:
    """The Glue database of this environment (``GLUE_DATABASE``, set by infra/functions.py)."""
    return os.environ["GLUE_DATABASE"]


def load_catalog(warehouse: str | None = None) -> Any:
    """A pyiceberg ``GlueCatalog`` on the shared boto3 Glue client and the boto3 FileIO.

    The endpoint comes from botocore (``AWS_ENDPOINT_URL`` locally, AWS's on Lambda)."""
    from pyiceberg.catalog.glue import GlueCatalog

    props = {"py-io-impl": FILE_IO}
    if warehouse:
        props["warehouse"] = warehouse
    # The commit client never replays a request (etl.aws.clients.commit_client); reads are
    # retried by publish's own loop.
    return GlueCatalog(CATALOG_NAME, client=clients.commit_client("glue"), **props)


def ensure_tables(database: str, warehouse: str, catalog: Any = None) -> dict[str, str]:
    """Create ``transactions`` and ``transaction_rejects`` in ``database`` if missing.

    ``warehouse`` is ``s3://<bucket>/tables/``; each table lives at ``<warehouse><table>``.
    The database must exist (CloudFormation creates it on AWS, the local deploy locally).
    Returns ``{table: "<database>.<table>"}``. An existing table keeps its schema and data; its
    mutable properties are set to the current definition (``maintenance.sync_properties``).
    """
    from pyiceberg.exceptions import TableAlreadyExistsError

    catalog = catalog or load_catalog(warehouse)
    schemas = dataset.iceberg_schemas()
    out = {}
    for name in DATASET_TABLES:
        ident = f"{database}.{name}"
        if not catalog.table_exists(ident):
            schema = schemas[name]
            # Created concurrently (two deploys): same definition, fine.
            with contextlib.suppress(TableAlreadyExistsError):
                catalog.create_table(
                    ident,
                    schema=schema,
                    location=warehouse.rstrip("/") + "/" + name,
                    partition_spec=dataset.partition_spec(name, schema),
                    sort_order=dataset.sort_order(name, schema),
                    properties=dataset.table_properties(schema),
                )
        else:
            # SPEC TBL6: a deploy brings an existing table's properties up to date.
            from etl.aws.maintenance import sync_properties

            sync_properties(catalog, ident)
        out[name] = ident
    return out


@dataclass(frozen=True)
class Published:
    """The outcome of one table commit for one file."""

    table: str
    snapshot_id: int | None
    added_rows: int
    deleted_rows: int
    already_committed: bool = False
    attempts: int = 1


def commit_token(
    table: str, lineage: dataset.Lineage, data_keys: Iterable[str], execution_arn: str | None
) -> str:
    """Identifies one publication of one file: a retried Finalize finds it in the snapshot
    history and does not commit twice."""
    h = hashlib.sha256()
    for part in (
        table,
        lineage.file_id,
        lineage.source_version or "",
        execution_arn or "",
        *sorted(data_keys),
    ):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _replace_filter(lineage: dataset.Lineage, with_key: bool = True) -> Any:
    """Rows this file replaces: its own earlier rows (reprocess) and every row of the same
    source key (an earlier version: a correction). Both columns are constant per data file
    with exact statistics, so the delete is metadata-only (no data file is rewritten)."""
    from pyiceberg.expressions import And, Or

    eq = dataset.equal_to
    if not with_key:
        return And(eq("partner", lineage.partner), eq("file_id", lineage.file_id))
    return And(
        eq("partner", lineage.partner),
        Or(eq("file_id", lineage.file_id), eq("source_key", lineage.source_key)),
    )


def _find_committed(table: Any, token: str) -> Any:
    for snap in reversed(table.metadata.snapshots):
        summary = snap.summary
        if summary is not None and summary.get(dataset.SUMMARY_PREFIX + "commit_token") == token:
            return snap
    return None


def _counts(table: Any, token: str) -> tuple[int | None, int, int]:
    """(snapshot id, added rows, deleted rows) of the snapshots carrying ``token``."""
    added = deleted = 0
    last = None
    for snap in table.metadata.snapshots:
        summary = snap.summary
        if summary is None or summary.get(dataset.SUMMARY_PREFIX + "commit_token") != token:
            continue
        added += int(summary.get("added-records", 0) or 0)
        deleted += int(summary.get("deleted-records", 0) or 0)
        last = snap.snapshot_id
    return last, added, deleted


def _data_files(table: Any, paths: list[str]) -> list[Any]:
    """pyiceberg DataFiles (statistics from each Parquet footer) for ``paths``: read once per
    publication, reused by every attempt (a lost race re-plans from them, SPEC TBL6)."""
    from pyiceberg.table import _parquet_files_to_data_files

    return list(_parquet_files_to_data_files(table_metadata=table.metadata, file_paths=paths, io=table.io))


def _stage(
    table: Any, lineage: dataset.Lineage, files: list[Any], props: dict[str, str], with_key: bool = True
) -> Any:
    """The file's transaction on ``table``: replace its rows (and, ``with_key``, those of
    earlier versions of its key) by ``files``. Both snapshots land in one metadata swap."""
    tx = table.transaction()
    with warnings.catch_warnings():
        # "did not match any records": the usual case (a first load), not news.
        warnings.simplefilter("ignore", UserWarning)
        tx.delete(_replace_filter(lineage, with_key), snapshot_properties=props)
    if files:
        with tx._append_snapshot_producer(props) as append:
            for data_file in files:
                append.append_data_file(data_file)
    return tx


def _unknown_outcome(exc: BaseException) -> bool:
    """Errors after which a commit may or may not have landed (a lost response, a throttled or
    failed call): never retried blindly, the next attempt looks for the commit token first."""
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, (BotoCoreError, ClientError, OSError))


def _backoff(attempt: int) -> None:
    # Full jitter: two Finalize steps that collided do not collide again in step.
    time.sleep(random.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt)))


def publish(
    database: str,
    table_name: str,
    bucket: str,
    data_keys: list[str],
    lineage: dataset.Lineage,
    manifest_key: str | None,
    execution_arn: str | None,
    catalog: Any = None,
    attempts: int = COMMIT_ATTEMPTS,
    outcome: str | None = None,
) -> Published:
    """Replace the file's rows in ``table_name`` with ``data_keys`` in one Iceberg commit.

    ``outcome="FAILED"`` (the rejects of a file the reject threshold failed, SPEC TBL7): the
    snapshot summary says so (``etl.load_outcome``) and only the file's own earlier rows are
    replaced, never those of other versions of its key (the live version keeps its rejects).

    The protocol (docs/dataset.md "Commit protocol", SPEC TBL4):

    - Idempotent: a commit carrying the same token (file, version, execution, data files) is
      found in the snapshot history and not repeated.
    - ``UpdateTable`` goes through a client that never replays it (etl.aws.clients
      ``commit_client``). Any error other than ``CommitFailedException`` leaves the outcome
      unknown: the next attempt reloads the table and looks for the token before committing.
    - ``CommitFailedException`` (a concurrent commit won) re-plans the transaction on the
      reloaded table from the data files described once (no footer is read twice).
    """
    from pyiceberg.exceptions import CommitFailedException

    catalog = catalog or load_catalog()
    token = commit_token(table_name, lineage, data_keys, execution_arn)
    props = dataset.summary_properties(lineage, manifest_key, execution_arn, token)
    if outcome:
        props[dataset.SUMMARY_PREFIX + "load_outcome"] = outcome
    paths = [f"s3://{bucket}/{k}" for k in sorted(data_keys)]
    ident = f"{database}.{table_name}"
    files: list[Any] | None = None
    last_error: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            table = catalog.load_table(ident)
            if _find_committed(table, token) is not None:
                snap, added, deleted = _counts(table, token)
                return Published(table_name, snap, added, deleted, already_committed=True, attempts=attempt)
            if files is None:
                files = _data_files(table, paths) if paths else []
            committed = _stage(table, lineage, files, props, with_key=outcome is None).commit_transaction()
        except CommitFailedException as exc:  # did not land: a concurrent commit won
            last_error = exc
        except Exception as exc:
            if not _unknown_outcome(exc):
                raise
            obs_warning(f"commit to {ident} for file {lineage.file_id}: outcome unknown ({exc!r}); checking")
            last_error = exc
        else:
            snap, added, deleted = _counts(committed, token)
            return Published(table_name, snap, added, deleted, attempts=attempt)
        if attempt < attempts:
            _backoff(attempt)
    raise TransientError(
        f"commit to {ident} for file {lineage.file_id} did not complete in {attempts} attempts "
        f"(concurrent commits or unknown outcomes): {last_error}"
    )


def obs_warning(message: str) -> None:
    from etl import observability as obs

    obs.logger.warning(message)


# ---------------------------------------------------------------------------------------------
# What the table references (SPEC TBL3 I3/I4: never delete a referenced data file)


def referenced_paths(table: Any, prefix: str | None = None) -> set[str]:
    """Every data file path any snapshot of ``table`` references (optionally only those
    starting with ``prefix``): the current rows and everything time travel can still read.
    Each manifest is read once, however many snapshots share it."""
    seen: set[str] = set()
    out: set[str] = set()
    for snap in table.metadata.snapshots:
        for manifest in snap.manifests(table.io):
            if manifest.manifest_path in seen:
                continue
            seen.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
                path = entry.data_file.file_path
                if prefix is None or path.startswith(prefix):
                    out.add(path)
    return out


def live_rows(table: Any, file_id: str) -> int:
    """Rows of ``file_id`` in the current snapshot (manifest statistics: no data read). A data
    file belongs to the file whose prefix it lives under (etl.core.dataset.data_prefix)."""
    if table.metadata.current_snapshot() is None:
        return 0
    marker = f"/file_id={file_id}/"
    tasks = table.scan(row_filter=dataset.equal_to("file_id", file_id)).plan_files()
    return sum(int(t.file.record_count) for t in tasks if marker in t.file.file_path)


def remove_unreferenced(database: str, bucket: str, file_id: str, catalog: Any = None) -> int:
    """Delete the objects under ``file_id``'s data prefixes (both tables) that no snapshot
    references: attempts that never committed, a failed file's unpublished rows. A referenced
    file is never deleted (expiring snapshots is maintenance's job). Returns how many."""
    catalog = catalog or load_catalog()
    deleted = 0
    for name in DATASET_TABLES:
        prefix = dataset.data_prefix(name, file_id)
        keys = s3.list_keys(bucket, prefix)
        if not keys:
            continue
        table = catalog.load_table(f"{database}.{name}")
        referenced = referenced_paths(table, f"s3://{bucket}/{prefix}")
        doomed = [k for k in keys if f"s3://{bucket}/{k}" not in referenced]
        deleted += s3.delete_keys(bucket, doomed, "unreferenced data files")
    return deleted


def _removed_by(table: Any, snapshot: Any) -> list[str]:
    """Paths of the data files ``snapshot`` removed (its manifests' DELETED entries)."""
    from pyiceberg.manifest import ManifestEntryStatus

    out = []
    for manifest in snapshot.manifests(table.io):
        if manifest.added_snapshot_id != snapshot.snapshot_id:
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
            if entry.status == ManifestEntryStatus.DELETED and entry.snapshot_id == snapshot.snapshot_id:
                out.append(entry.data_file.file_path)
    return out


def _replaced_by_last_commit(table: Any, file_id: str) -> list[str]:
    """The other files' data files that ``file_id``'s last commit removed (a correction's
    earlier version): the rows to make live again when that commit is undone."""
    key = dataset.SUMMARY_PREFIX
    tagged = [
        snap
        for snap in table.metadata.snapshots
        if snap.summary is not None
        and snap.summary.get(key + "file_id") == file_id
        and snap.summary.get(key + "operation") != "unpublish"
    ]
    if not tagged:
        return []
    token = tagged[-1].summary.get(key + "commit_token")
    removed: set[str] = set()
    for snap in tagged:
        if snap.summary.get(key + "commit_token") == token:
            removed.update(_removed_by(table, snap))
    return sorted(p for p in removed if f"/file_id={file_id}/" not in p)


def unpublish(
    database: str, table_name: str, lineage: dataset.Lineage, reason: str, catalog: Any = None
) -> Published | None:
    """Take a failing file's rows out of the table again (SPEC TBL4, I1): a commit that landed
    for a file that then ended FAILED (Finalize died after its commit and never came back).

    In one commit: delete the file's rows, and put back the data files the file's own commit
    had replaced (an earlier version of its key, DATA4(b)): those rows are live again. Safe
    because no later commit touched the key (a later one would have removed this file's rows).
    None when the file has no rows in the current snapshot."""
    from pyiceberg.exceptions import CommitFailedException

    catalog = catalog or load_catalog()
    ident = f"{database}.{table_name}"
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            table = catalog.load_table(ident)
            if live_rows(table, lineage.file_id) == 0:
                return None
            restore = _replaced_by_last_commit(table, lineage.file_id)
            props = {
                **dataset.summary_properties(lineage, None, None, f"unpublish-{lineage.file_id}"),
                dataset.SUMMARY_PREFIX + "operation": "unpublish",
                dataset.SUMMARY_PREFIX + "reason": reason[:500],
            }
            tx = table.transaction()
            tx.delete(dataset.equal_to("file_id", lineage.file_id), snapshot_properties=props)
            if restore:
                files = _data_files(table, restore)
                with tx._append_snapshot_producer(props) as append:
                    for data_file in files:
                        append.append_data_file(data_file)
            committed = tx.commit_transaction()
        except CommitFailedException:
            pass
        except Exception as exc:
            if not _unknown_outcome(exc):
                raise
        else:
            snap = committed.metadata.current_snapshot()
            return Published(table_name, snap.snapshot_id if snap else None, 0, 0, attempts=attempt)
        _backoff(attempt)
    raise TransientError(f"could not unpublish file {lineage.file_id} from {ident}")
