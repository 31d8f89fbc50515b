"""The Iceberg tables in the Glue Data Catalog (SPEC DATA1, DATA2): creation and commits.

- :func:`ensure_tables` creates the missing tables (idempotent). Called by the CloudFormation
  custom resource (``etl.handlers.ensure_tables``) on AWS and by the local deploy.
- :func:`publish` commits one file: in ONE Iceberg transaction on a table it deletes the
  file's earlier rows (same ``file_id``: a reprocess) and the rows of earlier versions of the
  same source key (a correction, DATA4(b)), then adds the file's data files. A conflict with a
  concurrent commit (another file's Finalize) reloads the table and redoes the transaction,
  bounded, then raises ``TransientError`` (the state machine retries the step).
- :func:`delete_unpublished` removes a never-published file's data files (the failure path;
  the operations' reconcile can call it too).

pyiceberg is imported inside the functions that need it: MarkFailed (which only deletes
objects) and ProcessChunk do not pay for it.

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
from etl.contracts import DATASET_TABLES, REJECTS_TABLE, TRANSACTIONS_TABLE
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
    return GlueCatalog(CATALOG_NAME, client=clients.client("glue"), **props)


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


def _replace_filter(lineage: dataset.Lineage) -> Any:
    """Rows this file replaces: its own earlier rows (reprocess) and every row of the same
    source key (an earlier version: a correction). Both columns are constant per data file
    with exact statistics, so the delete is metadata-only (no data file is rewritten)."""
    from pyiceberg.expressions import And, Or

    eq = dataset.equal_to
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
) -> Published:
    """Replace the file's rows in ``table_name`` with ``data_keys`` in one Iceberg commit.

    Idempotent: a commit carrying the same token (file, version, execution, data files) is
    found in the snapshot history and not repeated.
    """
    from pyiceberg.exceptions import CommitFailedException

    catalog = catalog or load_catalog()
    token = commit_token(table_name, lineage, data_keys, execution_arn)
    props = dataset.summary_properties(lineage, manifest_key, execution_arn, token)
    paths = [f"s3://{bucket}/{k}" for k in sorted(data_keys)]
    ident = f"{database}.{table_name}"
    last_error: Exception | None = None
    for attempt in range(1, attempts + 1):
        table = catalog.load_table(ident)
        if _find_committed(table, token) is not None:
            snap, added, deleted = _counts(table, token)
            return Published(table_name, snap, added, deleted, already_committed=True, attempts=attempt)
        tx = table.transaction()
        with warnings.catch_warnings():
            # "did not match any records": the usual case (a first load), not news.
            warnings.simplefilter("ignore", UserWarning)
            tx.delete(_replace_filter(lineage), snapshot_properties=props)
        if paths:
            tx.add_files(paths, snapshot_properties=props, check_duplicate_files=False)
        try:
            committed = tx.commit_transaction()
        except CommitFailedException as exc:
            last_error = exc
            if attempt < attempts:
                # Full jitter: two Finalize steps that collided do not collide again in step.
                time.sleep(random.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt)))
            continue
        snap, added, deleted = _counts(committed, token)
        return Published(table_name, snap, added, deleted, attempts=attempt)
    raise TransientError(
        f"commit to {ident} for file {lineage.file_id} conflicted {attempts} times with concurrent "
        f"commits: {last_error}"
    )


def delete_unpublished(bucket: str, file_id: str) -> int:
    """Delete the data files of a file that has NO committed snapshot (both tables).

    Only call it for a file whose item records no ``snapshot_id``: once committed, these
    objects are the published rows. Returns how many objects were deleted.
    """
    return sum(
        s3.delete_prefix(bucket, dataset.data_prefix(t, file_id)) for t in (TRANSACTIONS_TABLE, REJECTS_TABLE)
    )
