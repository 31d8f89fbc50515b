"""OPS1/OPS3/OPS4 end to end on the emulator: the relay emulates Step Functions' status-change
events, the real rule pattern routes them to the real reconcile function."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from etl import contracts
from etl.handlers import reconcile
from etl_local import lambda_runtime, state
from etl_local.datagen import generate_csv

from .conftest import SMALL_CHUNK, Stack

pytestmark = pytest.mark.e2e


def chunk_index(event: Any) -> int | None:
    try:
        return int(event["chunk"]["index"])
    except (KeyError, TypeError, ValueError):
        return None


def alerts_within(stack: Stack, url: str, seconds: float) -> list[dict[str, Any]]:
    """Every alert delivered to ``url`` during ``seconds`` (not just the first batch)."""
    deadline = time.monotonic() + seconds
    got: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        resp = stack.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        for m in resp.get("Messages", []):
            got.append(json.loads(m["Body"]))
            stack.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        time.sleep(0.1)
    return got


def last_json(output: str) -> Any:
    """The CLI's JSON document: the handlers run in this process and log to stdout too."""
    lines = output.rstrip().splitlines()
    start = max(i for i, line in enumerate(lines) if line in ("{", "[") or line.startswith("{"))
    return json.loads("\n".join(lines[start:]))


def reconcile_calls(stack: Stack) -> list[lambda_runtime.Invocation]:
    assert stack.outputs.reconcile_function
    return lambda_runtime.STATE.calls(stack.outputs.reconcile_function)


def use_cli_on(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(state, "STATE_FILE", tmp_path / "emulator.json")
    monkeypatch.setattr(state, "STATE_DIR", tmp_path)
    state.write(
        {
            "endpoint": stack.emulator.endpoint,
            "outputs": stack.outputs.to_json(),
            "default_chunk_size_bytes": SMALL_CHUNK,
        }
    )
    from etl_cli.main import cli

    return cli


def test_OPS1_a_stopped_execution_is_reconciled_and_alerted_once(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tx.csv"
    generate_csv(path, rows=3000, seed=5, bad_row_share=0.0)
    alerts = stack.subscribe_alerts()
    # PlanChunks is slow: the operator stops the execution while it runs. No Catch runs on a
    # stopped execution; only the status-change event tells anyone. (Stopped inside the Map,
    # moto 5.2's interpreter crashes with States.Runtime and ends the execution FAILED instead
    # of ABORTED; reconcile handles that too, but this test wants the ABORTED path.)
    lambda_runtime.STATE.add_fault(
        lambda_runtime.Fault(stack.outputs.functions["PlanChunks"], kind="delay", seconds=3.0)
    )
    info = stack.upload(path, "default")
    stack.wait_for(lambda: stack.calls("PlanChunks"), what="PlanChunks running")
    (execution,) = stack.executions()
    stack.sfn.stop_execution(
        executionArn=execution["executionArn"], error="OperatorStop", cause="stopped by e2e"
    )

    def failed() -> dict[str, Any] | None:
        item = stack.pipeline.get_file(info["file_id"])
        return item if item and item.get("status") == "FAILED" else None

    item = stack.wait_for(failed, timeout=60, what="the file reconciled to FAILED")
    # moto 5.2 does not keep StopExecution's error/cause in DescribeExecution (AWS puts them in
    # the event's detail), so the emulated event carries none: reconcile names the ending.
    assert item["error_type"] == "ExecutionAborted" and "ended ABORTED" in item["error"]
    fid = info["file_id"]
    assert stack.keys(contracts.INCOMING_PREFIX) == []
    assert stack.keys(f"{contracts.FAILED_PREFIX}default/{fid}/") == [
        f"{contracts.FAILED_PREFIX}default/{fid}/tx.csv"
    ]
    announced = stack.emulator.relay.announced  # type: ignore[union-attr]
    assert [d["status"] for d in announced] == ["ABORTED"]
    assert len(reconcile_calls(stack)) == 1
    got = alerts_within(stack, alerts, 3.0)
    assert len(got) == 1, got  # exactly one alert
    assert got[0]["Subject"].startswith("ETL FAILED default/tx.csv")
    assert f"etl reprocess {fid}" in got[0]["Message"]
    assert got[0]["MessageAttributes"]["error_type"]["Value"] == "ExecutionAborted"
    time.sleep(3.5)  # let the slow invocation finish before reprocessing
    stack.wait_all_executions_stopped(1)
    assert stack.pipeline.get_file(fid)["status"] == "FAILED"  # nothing ran on after the stop
    assert stack.calls("ProcessChunk") == []

    # The reconciled file is reprocessed like any FAILED file.
    lambda_runtime.STATE.faults.clear()
    cli = use_cli_on(stack, tmp_path, monkeypatch)
    result = CliRunner().invoke(cli, ["--local", "reprocess", fid, "--json", "--timeout", "120"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["status"] == "SUCCEEDED"


def test_OPS3_a_workflow_failure_alerts_once_with_attributes(stack: Stack, tmp_path: Path) -> None:
    """MarkFailed alerts; the FAILED execution's status change reaches reconcile, which finds the
    file terminal and stays quiet: one failure, one alert."""
    path = tmp_path / "tx.csv"
    generate_csv(path, rows=300, seed=5)
    lines = path.read_bytes().split(b"\n", 1)
    path.write_bytes(lines[0].replace(b"currency", b"ccy") + b"\n" + lines[1])
    alerts = stack.subscribe_alerts()
    info = stack.upload(path, "default")
    rep = stack.wait(info["file_id"])
    assert rep.status == "FAILED"
    stack.wait_for(lambda: reconcile_calls(stack), timeout=30, what="reconcile")
    got = alerts_within(stack, alerts, 3.0)
    assert len(got) == 1, got
    assert got[0]["Subject"].startswith("ETL FAILED default/tx.csv") and "SchemaMismatch" in got[0]["Subject"]
    attributes = {k: v["Value"] for k, v in got[0]["MessageAttributes"].items()}
    assert attributes == {
        "file_id": info["file_id"],
        "partner": "default",
        "status": "FAILED",
        "error_type": "SchemaMismatch",
    }


def test_OPS4_a_result_that_could_not_be_sent_is_resent_by_etl_notify(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tx.csv"
    stats = generate_csv(path, rows=500, seed=8)
    alerts = stack.subscribe_alerts()
    url = stack.outputs.results_queue_url
    assert url
    attributes = stack.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    stack.sqs.delete_queue(QueueUrl=url)  # the send fails
    info = stack.upload(path, "default")
    fid = info["file_id"]

    def unsent() -> dict[str, Any] | None:
        item = stack.pipeline.get_file(fid)
        return item if item and item.get("notified") is False and item.get("notify_error") else None

    item = stack.wait_for(unsent, timeout=60, what="notified=false")
    (execution,) = stack.wait_all_executions_stopped(1)
    assert execution["status"] == "FAILED"  # visible, not swallowed ...
    assert item["status"] == "SUCCEEDED" and item["rows_total"] == stats.rows  # ... and the file stands
    # The status change reached reconcile, whose re-send failed too: one "not sent" alert.
    stack.wait_for(lambda: reconcile_calls(stack), timeout=30, what="reconcile")
    got = alerts_within(stack, alerts, 3.0)
    assert [a["Subject"].split(" (")[0] for a in got] == ["ETL RESULT NOT SENT default"], got

    # The queue is back; the operator re-sends.
    stack.sqs.create_queue(
        QueueName=url.rsplit("/", 1)[-1],
        Attributes={k: attributes[k] for k in ("FifoQueue", "ContentBasedDeduplication")},
    )
    cli = use_cli_on(stack, tmp_path, monkeypatch)
    result = CliRunner().invoke(cli, ["--local", "notify", fid, "--json"])
    assert result.exit_code == 0, result.output
    answer = last_json(result.output)
    assert answer["sent"] is True and answer["dedup_id"].startswith(f"{fid}#")
    messages = stack.receive(url)
    assert len(messages) == 1
    body = json.loads(messages[0]["Body"])
    assert body["file_id"] == fid and body["rows_total"] == stats.rows
    assert stack.pipeline.get_file(fid)["notified"] is True
    # A second `etl notify` does not send again (already notified).
    again = CliRunner().invoke(cli, ["--local", "notify", fid, "--json"])
    assert again.exit_code == 0 and last_json(again.output)["sent"] is False
    assert stack.receive(url, wait=1.0) == []


def test_OPS3_etl_sweep_runs_freshness_on_the_emulator(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`etl sweep` invokes the deployed reconcile function in sweep mode (schedules do not fire
    locally): nothing is stale, and acme_bank (due by 06:00Z, nothing ever received) is overdue:
    one alert, not repeated by the next sweep."""
    alerts = stack.subscribe_alerts()
    cli = use_cli_on(stack, tmp_path, monkeypatch)
    result = CliRunner().invoke(cli, ["--local", "sweep", "--json"])
    assert result.exit_code == 0, result.output
    answer = last_json(result.output)
    assert answer["stale"] == [] and answer["resent"] == [] and answer["missing"] == ["acme_bank"]
    got = alerts_within(stack, alerts, 2.0)
    assert [a["Subject"].split(":")[0] for a in got] == ["ETL MISSING acme_bank"]
    assert CliRunner().invoke(cli, ["--local", "sweep", "--json"]).exit_code == 0
    assert alerts_within(stack, alerts, 1.0) == []


def test_OPS1_a_file_whose_ending_was_lost_is_failed_by_the_sweep_once(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The status-change event of a stopped execution reaches reconcile, which fails (on AWS:
    two async retries, then its DLQ): the file stays PLANNED/PROCESSING with nothing running. The
    scheduled sweep finds it once it is older than the stale bound (-c staleAfterMinutes, the
    function's STALE_AFTER_SECONDS; the emulator cannot wait the default 30 minutes, so the test
    sets it to 2 s on the deployed function), fails it with StaleFile, moves the source to failed/
    and alerts once; the next sweep finds nothing."""
    path = tmp_path / "tx.csv"
    generate_csv(path, rows=3000, seed=6, bad_row_share=0.0)
    alerts = stack.subscribe_alerts()
    fn = stack.outputs.reconcile_function
    assert fn
    lost = lambda_runtime.STATE.add_fault(
        lambda_runtime.Fault(
            fn, when=lambda event: event.get("detail-type") == reconcile.STATUS_CHANGE, times=100
        )
    )
    lambda_runtime.STATE.add_fault(
        lambda_runtime.Fault(stack.outputs.functions["PlanChunks"], kind="delay", seconds=3.0)
    )
    info = stack.upload(path, "default")
    fid = info["file_id"]
    stack.wait_for(lambda: stack.calls("PlanChunks"), what="PlanChunks running")
    (execution,) = stack.executions()
    stack.sfn.stop_execution(executionArn=execution["executionArn"], error="OperatorStop", cause="e2e")
    stack.wait_for(lambda: lost.fired >= 1, timeout=30, what="the lost status-change event")
    stack.wait_all_executions_stopped(1)
    time.sleep(3.5)  # the delayed PlanChunks invocation finishes (its execution is gone)
    stuck = stack.pipeline.get_file(fid)
    assert stuck["status"] not in ("FAILED", "SUCCEEDED"), stuck
    cli = use_cli_on(stack, tmp_path, monkeypatch)

    def sweep() -> Any:
        result = CliRunner().invoke(cli, ["--local", "sweep", "--json"])
        assert result.exit_code == 0, result.output
        return last_json(result.output)

    # Within the default bound (30 minutes) the sweep leaves it alone.
    assert sweep()["stale"] == []
    assert stack.pipeline.get_file(fid)["status"] == stuck["status"]

    lam = stack.pipeline.client("lambda")
    env = lam.get_function_configuration(FunctionName=fn)["Environment"]["Variables"]
    assert env["STALE_AFTER_SECONDS"] == str(contracts.STALE_AFTER_SECONDS)  # as deployed
    lam.update_function_configuration(
        FunctionName=fn, Environment={"Variables": {**env, "STALE_AFTER_SECONDS": "2"}}
    )
    time.sleep(2.5)
    answer = sweep()
    assert answer["stale"] == answer["reconciled"] == [fid]
    item = stack.pipeline.get_file(fid)
    assert item["status"] == "FAILED" and item["error_type"] == "StaleFile"
    assert "ABORTED" in item["error"]
    assert stack.keys(contracts.INCOMING_PREFIX) == []
    assert stack.keys(f"{contracts.FAILED_PREFIX}default/{fid}/") == [
        f"{contracts.FAILED_PREFIX}default/{fid}/tx.csv"
    ]
    got = alerts_within(stack, alerts, 2.0)
    stale_alerts = [a for a in got if a["Subject"].startswith("ETL FAILED default/tx.csv")]
    assert len(stale_alerts) == 1, got
    assert stale_alerts[0]["MessageAttributes"]["error_type"]["Value"] == "StaleFile"
    assert f"etl reprocess {fid}" in stale_alerts[0]["Message"]
    assert "reconcile sweep" in stale_alerts[0]["Message"]
    # The next sweep: nothing stale, no second alert for the file.
    assert sweep()["stale"] == []
    again = alerts_within(stack, alerts, 1.0)
    assert not [a for a in again if "tx.csv" in a["Subject"]], again
