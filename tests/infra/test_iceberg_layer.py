"""DATA7: the stripped pyiceberg layer really works: imported with nothing but the layer and what
Lambda provides on sys.path, it creates a partitioned, sorted table in a Glue catalog on the
emulator, commits (append, then delete + append in one transaction) and reads back."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra import iceberg_layer_build as build

WORKLOAD = r"""
import json, os, sys
import boto3, pyarrow as pa
from pyiceberg.catalog.glue import GlueCatalog
from pyiceberg.expressions import EqualTo
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table.sorting import SortField, SortOrder
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import DateType, DecimalType, LongType, NestedField, StringType
from aws_lambda_powertools import Logger, Metrics, Tracer

Logger(service="smoke"); Metrics(namespace="smoke"); Tracer(service="smoke")
ep = os.environ["ENDPOINT"]
boto3.client("s3", endpoint_url=ep, region_name="us-east-1").create_bucket(Bucket="layer-smoke")
catalog = GlueCatalog("glue", **{"glue.endpoint": ep, "glue.region": "us-east-1", "s3.endpoint": ep,
    "s3.region": "us-east-1", "s3.access-key-id": "testing", "s3.secret-access-key": "testing"})
catalog.create_namespace("smoke", {"location": "s3://layer-smoke/tables/"})
schema = Schema(
    NestedField(1, "transaction_id", StringType(), required=False),
    NestedField(2, "transaction_date", DateType(), required=False),
    NestedField(3, "amount", DecimalType(18, 2), required=False),
    NestedField(4, "partner", StringType(), required=False),
    NestedField(5, "file_id", StringType(), required=False),
    NestedField(6, "line", LongType(), required=False),
)
table = catalog.create_table(
    "smoke.transactions", schema,
    partition_spec=PartitionSpec(PartitionField(4, 1000, IdentityTransform(), "partner")),
    sort_order=SortOrder(SortField(2, IdentityTransform())),
)
import datetime, decimal
def rows(file_id, n):
    return pa.table({
        "transaction_id": [f"T{i}" for i in range(n)],
        "transaction_date": [datetime.date(2026, 11, 27)] * n,
        "amount": pa.array([decimal.Decimal("1.50")] * n, pa.decimal128(18, 2)),
        "partner": ["acme"] * n, "file_id": [file_id] * n, "line": list(range(2, n + 2)),
    })
table.append(rows("f1", 3), snapshot_properties={"etl.file_id": "f1"})
with table.transaction() as tx:
    tx.delete(EqualTo("file_id", "f1"))
    tx.append(rows("f1", 2))
result = catalog.load_table("smoke.transactions").scan().to_arrow()
print(json.dumps({"rows": result.num_rows, "snapshots": len(table.metadata.snapshots) if False else
    len(catalog.load_table("smoke.transactions").metadata.snapshots),
    "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def provided_path(tmp_path: Path) -> Path:
    """A directory with only what Lambda provides: the runtime's boto3 family and the pandas layer."""
    target = tmp_path / "provided"
    target.mkdir()
    for name in build.PROVIDED:
        dist = importlib.metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        for top in tops:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (target / top).exists() and top != "..":
                (target / top).symlink_to(source)
    return target


@pytest.fixture(scope="module")
def host_layer() -> Path:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    layer = build.plan(version, "x86_64", platform=build.HOST_PLATFORM)
    if not (layer.directory / "manifest.json").exists():
        pytest.fail("the host copy of the pyiceberg layer is not built: run `make layer`")
    return layer.content / "python"


def test_DATA7_stripped_layer_imports_and_commits_on_the_emulator(host_layer: Path, tmp_path: Path) -> None:
    from etl_local.emulator import Emulator

    with Emulator() as emulator:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join([str(host_layer), str(provided_path(tmp_path))]),
            "ENDPOINT": emulator.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        # -S: no site-packages, so nothing stripped from the layer can be found elsewhere.
        done = subprocess.run(
            [sys.executable, "-S", "-c", WORKLOAD], env=env, capture_output=True, text=True, timeout=300
        )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rows"] == 2
    assert result["snapshots"] >= 3
    assert not set(build.STRIP_PACKAGES) & set(result["modules"])
    assert "pyiceberg" in result["modules"] and "aws_lambda_powertools" in result["modules"]


def test_DATA7_layer_holds_no_provided_package(host_layer: Path) -> None:
    """boto3/botocore, pyarrow, numpy, pandas come from the runtime and the managed layer."""
    present = {build.normalize(p.name.split("-")[0]) for p in host_layer.glob("*.dist-info")}
    assert present and not present & build.PROVIDED
    assert {"pyiceberg", "aws-lambda-powertools"} <= present
