"""DR4 end to end on the emulator: two regions (us-east-1 primary, eu-west-1 warm standby) on one
moto server, S3 replication emulated (etl_local/replication.py, version ids kept), the role
switch flipped by the real CLI (`etl --local dr promote|demote`).

upload to the primary -> rows in both regions' tables; primary outage; promote eu-west-1;
upload via the partner address -> processed and announced by eu-west-1 only; files the primary
announced are not announced again; demote; every file announced exactly once across both
result queues, none lost.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from etl_cli.dataset import emulator_catalog, rows_of_file
from etl_cli.main import cli
from etl_cli.pipeline import Pipeline
from etl_local import harness, state
from etl_local.datagen import generate_csv
from etl_local.deploy import set_outage

from .conftest import SMALL_CHUNK, Stack

pytestmark = pytest.mark.e2e
WAIT = 120.0


def _csv(tmp_path: Path, name: str, rows: int, seed: int) -> Path:
    path = tmp_path / name
    generate_csv(path, rows=rows, seed=seed, bad_row_share=0.0)
    return path


def _drain_queue(pipe: Pipeline) -> list[dict[str, Any]]:
    sqs = pipe.client("sqs")
    got: list[dict[str, Any]] = []
    for _ in range(5):
        resp = sqs.receive_message(QueueUrl=pipe.outputs.results_queue_url, MaxNumberOfMessages=10)
        for m in resp.get("Messages", []):
            got.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=pipe.outputs.results_queue_url, ReceiptHandle=m["ReceiptHandle"])
        if not resp.get("Messages"):
            break
    return got


def _wait(predicate: Any, what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _status(pipe: Pipeline, file_id: str) -> str | None:
    item = pipe.get_file(file_id)
    return None if item is None else str(item.get("status"))


def _table_rows(pipe: Pipeline, file_id: str) -> int:
    catalog = emulator_catalog(str(pipe.outputs.endpoint), pipe.outputs.region)
    return int(rows_of_file(catalog, str(pipe.outputs.glue_database), file_id).num_rows)


def _etl(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["--local", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_DR4_failover_and_failback_lose_nothing_and_announce_once(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CLI finds this in-process emulator through a state file of this test only.
    monkeypatch.setattr(state, "STATE_FILE", tmp_path / "emulator.json")
    state.write({"endpoint": stack.emulator.endpoint, "outputs": stack.outputs.to_json()})
    session = stack.pipeline.session
    dr_outputs = harness.ensure_dr_deployed(stack.emulator.endpoint, stack.outputs, session=session)
    primary, dr = stack.pipeline, Pipeline(session, dr_outputs)
    assert dr.outputs.region == "eu-west-1" and dr.outputs.bucket != primary.outputs.bucket
    assert dr.outputs.chunk_size_bytes == SMALL_CHUNK

    # 1. Before the outage: the primary processes and announces; the standby processes the
    #    replica (same key + version id -> same file_id) into its own table, announces nothing.
    before = primary.upload(_csv(tmp_path, "before.csv", 600, 1), "default")
    fid = before["file_id"]
    assert primary.wait_for_file(fid, timeout=WAIT).status == "SUCCEEDED"
    _wait(lambda: _status(dr, fid) == "SUCCEEDED", "the standby to process the replica")
    assert _table_rows(primary, fid) == _table_rows(dr, fid) == 600
    standby_item = dr.get_file(fid)
    assert (
        standby_item["announce_suppressed"]["region_role"] == "standby" and standby_item["notified"] is False
    )
    announced = {"primary": _drain_queue(primary), "dr": _drain_queue(dr)}
    assert [m["file_id"] for m in announced["primary"]] == [fid] and announced["dr"] == []
    _wait(
        lambda: (
            dr.client("s3")
            .list_objects_v2(Bucket=dr.outputs.bucket, Prefix=f"announced/default/{fid}")
            .get("KeyCount")
        ),
        "the ledger marker to replicate",
    )

    # 2. The primary's region goes down (no events, no replication), then failover.
    set_outage(session, stack.emulator.endpoint, ["us-east-1"])
    started = time.monotonic()
    report = _etl("dr", "promote", "--region", "eu-west-1")
    print(f"DR4 emulator: etl dr promote took {time.monotonic() - started:.1f} s")
    assert report["active"] == "eu-west-1" and "eu-west-1: role -> active" in report["changes"]
    # The file the primary announced is in the ledger: not announced again.
    assert report["drain"]["resent"] == [] and report["drain"]["in_ledger"] == [fid]
    again = _etl("dr", "promote", "--region", "eu-west-1")
    assert again["changes"] == [] and again["drain"]["resent"] == []  # idempotent

    # 3. Uploads through the partner address land in the active region and are announced there.
    partner = Pipeline(session, harness.partner_outputs(session, [primary.outputs, dr.outputs]))
    assert partner.outputs.region == "eu-west-1"
    during = partner.upload(_csv(tmp_path, "during.csv", 500, 2), "default")
    fid2 = during["file_id"]
    uploaded = time.monotonic()
    assert dr.wait_for_file(fid2, timeout=WAIT).status == "SUCCEEDED"
    took = time.monotonic() - uploaded
    print(f"DR4 emulator: upload via the partner address -> SUCCEEDED in eu-west-1: {took:.1f} s")
    assert _table_rows(dr, fid2) == 500
    announced["dr"] += _wait(lambda: _drain_queue(dr), "eu-west-1's result message")
    assert [m["file_id"] for m in announced["dr"]] == [fid2]
    assert _drain_queue(primary) == [] and primary.get_file(fid2) is None  # the primary is down

    # 4. The primary returns and fails back: it catches up by replication; nothing is doubled.
    set_outage(session, stack.emulator.endpoint, [])
    back = _etl("dr", "demote")
    assert back["active"] == "us-east-1"
    time.sleep(3.0)  # replication backlog and any execution it starts
    _wait(
        lambda: all(
            e["status"] != "RUNNING"
            for e in primary.client("stepfunctions").list_executions(
                stateMachineArn=primary.outputs.state_machine_arn
            )["executions"]
        ),
        "the primary's executions",
    )
    announced["primary"] += _drain_queue(primary)
    announced["dr"] += _drain_queue(dr)
    per_file: dict[str, int] = {}
    for m in announced["primary"] + announced["dr"]:
        per_file[m["file_id"]] = per_file.get(m["file_id"], 0) + 1
    assert per_file == {fid: 1, fid2: 1}, announced  # every file exactly once, across regions
    assert _status(primary, fid) == "SUCCEEDED" and _status(dr, fid2) == "SUCCEEDED"  # none lost
    assert stack.emulator.replication is not None and not stack.emulator.replication.errors
