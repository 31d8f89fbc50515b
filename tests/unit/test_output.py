"""etl.core.output: Parquet column options come from the schema, not from column names."""

from __future__ import annotations

import dataclasses
import io

import pyarrow.parquet as pq

from etl.core.output import parquet_column_options, table_to_parquet
from etl.core.process import process_chunk
from etl.core.schema import load_schema
from etl_local.datagen import generate_bytes

SCHEMA = load_schema("default")


def _column_meta(parquet: bytes) -> dict[str, tuple[bool, bool]]:
    """column -> (has a dictionary page, has statistics) of the first row group."""
    meta = pq.ParquetFile(io.BytesIO(parquet)).metadata
    rg = meta.row_group(0)
    return {
        rg.column(i).path_in_schema: (rg.column(i).has_dictionary_page, rg.column(i).is_stats_set)
        for i in range(rg.num_columns)
    }


def test_options_follow_the_schema():
    dictionary, stats = parquet_column_options(SCHEMA)
    strings = [f.name for f in SCHEMA.fields if f.type == "string"]
    assert set(dictionary) == set(strings) - {"transaction_id"}  # the primaryKey is unique
    assert set(stats) == {f.name for f in SCHEMA.fields if f.type != "string" or f.enum is not None}
    assert {"currency", "transaction_type", "amount", "transaction_date", "posted_at"} <= set(stats)


def test_written_file_follows_the_schema_and_a_renamed_key_moves_with_it():
    data, _ = generate_bytes(rows=300, seed=3, bad_row_share=0.0)
    table = process_chunk(data, SCHEMA, 2).valid_table
    meta = _column_meta(table_to_parquet(table, SCHEMA))
    assert meta["transaction_id"] == (False, False)
    assert meta["account_id"] == (True, False)
    assert meta["currency"] == (True, True)
    assert meta["amount"][1] and meta["posted_at"][1]
    # Another schema naming account_id as its key: the writer follows it (no names in code).
    other = dataclasses.replace(SCHEMA, primary_key=("account_id",))
    meta = _column_meta(table_to_parquet(table, other))
    assert meta["transaction_id"][0] and not meta["account_id"][0]


def _codecs(parquet: bytes) -> dict[str, str]:
    rg = pq.ParquetFile(io.BytesIO(parquet)).metadata.row_group(0)
    return {rg.column(i).path_in_schema: rg.column(i).compression for i in range(rg.num_columns)}


def test_PERF2_no_compression_where_it_buys_nothing():
    data, _ = generate_bytes(rows=300, seed=3, bad_row_share=0.0)
    table = process_chunk(data, SCHEMA, 2).valid_table
    codecs = _codecs(table_to_parquet(table, SCHEMA))
    # the enum columns (bit-packed dictionary indices) are stored uncompressed ...
    assert codecs["currency"] == codecs["transaction_type"] == "UNCOMPRESSED"
    # ... everything else stays snappy, the unique ids too (storage outweighs the CPU: PERF3)
    assert {codecs[c] for c in ("transaction_id", "account_id", "amount", "posted_at", "description")} == {
        "SNAPPY"
    }
    # readers see the same table
    assert pq.read_table(io.BytesIO(table_to_parquet(table, SCHEMA))).equals(table)
