"""SPEC TBL6 in-process (moto's Glue + S3, real pyiceberg commits through the boto3 FileIO): the
load audit table, counts by lineage columns after a compaction, table properties of existing
tables, bounded metadata and manifests, snapshot expiry and orphan removal. Skipped on Python
3.9 (pyiceberg needs 3.10+)."""

from __future__ import annotations

import datetime
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl import contracts
from etl.core import dataset

DB = "transaction_etl_test"


def cat() -> Any:
    from etl.aws import catalog

    return catalog.load_catalog()


def tx_table() -> Any:
    return cat().load_table(f"{DB}.{contracts.TRANSACTIONS_TABLE}")


def data_file(etl: Any, n: int, rows: int, partner: str = "acme", key: str | None = None) -> tuple[Any, str]:
    """One published-shape data file of ``rows`` rows (file f<n>, one date); returns (lineage, key)."""
    lineage = dataset.Lineage(f"f{n}", partner, key or f"incoming/{partner}/file{n}.csv", f"v{n}")
    valid = pa.table(
        {
            "transaction_id": pa.array([f"t{n}-{i}" for i in range(rows)]),
            "account_id": pa.array(["a"] * rows),
            "transaction_date": pa.array([datetime.date(2026, 11, 2)] * rows, pa.date32()),
            "amount": pa.array(["1.50"] * rows).cast(pa.decimal128(18, 2)),
            "currency": pa.array(["EUR"] * rows),
            "transaction_type": pa.array(["debit"] * rows),
        }
    )
    table = dataset.transactions_table(valid, np.arange(2, rows + 2), lineage)
    k = dataset.transactions_data_key(lineage.file_id, 1, "2026-11-02")
    etl.put(k, dataset.data_file_bytes(table))
    return lineage, k


def load(
    etl: Any, n: int, rows: int, key: str | None = None, execution: str | None = None
) -> tuple[Any, Any]:
    """Publish file f<n> and record its load, as Finalize does."""
    from etl.aws import catalog, loads

    execution = execution or f"exec-{n}"
    lineage, k = data_file(etl, n, rows, key=key)
    published = catalog.publish(DB, contracts.TRANSACTIONS_TABLE, etl.bucket, [k], lineage, None, execution)
    rejects = catalog.publish(DB, contracts.REJECTS_TABLE, etl.bucket, [], lineage, None, execution)
    record = loads.record_load(DB, lineage, [k], None, execution, published, rejects)
    return published, record


def loads_rows() -> list[dict[str, Any]]:
    table = cat().load_table(f"{DB}.{contracts.LOADS_TABLE}")
    return sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["committed_at"])


def test_TBL6_transaction_loads_table_is_created_with_its_layout(etl_dataset: Any) -> None:
    table = cat().load_table(f"{DB}.{contracts.LOADS_TABLE}")
    assert [f.name for f in table.schema().fields] == list(dataset.LOADS_COLUMNS)
    assert [f.name for f in table.spec().fields] == ["partner"]
    assert [table.schema().find_column_name(f.source_id) for f in table.sort_order().fields] == [
        "committed_at"
    ]
    assert str(table.schema().find_field("committed_at").field_type) == "timestamptz"


def test_TBL6_ensure_tables_brings_an_existing_tables_properties_up_to_date(etl_dataset: Any) -> None:
    from etl.aws import catalog

    ident = f"{DB}.{contracts.TRANSACTIONS_TABLE}"
    cat().load_table(ident).transaction().set_properties(
        {"commit.manifest-merge.enabled": "false"}
    ).remove_properties("write.metadata.delete-after-commit.enabled").commit_transaction()
    catalog.ensure_tables(DB, f"s3://{etl_dataset.bucket}/tables/")
    props = cat().load_table(ident).properties
    assert props["commit.manifest-merge.enabled"] == "true"
    assert props["write.metadata.delete-after-commit.enabled"] == "true"


def test_TBL6_record_load_writes_one_row_per_commit_counted_from_the_data(etl_dataset: Any) -> None:
    from etl.aws import loads

    published, first = load(etl_dataset, 1, 7)
    assert (first.rows_added, first.rows_removed, first.snapshot_id) == (7, 0, published.snapshot_id)
    # A correction (a new version of the same key) replaces the 7 rows.
    _, second = load(etl_dataset, 2, 4, key="incoming/acme/file1.csv")
    assert (second.rows_added, second.rows_removed) == (4, 7)
    # A retried Finalize (same token) writes nothing.
    lineage, k = data_file(etl_dataset, 2, 4, key="incoming/acme/file1.csv")
    again = loads.record_load(DB, lineage, [k], None, "exec-2", published, None)
    assert again.already_recorded
    rows = loads_rows()
    assert [(r["file_id"], r["rows_added"], r["rows_removed"]) for r in rows] == [("f1", 7, 0), ("f2", 4, 7)]
    assert rows[1]["source_key"] == "incoming/acme/file1.csv" and rows[1]["execution_arn"] == "exec-2"
    assert rows[1]["committed_at"].tzinfo is not None


def test_TBL6_record_load_retries_a_conflicting_append(
    etl_dataset: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyiceberg.exceptions import CommitFailedException
    from pyiceberg.table import Transaction

    from etl.aws import loads

    real = Transaction.commit_transaction
    conflicts = {"n": 0}

    def once(self: Any) -> Any:
        if self.table_metadata.location.endswith(contracts.LOADS_TABLE) and conflicts["n"] == 0:
            conflicts["n"] += 1
            raise CommitFailedException("another Finalize appended first (injected)")
        return real(self)

    monkeypatch.setattr(Transaction, "commit_transaction", once)
    monkeypatch.setattr(loads.time, "sleep", lambda s: None)
    load(etl_dataset, 1, 3)
    assert conflicts["n"] == 1
    assert [r["file_id"] for r in loads_rows()] == ["f1"]


def compact(etl: Any, file_ids: list[str]) -> None:
    """What Athena OPTIMIZE / Glue compaction does: the files of ``file_ids`` rewritten into one
    data file mixing them (same partition), in one overwrite."""
    from pyiceberg.expressions import In

    table = tx_table()
    rows = table.scan(row_filter=In("file_id", file_ids)).to_arrow()
    rows = rows.cast(dataset.transactions_arrow_schema())
    key = "tables/transactions/data/compacted/part-0.parquet"
    sink = pa.BufferOutputStream()
    pq.write_table(rows, sink)
    etl.put(key, sink.getvalue().to_pybytes())
    tx = table.transaction()
    tx.delete(In("file_id", file_ids))
    tx.add_files([f"s3://{etl.bucket}/{key}"], check_duplicate_files=False)
    tx.commit_transaction()


def test_TBL6_counts_by_lineage_survive_a_compaction_that_mixes_files(etl_dataset: Any) -> None:
    from etl.aws import loads

    load(etl_dataset, 1, 5)
    load(etl_dataset, 2, 3)
    compact(etl_dataset, ["f1", "f2"])
    table = tx_table()
    assert len(list(table.scan().plan_files())) == 1  # one file, two file_ids
    assert loads.rows_by_file(table, ["f1", "f2", "f9"]) == {"f1": 5, "f2": 3, "f9": 0}
    # Reprocessing f1 now rewrites the mixed file: the snapshot summaries count f2's 3 rewritten
    # rows as added (the conservation check's old source), the data counts do not.
    published, record = load(etl_dataset, 1, 6, key="incoming/acme/file1.csv", execution="exec-again")
    assert published.added_rows == 6 + 3
    assert (record.rows_added, record.rows_removed) == (6, 5)
    assert loads.rows_by_file(tx_table(), ["f1", "f2"]) == {"f1": 6, "f2": 3}


def test_TBL6_commits_merge_manifests_and_delete_old_metadata(etl_dataset: Any) -> None:
    for n in range(1, 26):
        load(etl_dataset, n, 2)
    table = tx_table()
    manifests = table.current_snapshot().manifests(table.io)
    assert len(manifests) < 20, len(manifests)  # fast-append would keep 25
    metadata = etl_dataset.keys("tables/transactions/metadata/")
    json_files = [k for k in metadata if k.endswith(".metadata.json")]
    # The current file plus at most previous-versions-max (20) older ones.
    assert len(json_files) <= 21, len(json_files)
    assert len(loads_rows()) == 25


def test_TBL6_maintenance_expires_snapshots_and_removes_only_old_orphans(etl_dataset: Any) -> None:
    from etl.aws import loads, maintenance

    for n in range(1, 5):
        load(etl_dataset, n, 3)
    _, replaced = load(etl_dataset, 5, 2, key="incoming/acme/file1.csv")  # f1's file is replaced
    assert replaced.rows_removed == 3
    f1_key = dataset.transactions_data_key("f1", 1, "2026-11-02")
    old_orphan = "tables/transactions/data/file_id=gone/part-00001-2026-11-02.parquet"
    etl_dataset.put(old_orphan, b"left behind by a file that failed long ago")
    time.sleep(1.5)
    young_orphan = "tables/transactions/data/file_id=inflight/part-00001-2026-11-02.parquet"
    etl_dataset.put(young_orphan, b"written by a chunk whose Finalize has not committed yet")
    before = tx_table()
    assert len(before.metadata.snapshots) > 2

    with pytest.raises(ValueError, match="in flight"):
        maintenance.maintain(cat(), DB, orphan_age_seconds=60)  # below the floor
    reports = maintenance.maintain(
        cat(), DB, retention_seconds=0, min_snapshots=1, orphan_age_seconds=1.0, allow_short_bounds=True
    )
    by_table = {r.table: r for r in reports}
    assert set(by_table) == set(contracts.DATASET_TABLES)
    after = tx_table()
    assert len(after.metadata.snapshots) == 1
    assert by_table["transactions"].snapshots_expired == len(before.metadata.snapshots) - 1
    keys = set(etl_dataset.keys("tables/"))
    assert old_orphan not in keys and young_orphan in keys
    assert f1_key not in keys  # only expired snapshots referenced the replaced file
    # The current rows are intact and readable; every load is still in transaction_loads.
    assert loads.rows_by_file(after, ["f1", "f2", "f3", "f4", "f5"]) == {
        "f1": 0,
        "f2": 3,
        "f3": 3,
        "f4": 3,
        "f5": 2,
    }
    assert after.scan().to_arrow().num_rows == 11
    assert [r["file_id"] for r in loads_rows()] == ["f1", "f2", "f3", "f4", "f5"]
    # Nothing the current metadata reaches was deleted.
    assert {k.split("/", 1)[1] for k in maintenance.referenced_files(after)} <= keys


def test_TBL6_expiry_keeps_the_newest_and_recent_snapshots() -> None:
    from types import SimpleNamespace

    from etl.aws.maintenance import snapshots_to_expire

    now = datetime.datetime(2026, 12, 8, tzinfo=datetime.timezone.utc)
    day_ms = 86_400_000
    snaps = [
        SimpleNamespace(
            snapshot_id=i, timestamp_ms=int(now.timestamp() * 1000) - (10 - i) * day_ms, sequence_number=i
        )
        for i in range(10)
    ]
    md = SimpleNamespace(snapshots=snaps, refs={"main": SimpleNamespace(snapshot_id=9)})
    # Older than 7 days: ids 0..2; keep the newest 8 -> only 0 and 1 may go.
    assert snapshots_to_expire(md, now, 7 * 86400, 8) == [0, 1]
    assert snapshots_to_expire(md, now, 7 * 86400, 2) == [0, 1, 2]
    assert snapshots_to_expire(md, now, 0, 0) == list(range(9))  # the branch head stays


def test_TBL6_scheduled_handler_maintains_every_table_with_its_environment(
    etl_dataset: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl.aws import maintenance
    from etl.handlers import maintain_tables

    load(etl_dataset, 1, 2)
    load(etl_dataset, 2, 2)
    monkeypatch.setenv(maintenance.ENV_MIN_SNAPSHOTS, "1")
    # Ten days on: every snapshot but the newest is past the one-day retention.
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=10)
    monkeypatch.setattr(maintenance, "_now", lambda: later)
    out = maintain_tables.handler({"mode": "scheduled"})
    by_table = {t["table"]: t for t in out["tables"]}
    assert set(by_table) == set(contracts.DATASET_TABLES)
    assert by_table["transactions"]["snapshots_expired"] >= 1
    assert len(tx_table().metadata.snapshots) == 1
    monkeypatch.setenv(maintenance.ENV_ORPHAN_AGE_HOURS, "1")  # below the floor: refused
    with pytest.raises(ValueError, match="in flight"):
        maintain_tables.handler({})
