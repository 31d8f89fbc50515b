"""etl.aws.s3 and etl.aws.clients against moto (and botocore's Stubber for failures)."""

from __future__ import annotations

import os
import threading
from unittest import mock

import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber

from etl.aws import clients, s3
from etl.errors import PermanentError, TransientError

DATA = bytes(range(256)) * 40 + b"tail"  # 10244 bytes, every offset distinguishable


def test_clients_are_created_once_and_thread_safe(etl_aws):
    seen = []

    def grab():
        seen.append(clients.s3())

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in seen}) == 1
    assert clients.s3().meta.config.max_pool_connections >= 16
    assert clients.s3().meta.config.retries["mode"] == "standard"
    clients.reset_clients()
    assert clients.s3() is not seen[0]


def test_clients_honour_aws_endpoint_url(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5999")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    clients.reset_clients()
    try:
        assert clients.s3().meta.endpoint_url == "http://127.0.0.1:5999"
        assert clients.dynamodb().meta.endpoint_url == "http://127.0.0.1:5999"
        # Path-style addressing against an emulator (no <bucket>.localhost DNS needed).
        assert clients.s3().meta.config.s3["addressing_style"] == "path"
    finally:
        clients.reset_clients()
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert "amazonaws.com" in clients.s3().meta.endpoint_url
    clients.reset_clients()


def test_read_range_is_exact_and_end_exclusive(etl_aws):
    etl_aws.put("incoming/a.bin", DATA)
    assert s3.read_range(etl_aws.bucket, "incoming/a.bin", 0, 10) == DATA[:10]
    assert s3.read_range(etl_aws.bucket, "incoming/a.bin", 255, 257) == DATA[255:257]
    assert s3.read_range(etl_aws.bucket, "incoming/a.bin", 10240, 10244) == b"tail"
    assert s3.read_range(etl_aws.bucket, "incoming/a.bin", 7, 7) == b""


def test_read_range_past_the_end_is_a_permanent_error(etl_aws):
    etl_aws.put("incoming/a.bin", DATA)
    with pytest.raises(s3.SourceChanged):
        s3.read_range(etl_aws.bucket, "incoming/a.bin", 10000, 20000)


def test_read_range_by_version_reads_that_version(etl_aws):
    v1 = etl_aws.put("incoming/a.bin", b"first version")["VersionId"]
    etl_aws.put("incoming/a.bin", b"SECOND VERSION")
    assert s3.read_range(etl_aws.bucket, "incoming/a.bin", 0, 5, version_id=v1) == b"first"


def test_missing_source_is_permanent(etl_aws):
    with pytest.raises(s3.SourceMissing, match="does not exist") as info:
        s3.read_range(etl_aws.bucket, "incoming/nope.csv", 0, 10)
    assert isinstance(info.value, PermanentError)
    with pytest.raises(s3.SourceMissing):
        s3.head(etl_aws.bucket, "incoming/nope.csv")
    assert s3.exists(etl_aws.bucket, "incoming/nope.csv") is False


def test_head_reports_size_version_etag(etl_aws):
    resp = etl_aws.put("incoming/a.bin", DATA)
    info = s3.head(etl_aws.bucket, "incoming/a.bin")
    assert info.size == len(DATA)
    assert info.version_id == resp["VersionId"]
    assert info.etag == resp["ETag"].strip('"')


@pytest.mark.parametrize("block_size,workers", [(1000, 4), (1, 3), (4096, 1), (20000, 8), (10244, 2)])
def test_iter_blocks_in_order_each_byte_once(etl_aws, block_size, workers):
    etl_aws.put("incoming/a.bin", DATA[:3000] if block_size == 1 else DATA)
    size = 3000 if block_size == 1 else len(DATA)
    calls = []
    real = s3.read_range

    def spy(bucket, key, start, end, version_id=None):
        calls.append((start, end))
        return real(bucket, key, start, end, version_id)

    with mock.patch.object(s3, "read_range", side_effect=spy):
        blocks = list(s3.iter_blocks(etl_aws.bucket, "incoming/a.bin", size, block_size, workers))
    assert b"".join(blocks) == DATA[:size]
    assert all(len(b) == block_size for b in blocks[:-1])
    # Each byte requested exactly once: the requested ranges tile [0, size).
    assert sorted(calls) == [(s, min(s + block_size, size)) for s in range(0, size, block_size)]


def test_iter_blocks_fetches_in_parallel_with_a_bounded_window(etl_aws):
    etl_aws.put("incoming/a.bin", DATA)
    lock = threading.Lock()
    state = {"now": 0, "max": 0}
    real = s3.read_range
    gate = threading.Barrier(3, timeout=5)  # proves 3 GETs are in flight at the same time

    def slow(bucket, key, start, end, version_id=None):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        if start < 3000:
            gate.wait()
        try:
            return real(bucket, key, start, end, version_id)
        finally:
            with lock:
                state["now"] -= 1

    with mock.patch.object(s3, "read_range", side_effect=slow):
        out = b"".join(s3.iter_blocks(etl_aws.bucket, "incoming/a.bin", len(DATA), 1000, workers=3))
    assert out == DATA
    assert state["max"] == 3


def test_iter_blocks_stops_early_without_leaking(etl_aws):
    etl_aws.put("incoming/a.bin", DATA)
    gen = s3.iter_blocks(etl_aws.bucket, "incoming/a.bin", len(DATA), 100, workers=4)
    assert next(gen) == DATA[:100]
    gen.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("s3-block")]


def test_iter_blocks_empty_object_yields_nothing(etl_aws):
    assert list(s3.iter_blocks(etl_aws.bucket, "incoming/empty.csv", 0)) == []


def test_put_and_get_bytes_with_content_type_and_metadata(etl_aws):
    out = s3.put_bytes(etl_aws.bucket, "manifests/p/x.json", b"{}", "application/json", {"file-id": "x"})
    assert out["version_id"]
    assert out["etag"]
    head = etl_aws.s3.head_object(Bucket=etl_aws.bucket, Key="manifests/p/x.json")
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {"file-id": "x"}
    assert s3.get_bytes(etl_aws.bucket, "manifests/p/x.json") == b"{}"


def test_move_object_moves_exactly_that_version(etl_aws):
    v1 = etl_aws.put("incoming/p/f.csv", b"v1 bytes")["VersionId"]
    etl_aws.put("incoming/p/f.csv", b"v2 bytes (a newer upload)")
    out = s3.move_object(etl_aws.bucket, "incoming/p/f.csv", "processed/p/id/f.csv", version_id=v1)
    assert out["moved"] is True
    assert etl_aws.get("processed/p/id/f.csv") == b"v1 bytes"
    # The newer upload stays current (no delete marker over it); v1 is kept, noncurrent (DR5).
    assert etl_aws.get("incoming/p/f.csv") == b"v2 bytes (a newer upload)"
    versions = etl_aws.s3.list_object_versions(Bucket=etl_aws.bucket, Prefix="incoming/")
    assert v1 in [v["VersionId"] for v in versions["Versions"]]
    assert not versions.get("DeleteMarkers")


def test_dr5_move_object_leaves_a_delete_marker_and_keeps_the_version(etl_aws):
    v1 = etl_aws.put("incoming/p/f.csv", b"v1 bytes")["VersionId"]
    out = s3.move_object(etl_aws.bucket, "incoming/p/f.csv", "processed/p/id/f.csv", version_id=v1)
    assert out["moved"] is True
    current_keys = etl_aws.keys()
    assert "incoming/p/f.csv" not in current_keys  # hidden: the current is a delete marker
    versions = etl_aws.s3.list_object_versions(Bucket=etl_aws.bucket, Prefix="incoming/")
    assert [v["VersionId"] for v in versions["Versions"]] == [v1]  # never deleted
    assert [(m["Key"], m["IsLatest"]) for m in versions["DeleteMarkers"]] == [("incoming/p/f.csv", True)]
    body = etl_aws.s3.get_object(Bucket=etl_aws.bucket, Key="incoming/p/f.csv", VersionId=v1)["Body"]
    assert body.read() == b"v1 bytes"
    # A retry (the step ran again) adds neither a second copy nor a second marker.
    again = s3.move_object(etl_aws.bucket, "incoming/p/f.csv", "processed/p/id/f.csv", version_id=v1)
    assert again["moved"] is False
    versions = etl_aws.s3.list_object_versions(Bucket=etl_aws.bucket, Prefix="")
    assert len(versions["DeleteMarkers"]) == 1
    assert [v["Key"] for v in versions["Versions"]].count("processed/p/id/f.csv") == 1


def test_move_object_is_idempotent(etl_aws):
    etl_aws.put("incoming/p/f.csv", b"bytes")
    first = s3.move_object(etl_aws.bucket, "incoming/p/f.csv", "failed/p/id/f.csv")
    again = s3.move_object(etl_aws.bucket, "incoming/p/f.csv", "failed/p/id/f.csv")
    assert first["moved"] is True and again["moved"] is False
    assert etl_aws.keys() == ["failed/p/id/f.csv"]
    with pytest.raises(s3.SourceMissing, match="neither exists"):
        s3.move_object(etl_aws.bucket, "incoming/p/g.csv", "failed/p/id/g.csv")


def test_move_object_onto_itself_keeps_the_object(etl_aws):
    etl_aws.put("failed/p/id/f.csv", b"bytes")
    out = s3.move_object(etl_aws.bucket, "failed/p/id/f.csv", "failed/p/id/f.csv")
    assert out["moved"] is False
    assert etl_aws.get("failed/p/id/f.csv") == b"bytes"


def test_move_object_uses_managed_copy_above_5_gib(etl_aws):
    etl_aws.put("incoming/p/big.csv", b"pretend this is 6 GiB")
    big = s3.ObjectInfo(size=6 * 1024**3, version_id=None, etag="x")
    real_head = s3.head

    def fake_head(bucket, key, version_id=None):
        return big if key == "incoming/p/big.csv" else real_head(bucket, key, version_id)

    client = clients.s3()
    # (The managed copy HEADs the real, small object itself and then picks copy_object: fine.)
    with (
        mock.patch.object(s3, "head", side_effect=fake_head),
        mock.patch.object(client, "copy", wraps=client.copy) as managed,
    ):
        s3.move_object(etl_aws.bucket, "incoming/p/big.csv", "processed/p/id/big.csv")
    assert managed.call_count == 1
    assert etl_aws.get("processed/p/id/big.csv") == b"pretend this is 6 GiB"


def test_delete_prefix_refuses_dangerous_prefixes(etl_aws):
    for k in ("scratch/f/chunk-00001.csv", "scratch/f/chunk-00002.csv", "scratch/g/chunk-00001.csv"):
        etl_aws.put(k, b"x")
    assert s3.delete_prefix(etl_aws.bucket, "scratch/f/") == 2
    assert etl_aws.keys() == ["scratch/g/chunk-00001.csv"]
    for bad in ("", "scratch"):
        with pytest.raises(ValueError):
            s3.delete_prefix(etl_aws.bucket, bad)


@pytest.mark.parametrize(
    "code,status",
    [("SlowDown", 503), ("ServiceUnavailable", 503), ("InternalError", 500), ("RequestLimitExceeded", 400)],
)
def test_throttling_and_5xx_become_transient(etl_aws, code, status):
    client = clients.s3()
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_object", service_error_code=code, service_message="Please reduce", http_status_code=status
        )
        with pytest.raises(TransientError, match=f"{code}.*Please reduce|Please reduce") as info:
            s3.read_range(etl_aws.bucket, "incoming/a.bin", 0, 10)
    assert "GetObject" in str(info.value)


def test_throttled_put_becomes_transient(etl_aws):
    client = clients.s3()
    with Stubber(client) as stub:
        stub.add_client_error("put_object", service_error_code="SlowDown", http_status_code=503)
        with pytest.raises(TransientError):
            s3.put_bytes(etl_aws.bucket, "output/x", b"1")


def test_access_denied_is_not_transient(etl_aws):
    client = clients.s3()
    with Stubber(client) as stub:
        stub.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
        with pytest.raises(Exception) as info:
            s3.read_range(etl_aws.bucket, "incoming/a.bin", 0, 10)
    assert not isinstance(info.value, TransientError)


def test_network_timeout_becomes_transient(etl_aws):
    client = clients.s3()
    err = ReadTimeoutError(endpoint_url="https://s3.amazonaws.com")
    with mock.patch.object(client, "get_object", side_effect=err), pytest.raises(TransientError):
        s3.get_bytes(etl_aws.bucket, "incoming/a.bin")


def test_open_stream_reads_whole_object(etl_aws):
    etl_aws.put("incoming/a.bin", DATA)
    body = s3.open_stream(etl_aws.bucket, "incoming/a.bin")
    assert body.read(10) + body.read() == DATA
    assert os.environ["BUCKET_NAME"] == etl_aws.bucket
