"""SEC4: a .csv.gz whose decompressed size exceeds the bound fails in PlanChunks at once with
TooLarge (compressed size, ratio estimate, exact count), never by running into the timeout."""

from __future__ import annotations

import gzip
import time

import pytest

from etl.errors import PermanentError, TooLarge
from etl.handlers import plan_chunks, register, validate_header

ARN = "arn:aws:states:us-east-1:123456789012:execution:etl-test:run-1"


def _plan(chain, data: bytes, gzip_bytes):
    event = chain.upload("incoming/p/big.csv.gz", gzip_bytes(data))
    file = register.handler({"event": event, "execution_arn": ARN}, None)
    header = validate_header.handler({"file": file}, None)
    return lambda: plan_chunks.handler({"file": file, "header": header}, None)


def test_SEC4_gzip_over_the_bound_fails_with_too_large_on_the_exact_count(chain, gzip_bytes, monkeypatch):
    data = chain.make_csv(400)
    plan = _plan(chain, data, gzip_bytes)
    monkeypatch.setenv("MAX_DECOMPRESSED_BYTES", str(len(data) - 1))
    started = time.monotonic()
    with pytest.raises(TooLarge, match=f"more than {len(data) - 1:,} bytes"):
        plan()
    assert time.monotonic() - started < 10
    assert issubclass(TooLarge, PermanentError)  # MarkFailed, reason TooLarge, no retry
    monkeypatch.setenv("MAX_DECOMPRESSED_BYTES", str(len(data)))  # exactly at the bound: fine
    assert plan()["chunk_count"] >= 1


def test_SEC4_gzip_predicted_far_over_the_bound_fails_before_reading_it_all(chain, gzip_bytes, monkeypatch):
    data = chain.make_csv(100_000)  # ~9 MB, compresses ~8x
    plan = _plan(chain, data, gzip_bytes)
    bound = len(data) // 6  # 6x over: above the 4x margin of the estimate
    monkeypatch.setenv("MAX_DECOMPRESSED_BYTES", str(bound))
    # Scaled down with the file: small reads, the estimate after a quarter of the bound.
    monkeypatch.setattr(plan_chunks, "ESTIMATE_AFTER_BYTES", bound // 4)
    monkeypatch.setattr(plan_chunks, "BLOCK_SIZE", 16 * 1024)
    monkeypatch.setattr(gzip, "READ_BUFFER_SIZE", 4096, raising=False)
    reads: list[int] = []
    real = plan_chunks._Bounded.read

    def counting(self, size=-1):
        out = real(self, size)
        reads.append(self.count)
        return out

    monkeypatch.setattr(plan_chunks._Bounded, "read", counting)
    with pytest.raises(TooLarge, match="would decompress to about"):
        plan()
    assert max(reads) < bound  # refused on the estimate, before the exact count got there


def test_SEC4_gzip_whose_compressed_size_exceeds_the_bound_fails_before_any_read(
    chain, gzip_bytes, monkeypatch
):
    data = chain.make_csv(400)
    plan = _plan(chain, data, gzip_bytes)
    monkeypatch.setenv("MAX_DECOMPRESSED_BYTES", "100")
    monkeypatch.setattr(plan_chunks.s3, "open_stream", lambda *a, **k: pytest.fail("read the object"))
    with pytest.raises(TooLarge, match="compressed"):
        plan()
