"""SPEC DATA1/DATA2 in-process (moto's Glue + S3, real pyiceberg commits through the boto3
FileIO): the custom resource, failures before/after the commit, idempotent Finalize, and
bounded conflict retries. Skipped on Python 3.9 (pyiceberg needs 3.10+)."""

from __future__ import annotations

from typing import Any

import pytest

from etl import contracts
from etl.core import dataset
from etl.errors import TransientError

DB = "transaction_etl_test"


def table(etl_aws: Any, name: str = contracts.TRANSACTIONS_TABLE) -> Any:
    from etl.aws import catalog

    return catalog.load_catalog().load_table(f"{DB}.{name}")


def data_keys(etl_aws: Any, file_id: str) -> list[str]:
    return [k for t in contracts.DATASET_TABLES for k in etl_aws.keys(dataset.data_prefix(t, file_id))]


def file_snapshots(etl_aws: Any, file_id: str, name: str = contracts.TRANSACTIONS_TABLE) -> list[Any]:
    snaps = table(etl_aws, name).metadata.snapshots
    return [s for s in snaps if (s.summary or {}).get("etl.file_id") == file_id]


def test_DATA1_ensure_tables_custom_resource_is_idempotent_and_delete_does_nothing(etl_dataset: Any) -> None:
    from etl.handlers import ensure_tables

    props = {"Database": DB, "Warehouse": f"s3://{etl_dataset.bucket}/tables/"}
    before = table(etl_dataset).metadata_location
    for request in ("Create", "Update"):
        out = ensure_tables.handler({"RequestType": request, "ResourceProperties": props})
        assert out == {
            "PhysicalResourceId": f"{DB}/tables",
            "Data": {
                "TransactionsTable": f"{DB}.transactions",
                "RejectsTable": f"{DB}.transaction_rejects",
                "LoadsTable": f"{DB}.transaction_loads",
            },
        }
    assert table(etl_dataset).metadata_location == before  # an existing table is left alone
    gone = ensure_tables.handler(
        {"RequestType": "Delete", "PhysicalResourceId": f"{DB}/tables", "ResourceProperties": props}
    )
    assert gone["PhysicalResourceId"] == f"{DB}/tables"
    assert table(etl_dataset).metadata_location == before
    spec = table(etl_dataset).spec()
    assert [f.name for f in spec.fields] == ["partner", "transaction_date"]
    assert [str(f.transform) for f in spec.fields] == ["identity", "identity"]


def test_DATA1_ensure_tables_creates_a_missing_table(etl_dataset: Any) -> None:
    from etl.aws import catalog

    cat = catalog.load_catalog()
    cat.drop_table(f"{DB}.transaction_rejects")
    assert catalog.ensure_tables(DB, f"s3://{etl_dataset.bucket}/tables/") == {
        "transactions": f"{DB}.transactions",
        "transaction_rejects": f"{DB}.transaction_rejects",
        "transaction_loads": f"{DB}.transaction_loads",
    }
    assert cat.table_exists(f"{DB}.transaction_rejects")


def test_DATA2_TBL7_threshold_failure_publishes_no_rows_and_keeps_its_rejects(
    chain: Any, etl_aws: Any
) -> None:
    run = chain.upload_and_run("incoming/default/bad.csv", chain.make_csv(100, bad=tuple(range(1, 30))))
    assert type(run.error).__name__ == "TooManyRejects"
    fid = run.state["file"]["file_id"]
    assert any(c.get("data_keys") for c in etl_aws.repo.list_chunks(fid))  # they were written
    # No row published, no transactions data file left ...
    assert [k for k in data_keys(etl_aws, fid) if k.startswith("tables/transactions/")] == []
    assert file_snapshots(etl_aws, fid) == []
    # ... but its rejects are kept: in transaction_rejects (marked as from a load that did not
    # publish) and as the partner's CSV.
    rejects = file_snapshots(etl_aws, fid, contracts.REJECTS_TABLE)
    assert len(rejects) >= 1
    assert {s.summary["etl.load_outcome"] for s in rejects} == {"FAILED"}
    item = etl_aws.repo.get_file(fid)
    assert item["status"] == "FAILED" and item["published_rejects"] == 29
    assert etl_aws.keys(f"rejected/partner=default/file_id={fid}/")


def test_TBL4_a_failure_after_the_commit_unpublishes(
    chain: Any, etl_aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """I1: a FAILED file's rows are not visible, even when its commit landed first; its data
    files stay (the commit's snapshot references them: time travel), nothing is rewritten."""
    from etl.handlers import finalize

    real_move = finalize.s3.move_object

    def broken_move(bucket: str, src: str, dst: str, *args: Any, **kwargs: Any) -> Any:
        if dst.startswith(contracts.PROCESSED_PREFIX):  # Finalize's move, after the commit
            raise RuntimeError("move failed (injected)")
        return real_move(bucket, src, dst, *args, **kwargs)

    monkeypatch.setattr(finalize.s3, "move_object", broken_move)
    run = chain.upload_and_run("incoming/default/late.csv", chain.make_csv(40))
    assert isinstance(run.error, RuntimeError)
    fid = run.state["file"]["file_id"]
    item = etl_aws.repo.get_file(fid)
    assert item["status"] == "FAILED"
    assert item.get("snapshot_id") is None and item["unpublished_snapshot_id"]
    snaps = file_snapshots(etl_aws, fid)
    assert [s.summary.get("etl.operation") for s in snaps][-1] == "unpublish"
    current = table(etl_aws)
    assert current.current_snapshot().snapshot_id == item["unpublished_snapshot_id"]
    assert current.scan(row_filter=dataset.equal_to("file_id", fid)).to_arrow().num_rows == 0
    assert data_keys(etl_aws, fid)  # still referenced by the commit's snapshot


def test_DATA2_a_retried_finalize_commits_once(chain: Any, etl_aws: Any) -> None:
    from etl.handlers import finalize

    run = chain.upload_and_run("incoming/default/a.csv", chain.make_csv(30))
    assert run.error is None, run.failure
    state = run.state
    again = finalize.handler(
        {
            "file": state["file"],
            "header": state["header"],
            "plan": state["plan"],
            "execution_arn": chain.execution_arn,
        },
        None,
    )
    assert again["snapshot_id"] == state["result"]["snapshot_id"]
    assert len(file_snapshots(etl_aws, state["file"]["file_id"])) == 1


def test_DATA2_conflicts_are_retried_then_a_transient_error(etl_dataset: Any) -> None:
    """Every attempt loses to a commit that lands between its read and its write: after the
    bounded attempts, TransientError (the state machine's Retry takes over)."""
    from etl.aws import catalog
    from etl.core.process import process_chunk
    from etl.core.schema import load_schema
    from etl.handlers.process_chunk import write_data_files

    from .conftest import make_csv

    bucket = etl_dataset.bucket
    real = catalog.load_catalog()

    def files(name: str) -> tuple[dataset.Lineage, list[str]]:
        key = f"incoming/default/{name}.csv"
        file = {"file_id": name, "partner": "default", "key": key, "original_key": key}
        keys, _ = write_data_files(bucket, file, 1, process_chunk(make_csv(5), load_schema("default"), 2))
        return dataset.lineage_of(file), keys

    other, other_keys = files("other")

    class Interfering:
        def __init__(self) -> None:
            self.loads = 0

        def load_table(self, ident: str) -> Any:
            t = real.load_table(ident)
            self.loads += 1
            # Someone else commits right after this read.
            catalog.publish(
                DB, "transactions", bucket, other_keys, other, None, f"arn:other-{self.loads}", real
            )
            return t

    mine, mine_keys = files("mine")
    interfering = Interfering()
    with pytest.raises(TransientError, match="did not complete in 3 attempts"):
        catalog.publish(
            DB, "transactions", bucket, mine_keys, mine, None, "arn:mine", interfering, attempts=3
        )
    assert interfering.loads == 3
    assert file_snapshots(etl_dataset, "mine") == []
    # Without interference the same call lands.
    done = catalog.publish(DB, "transactions", bucket, mine_keys, mine, None, "arn:mine", real)
    assert done.added_rows == 5 and done.attempts == 1
