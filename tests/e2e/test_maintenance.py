"""SPEC TBL6 on the emulator: loads through the real state machine write the load audit table,
and the deployed MaintainTables function (the scheduled maintenance) expires old snapshots,
removes old orphans and keeps young ones, while the current rows and every load row stay."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

import pytest

from etl import contracts
from etl.aws import maintenance
from etl_cli.dataset import emulator_catalog, rows_of_file
from etl_local.datagen import generate_csv

from .conftest import Stack

pytestmark = pytest.mark.e2e


def maintenance_function(stack: Stack) -> str:
    lam = stack.pipeline.client("lambda")
    (name,) = [
        f["FunctionName"]
        for f in lam.list_functions()["Functions"]
        if f.get("Handler") == contracts.MAINTAIN_FUNCTION[1]
    ]
    return str(name)


def invoke(stack: Stack, name: str) -> dict[str, Any]:
    resp = stack.pipeline.client("lambda").invoke(
        FunctionName=name, Payload=json.dumps({"mode": "scheduled"})
    )
    body = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, body
    return dict(body)


def test_TBL6_scheduled_maintenance_on_the_emulator_keeps_rows_and_load_history(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = stack.outputs.glue_database
    assert db
    cat = emulator_catalog(stack.emulator.endpoint, stack.outputs.region)
    # Few metadata versions, so that 4 loads show the commit deleting the older ones.
    cat.load_table(f"{db}.transactions").transaction().set_properties(
        {"write.metadata.previous-versions-max": "2"}
    ).commit_transaction()
    first_metadata = cat.load_table(f"{db}.transactions").metadata.metadata_log[0].metadata_file

    reports = {}
    for n, name in enumerate(("a.csv", "b.csv", "c.csv")):
        path = tmp_path / name
        generate_csv(path, rows=200 + 10 * n, seed=n, bad_row_share=0.0)
        info = stack.upload(path, "default", name=name)
        reports[name] = (info, stack.wait(info["file_id"]))
    # A new version of a.csv: its commit replaces a.csv's rows.
    path = tmp_path / "a2.csv"
    generate_csv(path, rows=120, seed=9, bad_row_share=0.0)
    info = stack.upload(path, "default", name="a.csv")
    reports["a2"] = (info, stack.wait(info["file_id"]))
    assert all(r.status == "SUCCEEDED" for _, r in reports.values()), reports

    loads_before = cat.load_table(f"{db}.transaction_loads").scan().to_arrow().to_pylist()
    assert len(loads_before) == 4
    replacing = next(r for r in loads_before if r["file_id"] == reports["a2"][0]["file_id"])
    assert replacing["rows_removed"] == reports["a.csv"][1].rows_valid
    metadata = stack.keys("tables/transactions/metadata/")
    assert first_metadata.split("/", 3)[3] not in metadata  # deleted by a later commit
    assert len([k for k in metadata if k.endswith(".metadata.json")]) <= 3

    bucket = stack.outputs.bucket
    old_orphan = "tables/transactions/data/file_id=gone/part-00001-2026-11-27.parquet"
    young_orphan = "tables/transactions/data/file_id=inflight/part-00001-2026-11-27.parquet"
    stack.s3.put_object(Bucket=bucket, Key=old_orphan, Body=b"from a load that failed long ago")
    time.sleep(2.5)
    stack.s3.put_object(Bucket=bucket, Key=young_orphan, Body=b"from a chunk whose Finalize is still to come")
    young_at = stack.s3.head_object(Bucket=bucket, Key=young_orphan)["LastModified"]
    snapshots_before = len(cat.load_table(f"{db}.transactions").metadata.snapshots)
    assert snapshots_before >= 5

    name = maintenance_function(stack)
    # The deployed defaults (1 day, 3 days): everything here is minutes old, nothing goes.
    untouched = invoke(stack, name)["tables"]
    assert all(t["snapshots_expired"] == 0 and t["orphans_deleted"] == 0 for t in untouched), untouched
    # Three days on (to one second before the young orphan turns 3 days old), with a one-day
    # retention keeping one snapshot: the run the schedule would make then.
    later = young_at + datetime.timedelta(seconds=maintenance.ORPHAN_AGE_SECONDS - 1)
    monkeypatch.setattr(maintenance, "_now", lambda: later)
    lam = stack.pipeline.client("lambda")
    env = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    env.update({maintenance.ENV_RETENTION_DAYS: "1", maintenance.ENV_MIN_SNAPSHOTS: "1"})
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": env})
    done = {t["table"]: t for t in invoke(stack, name)["tables"]}
    assert set(done) == set(contracts.DATASET_TABLES)
    assert done["transactions"]["snapshots_expired"] == snapshots_before - 1

    cat = emulator_catalog(stack.emulator.endpoint, stack.outputs.region)
    table = cat.load_table(f"{db}.transactions")
    assert len(table.metadata.snapshots) == 1
    keys = set(stack.keys("tables/"))
    assert old_orphan not in keys and young_orphan in keys
    # a.csv's first data files: only expired snapshots referenced them.
    assert not [k for k in keys if f"file_id={reports['a.csv'][0]['file_id']}/" in k]
    for label in ("b.csv", "c.csv", "a2"):
        info, rep = reports[label]
        assert rows_of_file(cat, db, info["file_id"]).num_rows == rep.rows_valid
    assert rows_of_file(cat, db, reports["a.csv"][0]["file_id"]).num_rows == 0
    loads_after = cat.load_table(f"{db}.transaction_loads").scan().to_arrow().to_pylist()
    assert sorted(r["commit_token"] for r in loads_after) == sorted(r["commit_token"] for r in loads_before)
