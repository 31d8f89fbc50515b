"""DX2: one status-table layer. The operator CLI reads the table through the handlers'
StatusRepository (etl/aws/status.py) on its own session's client, never with DynamoDB calls or
a Decimal converter of its own."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from etl.aws.status import StatusRepository
from etl.stack_outputs import Outputs
from etl_cli.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]
# DynamoDB-only operation names (query/scan are also pyiceberg's: their DynamoDB forms are
# caught by the expression keywords below).
DYNAMODB_OPERATIONS = {
    "get_item",
    "put_item",
    "update_item",
    "delete_item",
    "batch_get_item",
    "batch_write_item",
    "transact_get_items",
    "transact_write_items",
}
DYNAMODB_KEYWORDS = {"KeyConditionExpression", "FilterExpression", "ExclusiveStartKey", "TableName"}
CONVERTERS = {"TypeDeserializer", "TypeSerializer", "Decimal"}


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    # The one allowed use of a DynamoDB client: handing it to StatusRepository.
    handed_over = {
        id(arg)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "StatusRepository"
        for kw in node.keywords
        for arg in ast.walk(kw.value)
    }
    found = []
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute) and node.attr in DYNAMODB_OPERATIONS:
            found.append(f"{where} .{node.attr}")
        elif isinstance(node, ast.keyword) and node.arg in DYNAMODB_KEYWORDS:
            found.append(f"{where} {node.arg}=")
        elif isinstance(node, ast.Constant) and node.value == "dynamodb" and id(node) not in handed_over:
            found.append(f"{where} a 'dynamodb' client")
        elif isinstance(node, ast.Name) and node.id in CONVERTERS:
            found.append(f"{where} {node.id}")
        elif isinstance(node, ast.ImportFrom) and node.module in ("decimal", "boto3.dynamodb.types"):
            found.append(f"{where} imports from {node.module}")
    return found


def test_DX2_the_cli_has_no_status_table_access_of_its_own() -> None:
    offences = [o for path in sorted((ROOT / "etl_cli").rglob("*.py")) for o in _offences(path)]
    assert offences == []


def test_DX2_the_check_sees_a_private_table_read(tmp_path: Path) -> None:
    # The detector itself: the shape the CLI had before (its own query + Decimal conversion).
    sample = tmp_path / "reader.py"
    sample.write_text(
        "from decimal import Decimal\n"
        "def get(session):\n"
        "    ddb = session.client('dynamodb')\n"
        "    ddb.get_item(Key={})\n"
        "    return Decimal(ddb.query(KeyConditionExpression='f = :f'))\n",
        encoding="utf-8",
    )
    assert len(_offences(sample)) == 5


def test_DX2_pipeline_reads_through_the_status_repository(etl_aws: Any) -> None:
    repo = etl_aws.repo
    repo.register_file(
        {"file_id": "f" * 32, "bucket": etl_aws.bucket, "key": "incoming/p/a.csv", "size": 10, "partner": "p"}
    )
    repo.transition_file("f" * 32, ["REGISTERED"], "PROCESSING", rows_total=7, ratio=0.25)
    repo.put_chunks("f" * 32, [{"chunk_id": "CHUNK#00001", "index": 1, "start": 0, "end": 10}])
    outputs = Outputs(bucket=etl_aws.bucket, table=etl_aws.table_name, state_machine_arn="arn:sm")
    pipe = Pipeline(boto3.session.Session(region_name="us-east-1"), outputs)

    assert isinstance(pipe.status, StatusRepository)
    item = pipe.get_file("f" * 32)
    assert item is not None
    # The repository's conversion: whole numbers are int, the rest float (never Decimal).
    assert type(item["rows_total"]) is int and item["rows_total"] == 7
    assert type(item["ratio"]) is float and item["ratio"] == 0.25
    assert [c["chunk_id"] for c in pipe.list_chunks("f" * 32)] == ["CHUNK#00001"]
    assert [f["file_id"] for f in pipe.list_files(status="processing")] == ["f" * 32]
    assert pipe.list_files(status="FAILED") == []
    assert pipe.list_files(since=datetime.now(UTC) - timedelta(hours=1))[0]["file_id"] == "f" * 32
    assert pipe.list_files(since=datetime.now(UTC) + timedelta(hours=1)) == []
