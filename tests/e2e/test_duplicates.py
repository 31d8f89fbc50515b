"""DATA4 on the emulator: the real state machine (IsDuplicateContent choice), real handlers."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from etl import contracts
from etl_cli.main import cli
from etl_local.datagen import generate_csv

from .conftest import SMALL_CHUNK, Stack
from .test_pipeline import read_parquet_rows

pytestmark = pytest.mark.e2e


def _record_lines(text: str) -> list[int]:
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    lines, start = [], reader.line_num + 1
    for _ in reader:
        lines.append(start)
        start = reader.line_num + 1
    return lines


def _cli_stack(stack: Stack) -> list[str]:
    """A CloudFormation stack whose outputs name the deployed pipeline (as in test_cli_stack)."""
    o = stack.outputs
    outputs = {
        "BucketName": o.bucket,
        "TableName": o.table,
        "StateMachineArn": o.state_machine_arn,
        "ResultQueueUrl": o.results_queue_url,
        "AlertTopicArn": o.alerts_topic_arn,
    }
    template = {
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "dup-marker"}}},
        "Outputs": {k: {"Value": v} for k, v in outputs.items()},
    }
    stack.pipeline.client("cloudformation").create_stack(
        StackName="EtlPipeline-dup", TemplateBody=json.dumps(template)
    )
    return ["--stack", "EtlPipeline-dup", "--region", "us-east-1", "--endpoint", stack.emulator.endpoint]


def _results(stack: Stack) -> list[dict[str, Any]]:
    """Receive and delete (a FIFO group stays locked while a message of it is in flight)."""
    url = stack.outputs.results_queue_url
    messages = stack.receive(url)
    for m in messages:
        stack.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return [json.loads(m["Body"]) for m in messages]


def test_DATA4a_identical_copy_ends_DUPLICATE_CONTENT_and_force_loads_it(
    stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "day.csv"
    stats = generate_csv(path, rows=2500, seed=11, bad_row_share=0.0)
    assert path.stat().st_size > 2 * SMALL_CHUNK
    first = stack.upload(path, "default", name="2026-11-27.csv")
    rep1 = stack.wait(first["file_id"])
    assert rep1.status == "SUCCEEDED", rep1.error
    assert [b["status"] for b in _results(stack)] == ["SUCCEEDED"]

    # the copy goes through the operator CLI (upload --wait, list, status, reprocess [--force])
    cli_base = _cli_stack(stack)
    runner = CliRunner()
    resent = tmp_path / "2026-11-27-resent.csv"
    resent.write_bytes(path.read_bytes())
    up = runner.invoke(cli, [*cli_base, "upload", str(resent), "--partner", "default", "--wait", "--json"])
    assert up.exit_code == 0, up.output[-2000:]  # DUPLICATE_CONTENT is not a failure
    shown = json.loads(up.output.strip().splitlines()[-1])
    copy = {"file_id": shown["file_id"]}
    assert shown["status"] == "DUPLICATE_CONTENT" and shown["duplicate_of"] == first["file_id"]
    rep2 = stack.wait(copy["file_id"])
    assert rep2.status == "DUPLICATE_CONTENT", rep2.error
    assert rep2.execution_status == "SUCCEEDED" and rep2.duplicate_of == first["file_id"]
    listed = runner.invoke(cli, [*cli_base, "list", "--status", "DUPLICATE_CONTENT", "--json"])
    assert [f["file_id"] for f in json.loads(listed.output)] == [copy["file_id"]]
    status = json.loads(runner.invoke(cli, [*cli_base, "status", copy["file_id"], "--json"]).output)
    assert (status["status"], status["duplicate_of"]) == ("DUPLICATE_CONTENT", first["file_id"])
    human = runner.invoke(cli, [*cli_base, "status", copy["file_id"]])
    assert human.exit_code == 0 and "DUPLICATE_CONTENT" in human.output and "duplicate of" in human.output
    messages = _results(stack)
    assert len(messages) == 1
    assert messages[0]["status"] == "DUPLICATE_CONTENT"
    assert messages[0]["file_id"] == copy["file_id"] and messages[0]["duplicate_of"] == first["file_id"]
    assert stack.calls("ProcessChunk") and all(
        c.event["file"]["file_id"] == first["file_id"] for c in stack.calls("ProcessChunk")
    )
    # the published rows are the first file's only
    rows = read_parquet_rows(stack, contracts.OUTPUT_PREFIX)
    assert len(rows) == stats.rows
    assert (
        stack.keys(f"{contracts.OUTPUT_PREFIX}transactions/partner=default/file_id={copy['file_id']}/") == []
    )
    assert stack.keys(f"{contracts.PROCESSED_PREFIX}default/{copy['file_id']}/") == [
        f"{contracts.PROCESSED_PREFIX}default/{copy['file_id']}/2026-11-27-resent.csv"
    ]

    # `etl reprocess` refuses without --force; `etl reprocess --force` loads it anyway
    refused = runner.invoke(cli, [*cli_base, "reprocess", copy["file_id"]])
    assert refused.exit_code == 2 and "--force" in refused.output
    forced = runner.invoke(cli, [*cli_base, "reprocess", "--force", copy["file_id"], "--json"])
    assert forced.exit_code == 0, forced.output[-2000:]
    rep3 = stack.pipeline.report(copy["file_id"])
    assert rep3.status == "SUCCEEDED", rep3.error
    assert rep3.rows_valid == stats.rows
    assert len(read_parquet_rows(stack, contracts.OUTPUT_PREFIX)) == 2 * stats.rows
    assert [b["status"] for b in _results(stack)] == ["SUCCEEDED"]


def test_DATA4c_repeated_id_in_a_later_chunk_rejected_naming_the_first_line(
    stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "dups.csv"
    stats = generate_csv(path, rows=2500, seed=12, bad_row_share=0.0)
    text = path.read_text(encoding="utf-8")
    records = list(csv.DictReader(io.StringIO(text, newline="")))
    lines = _record_lines(text)
    first_id, late_id = records[1]["transaction_id"], records[2200]["transaction_id"]
    path.write_text(text.replace(f"\n{late_id},", f"\n{first_id},", 1), encoding="utf-8")
    info = stack.upload(path, "default")
    rep = stack.wait(info["file_id"])
    assert rep.status == "SUCCEEDED", rep.error
    assert (rep.rows_total, rep.rows_valid, rep.rows_rejected) == (stats.rows, stats.rows - 1, 1)
    assert rep.chunks is not None and rep.chunks >= 3
    prefix = f"{contracts.REJECTED_PREFIX}partner=default/file_id={info['file_id']}/"
    rejected = []
    for key in stack.keys(prefix):
        body = stack.s3.get_object(Bucket=stack.outputs.bucket, Key=key)["Body"].read().decode()
        rejected += list(csv.DictReader(io.StringIO(body, newline="")))
    assert len(rejected) == 1
    assert int(rejected[0]["line"]) == lines[2200] and rejected[0]["column"] == "transaction_id"
    assert f"line {lines[1]}" in rejected[0]["reason"] and "duplicate" in rejected[0]["reason"]
    ids = [r["transaction_id"] for r in read_parquet_rows(stack, contracts.OUTPUT_PREFIX)]
    assert ids.count(first_id) == 1 and late_id not in ids
