"""SPEC DATA1/DATA3/DATA5, the pure side: table columns, one partition value per data file,
the sort order, lineage and line numbers, rule codes, and the neutralised rejects CSV.
pyarrow only (runs on every runtime, 3.9 included)."""

from __future__ import annotations

import csv
import io
import random

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from etl.core import dataset
from etl.core.process import RULES, neutralise_cell, process_chunk, rejects_to_csv
from etl.core.schema import load_schema

HEADER = (
    "transaction_id,account_id,transaction_date,posted_at,amount,currency,"
    "transaction_type,merchant_name,merchant_category_code,description"
)
LINEAGE = dataset.Lineage("f" * 32, "default", "incoming/default/a.csv", "v1")


def rows(n: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    lines = [HEADER]
    for i in range(n):
        day = rng.choice(["2026-11-26", "2026-11-27", "2026-11-27", "2026-11-27"])
        lines.append(f"T{rng.randrange(10**6):06d}-{i},ACC{rng.randrange(7)},{day},,{i}.10,USD,DEBIT,,,")
    return ("\n".join(lines) + "\n").encode()


def test_DATA3_one_transaction_date_per_data_file_sorted_by_account_then_id() -> None:
    result = process_chunk(rows(400), load_schema("default"), 2)
    table = dataset.transactions_table(result.valid_table, result.valid_lines, LINEAGE)
    parts = dataset.split_by_date(table)
    assert [d for d, _ in parts] == ["2026-11-26", "2026-11-27"]
    assert sum(p.num_rows for _, p in parts) == 400
    for day, part in parts:
        assert {d.isoformat() for d in part.column("transaction_date").to_pylist()} == {day}
        keys = list(zip(part.column("account_id").to_pylist(), part.column("transaction_id").to_pylist()))
        assert keys == sorted(keys)
        # The Parquet statistics carry the one partition value (add_files infers it from them).
        meta = pq.read_metadata(io.BytesIO(dataset.data_file_bytes(part)))
        for rg in range(meta.num_row_groups):
            for col in ("transaction_date", "partner", "file_id"):
                idx = meta.schema.names.index(col)
                stats = meta.row_group(rg).column(idx).statistics
                assert stats is not None and stats.has_min_max and stats.min == stats.max


def test_DATA2_data_file_bytes_are_deterministic() -> None:
    a = process_chunk(rows(50), load_schema("default"), 2)
    b = process_chunk(rows(50), load_schema("default"), 2)
    ta = dataset.transactions_table(a.valid_table, a.valid_lines, LINEAGE)
    tb = dataset.transactions_table(b.valid_table, b.valid_lines, LINEAGE)
    assert [dataset.data_file_bytes(p) for _, p in dataset.split_by_date(ta)] == [
        dataset.data_file_bytes(p) for _, p in dataset.split_by_date(tb)
    ]


def test_DATA1_lineage_and_physical_lines_of_every_row() -> None:
    data = (
        HEADER
        + '\nT1,A,2026-11-27,,1.00,USD,DEBIT,,,"two\nlines"\nT2,A,2026-02-30,,1.00,USD,DEBIT,,,\n'
        + "T3,B,2026-11-27,,2.00,USD,DEBIT,,,\n"
    ).encode()
    result = process_chunk(data, load_schema("default"), 2)
    table = dataset.transactions_table(result.valid_table, result.valid_lines, LINEAGE)
    assert table.schema == dataset.transactions_arrow_schema()
    got = table.select(["transaction_id", "line", "file_id", "partner", "source_key", "source_version"])
    assert got.to_pylist() == [
        {"transaction_id": "T1", "line": 2, **lineage_cols()},
        {"transaction_id": "T3", "line": 5, **lineage_cols()},
    ]
    assert result.reject_entries == [
        (
            4,
            "transaction_date",
            "type",
            "2026-02-30",
            "transaction_date: '2026-02-30' is not a real calendar date",
        )
    ]


def lineage_cols() -> dict[str, str | None]:
    return {
        "file_id": LINEAGE.file_id,
        "partner": LINEAGE.partner,
        "source_key": LINEAGE.source_key,
        "source_version": LINEAGE.source_version,
    }


def test_DATA1_a_partner_schema_maps_onto_the_same_columns() -> None:
    acme = load_schema("acme_bank")
    data = (
        ";".join(acme.source_columns) + "\nR1;AC1;2026-11-27;;5.00;EUR;CREDIT;Shop;5411;memo;B7\n"
    ).encode()
    result = process_chunk(data, acme, 2)
    table = dataset.transactions_table(result.valid_table, result.valid_lines, LINEAGE)
    assert table.schema == dataset.transactions_arrow_schema()
    assert table.column("transaction_id").to_pylist() == ["R1"]
    assert "branch_code" not in table.column_names


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("transaction_id", "", "required"),
        ("transaction_id", "bad id!", "pattern"),
        ("amount", "1e5", "type"),
        ("amount", "1.234", "range"),
        ("transaction_date", "2026-13-01", "type"),
        ("posted_at", "yesterday", "type"),
        ("currency", "XXQ", "enum"),
        ("currency", "usd", "pattern"),
        ("transaction_type", "GIFT", "enum"),
        ("merchant_category_code", "54", "pattern"),
    ],
)
def test_DATA5_every_reject_has_a_stable_rule_code_and_the_offending_value(
    column: str, value: str, rule: str
) -> None:
    record = dict(zip(HEADER.split(","), ["T1", "A", "2026-11-27", "", "1.00", "USD", "DEBIT", "", "", ""]))
    record[column] = value
    data = (HEADER + "\n" + ",".join(record.values()) + "\n").encode()
    result = process_chunk(data, load_schema("default"), 2)
    assert [(e[1], e[2], e[3]) for e in result.reject_entries] == [(column, rule, value)]
    assert rule in RULES


def test_DATA5_whole_record_rejects_are_fields_and_encoding() -> None:
    data = HEADER.encode() + b"\nT1,A,2026-11-27\nT2,A\xff,2026-11-27,,1.00,USD,DEBIT,,,\n"
    result = process_chunk(data, load_schema("default"), 2)
    assert [(e[0], e[1], e[2]) for e in result.reject_entries] == [(2, "*", "fields"), (3, "*", "encoding")]
    table = dataset.rejects_table(result.reject_entries, LINEAGE)
    assert table.schema == dataset.rejects_arrow_schema()
    assert table.column("rule").to_pylist() == ["fields", "encoding"]


@pytest.mark.parametrize("cell", ['=HYPERLINK("x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_DATA5_spreadsheet_formulas_are_neutralised_in_the_rejects_csv(cell: str) -> None:
    assert neutralise_cell(cell) == "'" + cell
    text = rejects_to_csv([(7, "description", cell, cell, "type")]).decode()
    got = list(csv.reader(io.StringIO(text, newline="")))[1]
    assert got == ["7", "description", "'" + cell, "'" + cell, "type"]


@pytest.mark.parametrize("cell", ["plain", "12.50", "a=b", " =x", ""])
def test_DATA5_ordinary_cells_are_unchanged(cell: str) -> None:
    assert neutralise_cell(cell) == cell


def _keys_table(days: list[int | None], accounts: list[str | None], ids: list[str | None]) -> pa.Table:
    return pa.table(
        {
            "transaction_date": pa.array(days, pa.int32()).cast(pa.date32()),
            "account_id": pa.array(accounts, pa.string()),
            "transaction_id": pa.array(ids, pa.string()),
            "pos": pa.array(range(len(days)), pa.int64()),
        }
    )


def _arrow_order(table: pa.Table) -> list[int]:
    keys = [("transaction_date", "ascending"), ("account_id", "ascending"), ("transaction_id", "ascending")]
    return [int(i) for i in pc.sort_indices(table, sort_keys=keys).to_pylist()]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_PERF2_row_order_is_arrows_stable_multi_key_sort(seed: int) -> None:
    """The integer-rank lexsort gives exactly Arrow's stable sort, ties and shared prefixes
    included (few days, few accounts, repeated and prefix-sharing ids, non-ASCII)."""
    rng = random.Random(seed)
    n = 3000
    ids = [rng.choice(["T1", "T10", "T2", "t1", "é", "T1a", ""]) + str(rng.randrange(40)) for _ in range(n)]
    accounts = [rng.choice(["A", "AB", "B", "a", "Ä", "A0"]) for _ in range(n)]
    days = [rng.randrange(-3, 4) for _ in range(n)]
    table = _keys_table(days, accounts, ids)
    assert [int(i) for i in np.asarray(dataset.row_order(table))] == _arrow_order(table)


def test_PERF2_row_order_falls_back_to_arrow_with_nulls() -> None:
    table = _keys_table([1, 1, 0, None], ["b", None, "a", "a"], ["x", "y", None, "z"])
    assert [int(i) for i in np.asarray(dataset.row_order(table))] == _arrow_order(table) == [2, 0, 1, 3]
