"""OPS6(a): the chunk plan never exceeds the state size: above a chunk-count bound derived from
the 256 KiB state limit and the size of one chunk entry, PlanChunks grows the chunk size."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from etl.core.boundaries import plan_chunks
from etl.handlers import plan_chunks as pc

GIB = 1024**3


def test_OPS6_bound_comes_from_the_state_limit_and_the_entry_size() -> None:
    short, long = "incoming/default/daily.csv", "incoming/default/" + "n" * 1000 + ".csv"
    assert pc.PLAN_BUDGET_BYTES < pc.STATE_LIMIT_BYTES
    assert 1000 < pc.max_chunks(short) < 1200  # about 150 bytes an entry
    assert 100 < pc.max_chunks(long) < 200
    for key in (short, long):
        assert pc.max_chunks(key) * pc.entry_bytes(key) <= pc.PLAN_BUDGET_BYTES


def test_OPS6_a_2_gib_file_with_1_mib_chunks_gets_a_grown_chunk_size() -> None:
    limit = pc.max_chunks("incoming/default/big.csv")
    grown = pc.bounded_chunk_size(2 * GIB, 1024 * 1024, limit)
    assert grown > 1024 * 1024
    assert -(-2 * GIB // grown) <= limit  # chunks are at least `grown` bytes except the last
    assert pc.bounded_chunk_size(100 * 1024 * 1024, 50 * 1024 * 1024, limit) == 50 * 1024 * 1024


def test_OPS6_on_a_boundary_list_the_grown_size_keeps_the_plan_under_the_bound() -> None:
    """Real records, tiny configured chunks: the planner with the grown size stays in bound and
    the serialized plan fits the budget."""
    header = b"a,b\n"
    data = header + b"".join(b'%d,"x\ny"\n' % i for i in range(60_000))  # quoted newlines too
    key = "incoming/default/" + "k" * 900 + ".csv"
    budget = 8 * 1024  # a small budget: the same arithmetic, a smaller bound
    limit = pc.max_chunks(key, budget)
    naive = plan_chunks([data], len(header), len(data), 64, 1024)
    assert len(naive) > limit  # the configured size would break the bound
    size = pc.bounded_chunk_size(len(data) - len(header), 64, limit)
    ranges = plan_chunks([data], len(header), len(data), size, 1024)
    assert len(ranges) <= limit
    assert len(json.dumps([pc._chunk_entry(r, key) for r in ranges])) <= budget
    assert ranges[0].start == len(header) and ranges[-1].end == len(data)


@pytest.mark.parametrize("compressed", [False, True])
def test_OPS6_plan_chunks_grows_the_size_and_says_so(
    chain: Any, monkeypatch: pytest.MonkeyPatch, compressed: bool
) -> None:
    monkeypatch.setattr(pc, "PLAN_BUDGET_BYTES", 10 * 1024)  # tiny bound: ~60 entries
    monkeypatch.setenv("CHUNK_SIZE_BYTES", "256")
    body = chain.make_csv(2000)
    name = "incoming/default/many.csv" + (".gz" if compressed else "")
    run = chain.upload_and_run(name, gzip.compress(body, mtime=0) if compressed else body)
    assert run.error is None, run.failure
    plan = run.state["plan"]
    key = plan["chunks"][0]["key"]
    assert plan["chunk_count"] <= pc.max_chunks(key, 10 * 1024)
    assert plan["chunk_size_grown_from"] == 256 and plan["chunk_size_bytes"] > 256
    assert len(json.dumps(plan["chunks"])) <= 10 * 1024
    assert run.state["result"]["rows_total"] == 2000


def test_RUN12_blank_floods_and_tiny_rows_are_split_by_the_line_cap() -> None:
    from etl.core.boundaries import LINE_BYTES, line_cap

    chunk = 96 * 1024
    cap = line_cap(chunk)
    assert cap == chunk // LINE_BYTES == 1024
    header = b"a,b\n"
    for body in (b"\n" * 300_000 + b"1,2\n", b"x\n" * 100_000, b"\r\n" * 50_000 + b"1,2\r\n" * 50_000):
        data = header + body
        ranges = plan_chunks([data], len(header), len(data), chunk, 1 << 20, max_lines=cap)
        lines = [data.count(b"\n", r.start, r.end) for r in ranges]
        assert max(lines) <= cap  # one-line records: the cap is exact
        assert len(ranges) >= body.count(b"\n") // cap  # split, not merged into one chunk
        assert all(r.end - r.start < chunk for r in ranges)  # bytes alone would not have split them
        # Without the cap (the old planner) a blank flood or tiny rows stayed in a few huge chunks.
        assert len(plan_chunks([data], len(header), len(data), chunk, 1 << 20)) <= -(-len(body) // chunk)


def test_RUN12_regrown_size_keeps_a_line_capped_plan_under_the_bound() -> None:
    from etl.core.boundaries import line_cap

    header = b"a,b\n"
    data = header + b"x\n" * 200_000  # 400 KB of tiny rows: the line cap makes the chunks
    limit = 50
    chunk = 16 * 1024
    first = plan_chunks([data], len(header), len(data), chunk, 1 << 20, max_lines=line_cap(chunk))
    entries = [pc._chunk_entry(r, "k") for r in first]
    assert len(entries) > limit
    grown = pc.regrown_chunk_size(entries, chunk, limit)
    again = plan_chunks([data], len(header), len(data), grown, 1 << 20, max_lines=line_cap(grown))
    assert len(again) <= limit


def test_RUN12_plan_chunks_handler_splits_tiny_rows_and_stays_in_the_bound(
    chain: Any, etl_aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pc, "PLAN_BUDGET_BYTES", 10 * 1024)  # ~60 entries
    monkeypatch.setenv("CHUNK_SIZE_BYTES", str(4 * 1024))  # line cap 42
    header = chain.make_csv(1).split(b"\n", 1)[0] + b"\n"
    run = chain.upload_and_run("incoming/default/tiny.csv", header + b"a\n" * 5000)
    plan = run.state["plan"]
    assert 1 < plan["chunk_count"] <= pc.max_chunks(plan["chunks"][0]["key"], 10 * 1024)
    assert plan["chunk_size_grown_from"] == 4 * 1024
    # Every row has one field: all rejected, the file fails with its counts (RUN13).
    assert type(run.error).__name__ == "TooManyRejects"
    item = etl_aws.repo.get_file(run.state["file"]["file_id"])
    assert (item["status"], item["rows_total"], item["rows_rejected"]) == ("FAILED", 5000, 5000)
