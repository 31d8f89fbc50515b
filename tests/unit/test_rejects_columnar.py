"""RUN12: a chunk's rejects are held columnar (etl.core.rejects), and the peak memory of a chunk
whose every row is a reject stays within 8x the chunk (asserted by the memory benchmark, run
here in fresh processes: memory, unlike time, does not depend on the machine's load)."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys

import pytest

from etl.core import rejects
from etl.core.output import rejects_table_to_csv, rejects_to_csv
from etl.core.process import process_chunk
from etl.core.schema import load_schema

SCHEMA = load_schema("default")
HEADER = ",".join(SCHEMA.source_columns)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _mixed_chunk() -> bytes:
    good = "T{n},ACC1,2024-01-01,2024-01-01T10:00:00Z,{amt},EUR,DEBIT,Shop,5411,x"
    rows = [
        good.format(n=1, amt="1.00"),
        "ragged,row",  # fields
        good.format(n=2, amt="abc"),  # amount: type
        good.format(n=1, amt="2.00"),  # duplicate of line 2
        '=cmd,"multi\nline",x',  # fields, a formula-looking cell, a quoted newline
        good.format(n=3, amt="3.00"),
    ]
    return (HEADER + "\n" + "\n".join(rows) + "\n").encode()


def test_RUN12_columnar_rejects_keep_every_field_of_every_reject():
    r = process_chunk(_mixed_chunk(), SCHEMA, 2)
    assert r.rows_in == 6 and r.rows_valid == 2 and r.rows_rejected == 4
    got = r.reject_entries
    assert [(e[0], e[1], e[2]) for e in got] == [
        (3, "*", "fields"),
        (4, "amount", "type"),
        (5, "transaction_id", "duplicate"),
        (6, "*", "fields"),
    ]
    # A whole-record reject's value is its record (stored once, given back by entries()).
    assert got[0][3] == "ragged,row" == r.reject_records[0]
    assert got[3][3] == '=cmd,"multi\nline",x' == r.reject_records[3]
    assert got[1][3] == "abc" and got[2][3] == "T1"
    assert r.rejects_by_column == {"*": 2, "amount": 1, "transaction_id": 1}
    # Stored once: the value column is null where it would repeat the record.
    assert r.rejects_table.column("value").null_count == 2


def test_RUN12_the_csv_from_the_columns_equals_the_csv_from_the_tuples():
    r = process_chunk(_mixed_chunk(), SCHEMA, 2)
    assert r.rejects_csv == rejects_to_csv([(*t, e[2]) for t, e in zip(r.rejects, r.reject_entries)])
    parsed = list(csv.reader(io.StringIO(r.rejects_csv.decode(), newline="")))
    assert parsed[0] == ["line", "column", "reason", "record", "rule"]
    assert [row[0] for row in parsed[1:]] == ["3", "4", "5", "6"]
    assert parsed[4][3] == '\'=cmd,"multi\nline",x'  # neutralised, newline kept


def test_RUN12_to_table_sorts_by_line_consumes_the_list_and_spans_batches(monkeypatch):
    monkeypatch.setattr(rejects, "_BATCH", 3)  # several batches on a small input
    rec = [f"r{i}" for i in range(8)]
    items: list[rejects.Reject] = [
        (
            10 - i,
            "*" if i % 2 else "amount",
            f"why {i}",
            rec[i],
            "fields" if i % 2 else "type",
            rec[i] if i % 2 else "v",
        )
        for i in range(8)
    ]
    table = rejects.to_table(items)
    assert items == []  # consumed: the tuples are let go
    assert table.column("line").to_pylist() == list(range(3, 11))
    entries = rejects.entries(table)
    assert entries[0] == (3, "*", "fields", "r7", "why 7")
    assert entries[-1] == (10, "amount", "type", "v", "why 0")
    assert rejects_table_to_csv(table) == rejects_to_csv(
        [(e[0], e[1], e[4], r, e[2]) for e, r in zip(entries, table.column("record").to_pylist())]
    )


def test_RUN12_a_whole_record_reject_with_its_own_value_keeps_it():
    table = rejects.to_table([(2, "*", "why", "the record", "encoding", "something else")])
    assert rejects.entries(table) == [(2, "*", "encoding", "something else", "why")]


@pytest.mark.parametrize("name", ["ragged-120B-rows", "tiny-ragged-4M", "blank-flood-32MiB"])
def test_RUN12_peak_memory_within_8x_chunk_when_every_row_is_a_reject(name):
    """The memory benchmark's worst inputs, each in a fresh process (peak RSS of the whole
    process, interpreter and imports included); it exits 1 above 8x the 50 MiB chunk."""
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "bench_memory.py"), "--only", name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "RUN12 met" in out.stdout


def test_RUN12_collector_merges_batches_and_single_rejects_in_line_order():
    """Whole-record batches (ragged rows) and single rejects (rules, duplicates) end in one
    table in line order, whatever order they were added in."""
    sink = rejects.Rejects()
    sink.append((5, "amount", "amount: bad", "r5", "type", "x"))
    sink.add_batch(rejects.whole_records([2, 7], ["two fields", "one field"], ["a,b", "c"], "fields"))
    sink.append((3, "transaction_id", "dup", "r3", "duplicate", "T1"))
    assert len(sink) == 4
    table = sink.to_table()
    assert table.column("line").to_pylist() == [2, 3, 5, 7]
    assert rejects.entries(table) == [
        (2, "*", "fields", "a,b", "two fields"),
        (3, "transaction_id", "duplicate", "T1", "dup"),
        (5, "amount", "type", "x", "amount: bad"),
        (7, "*", "fields", "c", "one field"),
    ]
