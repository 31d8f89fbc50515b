"""etl.core.manifest: deterministic manifest document and JSON."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from etl.core.manifest import build_manifest, manifest_json
from etl.core.schema import load_schema
from etl.errors import ConservationViolation

FILE = {
    "file_id": "f" * 32,
    "bucket": "b",
    "key": "incoming/acme/x.csv",
    "original_key": "incoming/acme/x.csv",
    "version_id": "v1",
    "etag": "e",
    "size": 1234,
    "partner": "acme",
    "compression": "none",
}


def _chunk(i, rows_in, valid, rejected, **kw):
    c = {
        "chunk_id": f"CHUNK#{i:05d}",
        "start": Decimal(100 * i),
        "end": Decimal(100 * i + 100),
        "first_line": Decimal(2 + 10 * i),
        "rows_in": Decimal(rows_in),
        "rows_valid": Decimal(valid),
        "rows_rejected": Decimal(rejected),
        "output_key": f"output/p-{i}.parquet",
        "output_sha256": "a" * 64,
        "output_bytes": Decimal(10),
    }
    c.update(kw)
    return c


def test_manifest_contents_and_determinism():
    schema = load_schema("default")
    chunks = [
        _chunk(2, 10, 9, 1, rejects_key="rejected/p-2.csv", rejects_sha256="b" * 64, rejects_bytes=5),
        _chunk(1, 5, 5, 0, output_sha256=None),
    ]
    sums = {"output/p-1.parquet": "c" * 64}
    d = build_manifest(FILE, chunks, schema, "arn:x", "2026-01-01T00:00:00Z", checksums=sums)
    assert d["counts"] == {
        "chunks": 2,
        "rows_total": 15,
        "rows_valid": 14,
        "rows_rejected": 1,
        "rejected_share": round(1 / 15, 6),
    }
    assert [c["index"] for c in d["chunks"]] == [1, 2]  # sorted by index
    assert d["chunks"][0]["output"] == {"key": "output/p-1.parquet", "sha256": "c" * 64, "bytes": 10}
    assert d["chunks"][0]["rejects"] is None
    assert d["chunks"][1]["rejects"]["sha256"] == "b" * 64
    assert d["schema"]["id"] == "transactions_v1" and d["schema"]["version"] == schema.version
    assert d["source"]["version_id"] == "v1" and d["source"]["size"] == 1234
    assert d["execution_arn"] == "arn:x" and d["created_at"] == "2026-01-01T00:00:00Z"
    raw = manifest_json(d)
    assert raw == manifest_json(
        build_manifest(FILE, list(reversed(chunks)), schema, "arn:x", "2026-01-01T00:00:00Z", checksums=sums)
    )
    assert raw.endswith(b"\n") and json.loads(raw) == json.loads(json.dumps(d))
    keys = list(json.loads(raw).keys())
    assert keys == sorted(keys)


def test_manifest_conservation_checked():
    with pytest.raises(ConservationViolation, match="CHUNK#00001"):
        build_manifest(FILE, [_chunk(1, 10, 8, 1)], load_schema("default"), None, "t")


def test_manifest_json_handles_decimals():
    assert json.loads(manifest_json({"a": Decimal("2"), "b": Decimal("0.5")})) == {"a": 2, "b": 0.5}
