"""UX3's page, without a browser: rules from reasons, counts, escaping (the Chromium test is
tests/e2e/test_cli_ux.py)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from etl.core.process import RULES, process_chunk
from etl.core.schema import load_schema
from etl_cli import html_report
from etl_local.datagen import generate_csv


def test_UX3_every_reason_the_validator_writes_maps_to_a_rule(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    generate_csv(path, rows=4000, seed=3, bad_row_share=0.05)
    result = process_chunk(path.read_bytes(), load_schema("default"), 2)
    assert result.rows_rejected > 50
    # UX8: read from the reason, the rule is the validator's own code (one vocabulary).
    for line, _column, rule, _value, reason in result.reject_entries:
        assert html_report.rule_of({"reason": reason}) == rule, (line, reason)
    assert {"pattern", "enum", "required", "type", "range", "fields"} <= {e[2] for e in result.reject_entries}
    assert {e[2] for e in result.reject_entries} <= set(RULES)


def test_UX3_a_rule_column_wins_over_the_reason_text() -> None:
    assert html_report.rule_of({"rule": "R042", "reason": "amount: '1e3' is not a decimal number"}) == "R042"
    assert html_report.rule_of({"reason": "amount: '1e3' is not a decimal number"}) == "type"
    assert html_report.rule_of({"reason": "something new"}) == "other"


def _rejects_csv(rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def test_UX3_counts_by_rule_and_column_and_the_offending_value() -> None:
    columns = ["transaction_id", "amount", "currency"]
    text = _rejects_csv(
        [
            {
                "line": "4",
                "column": "amount",
                "reason": "amount: 'x' is not a decimal number",
                "record": "t1,x,USD",
            },
            {
                "line": "9",
                "column": "currency",
                "reason": "currency: 'usd' does not match the pattern [A-Z]{3}",
                "record": "t2,1.00,usd",
            },
            {"line": "12", "column": "*", "reason": "expected 3 fields, found 4", "record": "a,b,c,d\n"},
        ]
    )
    data = html_report.ReportData(file={}, chunks=[], report={})
    html_report.add_rejects(data, text, columns)
    assert data.rejects_total == 3
    assert data.by_rule == {"type": 1, "pattern": 1, "fields": 1}
    assert data.by_column == {"amount": 1, "currency": 1, "*": 1}
    assert [(r.line, r.value) for r in data.sample] == [(4, "x"), (9, "usd"), (12, "a,b,c,d")]


def test_UX3_everything_from_the_data_is_escaped() -> None:
    evil = "<img src=x onerror=alert(1)>"
    data = html_report.ReportData(
        file={
            "file_id": "f" * 32,
            "status": "FAILED",
            "partner": evil,
            "original_key": f"incoming/{evil}/a.csv",
            "error": evil,
            "rows_total": 10,
            "rows_rejected": 1,
        },
        chunks=[{"chunk_id": "CHUNK#00001", "status": "FAILED", "error": evil}],
        report={"outputs": evil},
        schema={"title": evil, "fields": [{"name": evil, "type": "string"}]},
        schema_name="default.json",
        manifest={"note": evil},
    )
    html_report.add_rejects(
        data, _rejects_csv([{"line": "2", "column": evil, "reason": evil, "record": evil}]), []
    )
    page = html_report.render(data)
    assert "<img" not in page and "onerror=alert(1)>" not in page
    assert page.count("&lt;img src=x onerror=alert(1)&gt;") >= 8


def test_UX8_the_failure_reason_names_its_type_once() -> None:
    data = html_report.ReportData(
        file={
            "file_id": "f" * 32,
            "status": "FAILED",
            "error_type": "SchemaMismatch",
            "error": "SchemaMismatch: header has 'ccy' where the schema expects 'currency'",
        },
        chunks=[],
        report={},
    )
    page = html_report.render(data)
    assert page.count("SchemaMismatch") == 1
    assert "<b>SchemaMismatch</b>: header has" in page
