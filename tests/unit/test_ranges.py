"""SPEC RUN11: dates and timestamps outside 0001-01-01..9999-12-31 (after conversion to UTC)
are rejected with rule ``range``; the edges are kept and read back by Python."""

from __future__ import annotations

import datetime as dt
import io

import pyarrow.parquet as pq
import pytest

from etl.core.process import process_chunk
from etl.core.schema import load_schema

SCHEMA = load_schema("default")
HEADER = ",".join(SCHEMA.source_columns)


def one(date: str, posted: str = "") -> tuple[int, list[tuple[int, str, str, str | None, str]], bytes]:
    data = f"{HEADER}\nT1,A,{date},{posted},1.00,EUR,DEBIT,,,\n".encode()
    r = process_chunk(data, SCHEMA, 2)
    return r.rows_valid, r.reject_entries, r.parquet


@pytest.mark.parametrize("date", ["0000-01-01", "0000-02-29", "0000-12-31"])
def test_RUN11_year_zero_dates_are_range_rejects(date: str) -> None:
    valid, rejects, _ = one(date)
    assert valid == 0
    assert rejects == [
        (
            2,
            "transaction_date",
            "range",
            date,
            f"transaction_date: {date!r} is outside 0001-01-01..9999-12-31",
        )
    ]


@pytest.mark.parametrize(
    "posted",
    [
        "0001-01-01T00:30:00+01:00",
        "0001-01-01T00:00:00+0001",
        "9999-12-31T23:30:00-01:00",
        "0000-06-01T00:00:00Z",
    ],
)
def test_RUN11_timestamps_leaving_the_range_in_utc_are_range_rejects(posted: str) -> None:
    valid, rejects, _ = one("2024-01-01", posted)
    assert valid == 0
    assert [(r[1], r[2]) for r in rejects] == [("posted_at", "range")]
    assert "after conversion to UTC" in rejects[0][4]


def test_RUN11_the_edges_are_kept_and_every_reader_can_read_them() -> None:
    for date, posted in [
        ("0001-01-01", "0001-01-01T00:00:00Z"),
        ("9999-12-31", "9999-12-31T23:59:59.999999Z"),
        ("0001-01-01", "0001-01-01T01:00:00+01:00"),
        ("9999-12-31", "9999-12-31T22:59:59-01:00"),
    ]:
        valid, rejects, parquet = one(date, posted)
        assert (valid, rejects) == (1, [])
        row = pq.read_table(io.BytesIO(parquet)).to_pylist()[0]  # Python objects: would raise out of range
        assert row["transaction_date"] == dt.date.fromisoformat(date)
        assert row["posted_at"] == dt.datetime.fromisoformat(posted.replace("Z", "+00:00")).astimezone(
            dt.timezone.utc
        )


def test_RUN11_impossible_dates_stay_type_rejects() -> None:
    _, rejects, _ = one("2023-02-29")
    assert [(r[2], r[4]) for r in rejects] == [
        ("type", "transaction_date: '2023-02-29' is not a real calendar date")
    ]
