"""RUN9 and RUN10 on the real state machine and handlers: a misplaced quote fails the file in
PlanChunks (no chunk runs) naming its line; a gzip body under a .csv name fails in
ValidateHeader naming the cause; a NUL in the first row is one rejected row, like anywhere else."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from etl import contracts
from etl_local.datagen import generate_csv

from .conftest import Stack

pytestmark = pytest.mark.e2e


def _rows(tmp_path: Path, rows: int = 3000) -> bytes:
    path = tmp_path / "src.csv"
    generate_csv(path, rows=rows, seed=11, bad_row_share=0.0)
    return path.read_bytes()


def _put(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_RUN9_misplaced_quote_fails_before_any_chunk_with_its_line(stack: Stack, tmp_path: Path) -> None:
    data = _rows(tmp_path)
    lines = data.split(b"\n")
    lines[2500] = lines[2500].replace(b",", b',x"y', 1)  # a quote inside an unquoted field
    info = stack.upload(_put(tmp_path, "stray.csv", b"\n".join(lines)), "default")
    rep = stack.wait(info["file_id"])
    assert rep.status == "FAILED"
    assert (rep.error or "").startswith("MalformedCsv: quote at a position RFC 4180 does not allow")
    assert " (byte " in (rep.error or "") and "line " in (rep.error or "")
    assert stack.calls("ProcessChunk") == []
    assert stack.keys(contracts.OUTPUT_PREFIX) == []


def test_RUN10_gzip_under_a_csv_name_names_the_cause(stack: Stack, tmp_path: Path) -> None:
    info = stack.upload(_put(tmp_path, "packed.csv", gzip.compress(_rows(tmp_path, 50))), "default")
    rep = stack.wait(info["file_id"])
    assert rep.status == "FAILED"
    assert (rep.error or "").startswith("InvalidEncoding: the file starts with the gzip magic bytes 1f 8b")
    assert stack.calls("PlanChunks") == []


def test_RUN10_a_nul_in_the_first_row_is_one_reject(stack: Stack, tmp_path: Path) -> None:
    data = _rows(tmp_path)
    header_end = data.index(b"\n") + 1
    data = data[: header_end + 1] + b"\x00" + data[header_end + 1 :]  # inside the first row
    info = stack.upload(_put(tmp_path, "nul.csv", data), "default")
    rep = stack.wait(info["file_id"])
    assert rep.status == "SUCCEEDED", rep.error
    assert (rep.rows_total, rep.rows_valid, rep.rows_rejected) == (3000, 2999, 1)
