"""DATA4(c): transaction ids repeated within a chunk and across the chunks of a file."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.core import duplicates
from etl.core.duplicates import DUPLICATE_RULE, duplicates_across_chunks, find_duplicates
from etl.core.process import process_chunk
from etl.core.schema import load_schema
from etl_local.datagen import csv_escape

SCHEMA = load_schema("default")
HEADER = ",".join(SCHEMA.source_columns)
GOOD = {
    "transaction_id": "t1",
    "account_id": "ACC1",
    "transaction_date": "2024-02-29",
    "posted_at": "2024-03-01T12:34:56Z",
    "amount": "-12.50",
    "currency": "EUR",
    "transaction_type": "DEBIT",
    "merchant_name": "Shop",
    "merchant_category_code": "5812",
    "description": "x",
}


def row(**over: str) -> str:
    vals = dict(GOOD, **over)
    return ",".join(csv_escape(vals[c]) for c in SCHEMA.source_columns)


def chunk(*rows: str) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


def oracle(ids: list[str | None], lines: list[int]) -> dict[int, int]:
    """position -> first line, by a plain dict walk in line order."""
    first: dict[str, int] = {}
    out: dict[int, int] = {}
    for pos in sorted(range(len(ids)), key=lambda p: lines[p]):
        v = ids[pos]
        if v is None:
            continue
        if v in first:
            out[pos] = first[v]
        else:
            first[v] = lines[pos]
    return out


def test_DATA4c_later_occurrences_rejected_naming_the_first_line():
    data = chunk(
        row(transaction_id="a"),
        row(transaction_id="b"),
        row(transaction_id="a", amount="1.00"),
        row(transaction_id="c"),
        row(transaction_id="a"),
        row(transaction_id="b"),
    )
    r = process_chunk(data, SCHEMA, first_line=10)
    assert r.rows_in == 6 and r.rows_valid == 3 and r.rows_rejected == 3
    assert r.valid_table.column("transaction_id").to_pylist() == ["a", "b", "c"]
    # the kept "a" is the first one (amount -12.50), not the later 1.00
    assert str(r.valid_table.column("amount")[0].as_py()) == "-12.50"
    got = [(line, col, reason) for line, col, reason, _ in r.rejects]
    assert [(g[0], g[1]) for g in got] == [
        (12, "transaction_id"),
        (14, "transaction_id"),
        (15, "transaction_id"),
    ]
    assert "line 10" in got[0][2] and DUPLICATE_RULE in got[0][2]
    assert "line 10" in got[1][2]
    assert "line 11" in got[2][2]
    assert r.rejects[0][3] == row(transaction_id="a", amount="1.00")


def test_DATA4c_a_rejected_first_occurrence_does_not_make_a_duplicate():
    data = chunk(row(transaction_id="a", amount="oops"), row(transaction_id="a"), row(transaction_id="a"))
    r = process_chunk(data, SCHEMA, first_line=2)
    assert r.rows_valid == 1 and r.rows_rejected == 2
    assert r.rejects[0][1] == "amount"
    assert r.rejects[1][0] == 4 and "line 3" in r.rejects[1][2]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d", "e", "ab", ""])), max_size=60),
    st.randoms(use_true_random=False),
)
def test_find_duplicates_matches_a_dict_walk(ids, rnd):
    lines = list(range(2, 2 + 3 * len(ids), 3))
    rnd.shuffle(lines)  # any order of lines
    later, first = find_duplicates(pa.array(ids, pa.string()), np.array(lines))
    want = oracle(ids, lines)
    assert later.tolist() == sorted(want)
    assert first.tolist() == [want[p] for p in sorted(want)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f", "g"]), unique=True, max_size=6), max_size=6
    )
)
def test_DATA4c_across_chunks_matches_the_oracle(chunk_ids):
    line = 2
    chunks = []
    flat_ids: list[str | None] = []
    flat_lines: list[int] = []
    owners: list[tuple[int, int]] = []
    for k, ids in enumerate(chunk_ids):
        lines = list(range(line, line + len(ids)))
        line += len(ids) + 1
        chunks.append((pa.array(ids, pa.string()), np.array(lines, dtype=np.int64)))
        flat_ids += ids
        flat_lines += lines
        owners += [(k, i) for i in range(len(ids))]
    want = oracle(flat_ids, flat_lines)
    got = {}
    for d in duplicates_across_chunks(chunks):
        assert d.positions.size > 0
        for pos, ln, first in zip(d.positions.tolist(), d.lines.tolist(), d.first_lines.tolist()):
            assert chunks[d.chunk][1][pos] == ln
            got[owners.index((d.chunk, pos))] = first
    assert got == want


def test_across_chunks_keeps_the_earliest_line_even_if_chunks_come_unordered():
    c1 = (pa.array(["x", "y"]), np.array([100, 101]))
    c2 = (pa.array(["y", "z"]), np.array([5, 6]))
    (d,) = duplicates_across_chunks([c1, c2])
    assert d.chunk == 0 and d.positions.tolist() == [1] and d.first_lines.tolist() == [5]


@given(st.lists(st.sampled_from(["a", "b", "c", "d", None]), max_size=40), st.integers(0, 5))
def test_PERF2_later_occurrences_from_superset_codes_equal_find_duplicates(ids, skip):
    # codes computed over all rows (a superset), then only some rows taken: same answer as
    # find_duplicates on those rows' ids.
    codes = duplicates.codes_of(ids)
    rows = np.array([i for i in range(len(ids)) if skip == 0 or i % (skip + 1)], dtype=np.int64)
    lines = np.arange(len(ids), dtype=np.int64) * 2 + 5
    want = duplicates.find_duplicates([ids[i] for i in rows], lines[rows])
    got = duplicates.later_occurrences(codes[rows], lines[rows])
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
