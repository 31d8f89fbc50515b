"""csv-spectrum acid test (npm package, pinned in package-lock.json) through the chunk planner.

Every CSV in ``node_modules/csv-spectrum/csvs`` is split with tiny chunk sizes and several block
splits; the rows read back from the chunks (each parsed with ``csv`` after the header line, as
dicts) must equal the expected JSON. A missing ``node_modules`` is a failure, not a skip: the
acid test must not silently disappear from CI.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from etl.core.boundaries import plan_chunks
from etl.core.header import parse_header
from etl.errors import MalformedCsv

ROOT = Path(__file__).resolve().parents[2]
SPECTRUM = ROOT / "node_modules" / "csv-spectrum"
CHUNK_SIZES = (1, 2, 3, 5, 8, 13, 1 << 20)
BLOCK_SIZES = (1, 2, 7, 1 << 20)

# Upstream fixture errata (csv-spectrum 2.0.0): location_coordinates.json is a bare object, and
# its phone number is not the one in location_coordinates.csv. The erratum is asserted, so this
# table fails loudly once upstream fixes the fixture.
ERRATA: dict[str, dict[str, tuple[str, str]]] = {
    "location_coordinates": {"Contact Phone Number": ("1234567890", "2095257564")},
}


# Files that are not RFC 4180 (SPEC RUN9): a quote inside an unquoted field. The planner must
# refuse them before any chunk runs, naming the line (the csv module reads the quote as a
# literal; RFC 4180 parity would not, so a split could differ from it).
NOT_RFC4180: dict[str, str] = {"location_coordinates": "line 2 (byte 81): a quote inside an unquoted field"}


def spectrum_names() -> list[str]:
    csvs = SPECTRUM / "csvs"
    if not csvs.is_dir():
        return ["<missing>"]
    return sorted(p.stem for p in csvs.glob("*.csv"))


def expected_rows(name: str) -> list[dict[str, Any]]:
    expected = json.loads((SPECTRUM / "json" / f"{name}.json").read_text(encoding="utf-8"))
    if isinstance(expected, dict):
        expected = [expected]
    for column, (wrong, right) in ERRATA.get(name, {}).items():
        assert [row[column] for row in expected] == [wrong], f"erratum for {name} is outdated"
        for row in expected:
            row[column] = right
    return expected


def test_csv_spectrum_is_installed() -> None:
    assert (SPECTRUM / "csvs").is_dir() and (SPECTRUM / "json").is_dir(), (
        f"csv-spectrum not found at {SPECTRUM}: run npm ci (or make install) in {ROOT}"
    )
    assert len(spectrum_names()) >= 12


@pytest.mark.parametrize("name", spectrum_names())
def test_rows_from_chunks_equal_expected_json(name: str) -> None:
    assert name != "<missing>", f"csv-spectrum not found at {SPECTRUM}: run npm ci (or make install)"
    data = (SPECTRUM / "csvs" / f"{name}.csv").read_bytes()
    columns = next(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    schema = SimpleNamespace(source_columns=columns, delimiter=",", schema_id=name)
    info = parse_header(data, schema, len(data))
    header = data[: info.header_bytes]
    expected = expected_rows(name)
    for chunk_size in CHUNK_SIZES:
        for block_size in BLOCK_SIZES:
            blocks = (data[i : i + block_size] for i in range(0, len(data), block_size))
            if name in NOT_RFC4180:
                with pytest.raises(
                    MalformedCsv, match=NOT_RFC4180[name].replace("(", r"\(").replace(")", r"\)")
                ):
                    plan_chunks(blocks, info.header_bytes, len(data), chunk_size, 1 << 20)
                continue
            chunks = plan_chunks(blocks, info.header_bytes, len(data), chunk_size, 1 << 20)
            assert chunks[0].start == info.header_bytes and chunks[-1].end == len(data)
            rows: list[dict[str, str]] = []
            for c in chunks:
                text = (header + data[c.start : c.end]).decode("utf-8")
                rows.extend(csv.DictReader(io.StringIO(text, newline="")))
            assert rows == expected, (name, chunk_size, block_size, chunks)
            if chunk_size == 1:
                assert len(chunks) == len(expected)  # one record per chunk
