"""The CLI's AWS code path: outputs found by stack name (describe_stacks), same operations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from etl_cli.main import cli
from etl_local.datagen import generate_csv

from .conftest import Stack

pytestmark = pytest.mark.e2e


def test_cli_finds_the_pipeline_by_stack_outputs(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "daily.csv"
    generate_csv(path, rows=800, seed=4, bad_row_share=0.0, schema="acme_bank")
    o = stack.outputs
    cfn = stack.pipeline.client("cloudformation")
    outputs = {
        "BucketName": o.bucket,
        "TableName": o.table,
        "StateMachineArn": o.state_machine_arn,
        "ResultQueueUrl": o.results_queue_url,
        "AlertTopicArn": o.alerts_topic_arn,
    }
    template = {
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "cli-stack-marker"}}},
        "Outputs": {k: {"Value": v} for k, v in outputs.items()},
    }
    cfn.create_stack(StackName="EtlPipeline-clitest", TemplateBody=json.dumps(template))
    base = ["--stack", "EtlPipeline-clitest", "--region", "us-east-1", "--endpoint", stack.emulator.endpoint]
    runner = CliRunner()

    up = runner.invoke(cli, [*base, "upload", str(path), "--partner", "acme_bank", "--wait", "--json"])
    assert up.exit_code == 0, up.output[-2000:]
    report = json.loads(up.output.strip().splitlines()[-1])
    assert report["status"] == "SUCCEEDED" and report["rows_total"] == 800

    listed = runner.invoke(cli, [*base, "list", "--status", "SUCCEEDED", "--json"])
    assert listed.exit_code == 0, listed.output
    files = json.loads(listed.output)
    assert [f["file_id"] for f in files] == [report["file_id"]]

    by_key = runner.invoke(cli, [*base, "status", "incoming/acme_bank/daily.csv", "--json"])
    assert by_key.exit_code == 0, by_key.output
    assert json.loads(by_key.output)["file_id"] == report["file_id"]

    dest = tmp_path / "results"
    copied = runner.invoke(cli, [*base, "download", report["file_id"], "--to", str(dest)])
    assert copied.exit_code == 0, copied.output
    parts = list(dest.glob("output/**/*.parquet"))
    assert parts and (dest / "manifests" / "acme_bank" / f"{report['file_id']}.json").is_file()

    refused = runner.invoke(cli, [*base, "reprocess", report["file_id"]])
    assert refused.exit_code == 2
    assert "already SUCCEEDED" in refused.output
