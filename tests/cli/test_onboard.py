"""SPEC UX5 offline: `etl validate` (the pipeline's planning and chunk code, no emulator),
`etl schema infer` and `etl schema check`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from etl_cli.main import cli
from etl_cli.validate import validate_file
from etl_local.datagen import generate_csv

DEFAULT = str(Path(__file__).resolve().parents[2] / "etl" / "schemas" / "default.json")


def etl(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    path = tmp_path_factory.mktemp("onboard") / "tx.csv"
    stats = generate_csv(path, rows=6000, seed=21, bad_row_share=0.005)
    return path, stats


def with_cross_chunk_duplicate(src: Path, dest: Path) -> tuple[Path, int]:
    """``src`` with its last record's id replaced by the first record's (far apart: the two
    land in different chunks); returns the new file and the line of the repeat."""
    lines = src.read_bytes().rstrip(b"\n").split(b"\n")
    first_id = lines[1].split(b",", 1)[0]
    last = len(lines) - 1
    while lines[last].count(b",") != lines[0].count(b",") or lines[last].split(b",", 1)[0] == b"":
        last -= 1
    lines[last] = first_id + b"," + lines[last].split(b",", 1)[1]
    dest.write_bytes(b"\n".join(lines) + b"\n")
    return dest, last + 1


def test_UX5_validate_counts_do_not_depend_on_chunking_and_see_ids_across_chunks(
    sample: tuple[Path, Any], tmp_path: Path
) -> None:
    path, stats = sample
    whole = validate_file(path, DEFAULT, chunk_size=64 * 1024 * 1024, workers=1)
    assert (whole.rows_total, whole.rows_rejected, whole.chunks) == (stats.rows, stats.bad_rows, 1)
    assert whole.status == "SUCCEEDED"
    # The repeated id sits in another chunk than its first occurrence: Finalize's pass finds it.
    dup, line = with_cross_chunk_duplicate(path, tmp_path / "dup.csv")
    one = validate_file(dup, DEFAULT, chunk_size=64 * 1024 * 1024, workers=1)
    many = validate_file(dup, DEFAULT, chunk_size=32 * 1024, workers=2)
    assert many.chunks > 5 and one.chunks == 1
    for got in (one, many):
        assert (got.rows_total, got.rows_valid, got.rows_rejected) == (
            stats.rows,
            stats.rows - stats.bad_rows - 1,
            stats.bad_rows + 1,
        )
        assert got.rejects_by_rule["duplicate"] == 1
    assert one.rejects_by_rule == many.rejects_by_rule
    assert one.rejects_by_column == many.rejects_by_column
    assert any(s.line == line and s.rule == "duplicate" for s in many.sample) or len(many.sample) == 50


def test_UX5_validate_cli_exit_codes_json_and_report(sample: tuple[Path, Any], tmp_path: Path) -> None:
    path, stats = sample
    report = tmp_path / "r.html"
    ok = etl("validate", str(path), "--partner", "default", "--json", "--report", str(report))
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout)
    assert data["status"] == "SUCCEEDED" and data["error"] is None
    assert (data["rows_total"], data["rows_valid"], data["rows_rejected"]) == (
        stats.rows,
        stats.rows - stats.bad_rows,
        stats.bad_rows,
    )
    assert sum(data["rejects_by_rule"].values()) == stats.bad_rows == sum(data["rejects_by_column"].values())
    assert set(data["rejects_by_rule"]) <= {
        "type",
        "pattern",
        "required",
        "enum",
        "fields",
        "range",
        "encoding",
    }
    assert data["first_rejects"][0].keys() == {"line", "column", "rule", "value", "reason"}
    assert data["report"] == str(report)
    html = report.read_text()
    assert f"{stats.rows:,}" in html and "SUCCEEDED" in html and "<script" not in html

    bad = tmp_path / "bad.csv"
    generate_csv(bad, rows=500, seed=2, bad_row_share=0.2)
    failed = etl("validate", str(bad), "--report", str(tmp_path / "b.html"))
    assert failed.exit_code == 1
    assert "FAILED" in failed.stdout and "TooManyRejects" in failed.stdout

    header = tmp_path / "header.csv"
    header.write_bytes(path.read_bytes().replace(b"currency", b"ccy", 1))
    mismatch = etl("validate", str(header), "--json", "--report", str(tmp_path / "h.html"))
    assert mismatch.exit_code == 1
    verdict = json.loads(mismatch.stdout)
    assert verdict["error_type"] == "SchemaMismatch" and "ccy" in verdict["error"]
    assert "SchemaMismatch" not in verdict["error"]  # the type is said once (UX8)


def test_UX5_infer_drafts_a_schema_check_accepts_and_validate_passes(
    sample: tuple[Path, Any], tmp_path: Path
) -> None:
    path, stats = sample
    draft = tmp_path / "zeta.json"
    inferred = etl("schema", "infer", str(path), "--partner", "zeta", "--output", str(draft))
    assert inferred.exit_code == 0, inferred.output
    doc = json.loads(draft.read_text())
    fields = {f["name"]: f for f in doc["fields"]}
    assert list(fields) == [c.strip() for c in stats.header.split(",")]
    assert fields["transaction_date"]["type"] == "date"
    assert fields["posted_at"]["type"] == "datetime"
    assert fields["amount"]["type"] == "number" and fields["amount"]["x-etl-decimal"]["scale"] == 2
    assert fields["currency"]["constraints"]["pattern"] == "[A-Z]{3}"
    assert (
        "EUR" in fields["currency"]["constraints"]["enum"]
        and len(fields["currency"]["constraints"]["enum"]) > 100
    )
    assert fields["transaction_type"]["constraints"]["enum"] == [
        "CREDIT",
        "DEBIT",
        "FEE",
        "REFUND",
        "TRANSFER",
    ]
    assert fields["merchant_category_code"]["constraints"]["pattern"] == "[0-9]{4}"
    assert fields["account_id"]["constraints"]["required"] is True
    assert fields["merchant_name"]["constraints"]["required"] is False

    checked = etl("schema", "check", str(draft))
    assert checked.exit_code == 0 and checked.stdout.strip().endswith(": ok")
    valid = etl("validate", str(path), "--schema", str(draft), "--json", "--report", str(tmp_path / "z.html"))
    assert valid.exit_code == 0, valid.output
    assert json.loads(valid.stdout)["status"] == "SUCCEEDED"


def test_UX5_schema_check_names_every_problem(tmp_path: Path) -> None:
    doc = json.loads(Path(DEFAULT).read_text())
    doc["x-etl-reject-threshold"] = 2
    doc["fields"][2]["type"] = "timestamp"
    doc["fields"][4]["x-etl-decimal"] = {"precision": 50, "scale": 2}
    doc["fields"][8]["constraints"]["pattern"] = "(a"
    doc["fields"][5].pop("x-etl-enum-file")  # relative to the schema's folder: not in tmp_path
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    result = etl("schema", "check", str(bad))
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4, lines
    for word in ("x-etl-reject-threshold", "transaction_date", "precision", "merchant_category_code"):
        assert sum(word in line for line in lines) >= 1, (word, lines)
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    result = etl("schema", "check", str(broken))
    assert result.exit_code == 1 and "not JSON" in result.stdout
