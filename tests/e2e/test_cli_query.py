"""SPEC UX4 on the emulator: `etl query` errors, output formats, Athena's metadata tables and
time travel locally, and `etl history` (the load audit trail)."""

from __future__ import annotations

import csv
import datetime
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from etl_cli.dataset import emulator_catalog, snapshots
from etl_cli.main import cli
from etl_local.datagen import generate_csv

from .conftest import Stack
from .test_dataset import use_cli_state

pytestmark = pytest.mark.e2e


def etl(*args: str) -> Result:
    return CliRunner().invoke(cli, ["--local", *args])


def rows_json(*args: str) -> list[dict[str, Any]]:
    result = etl(*args, "--format", "json")
    assert result.exit_code == 0, (result.output, result.stderr)
    return json.loads(result.stdout)


def assert_one_line_error(result: Result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]


@pytest.fixture
def two_loads(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Two files of two partners loaded one after the other; the CLI pointed at the emulator."""
    loads = {}
    for name, partner, rows, seed in (("a.csv", "default", 400, 1), ("b.csv", "acme", 250, 2)):
        path = tmp_path / name
        generate_csv(path, rows=rows, seed=seed, bad_row_share=0.0)
        info = stack.upload(path, partner)
        rep = stack.wait(info["file_id"])
        assert rep.status == "SUCCEEDED", rep.error
        loads[name] = {**info, "rows": rep.rows_valid, "snapshot_id": rep.snapshot_id}
    use_cli_state(stack, tmp_path, monkeypatch)
    return loads


def test_UX4_query_errors_are_one_line_and_exit_2(two_loads: dict[str, Any]) -> None:
    assert_one_line_error(etl("query", "SELEC 1"), "syntax")
    assert_one_line_error(etl("query", "SELECT * FROM no_such_table"), "no_such_table")
    assert_one_line_error(etl("query", "SELECT * FROM transactions FOR VERSION AS OF 12345"), "12345")
    assert_one_line_error(
        etl("query", "SELECT count(*) FROM transactions FOR TIMESTAMP AS OF TIMESTAMP '2001-01-01 00:00:00'"),
        "no snapshot",
    )


def test_UX4_query_formats_never_cut_a_value(two_loads: dict[str, Any]) -> None:
    sql = "SELECT file_id, count(*) AS n FROM transactions GROUP BY 1 ORDER BY 2 DESC"
    expected = [[two_loads[n]["file_id"], str(two_loads[n]["rows"])] for n in ("a.csv", "b.csv")]
    # Not a terminal: CSV by default, every file id whole.
    result = etl("query", sql)
    assert result.exit_code == 0, result.stderr
    assert list(csv.reader(io.StringIO(result.stdout))) == [["file_id", "n"], *expected]
    assert rows_json("query", sql) == [{"file_id": f, "n": int(n)} for f, n in expected]
    # A table forced into a narrow pipe folds long values, never shortens them.
    table = etl("query", sql, "--format", "table").stdout
    assert "…" not in table
    assert all(f[:16] in table for f, _ in expected)


def test_UX4_metadata_tables_and_time_travel_work_locally(stack: Stack, two_loads: dict[str, Any]) -> None:
    a, b = two_loads["a.csv"], two_loads["b.csv"]
    snaps = snapshots(emulator_catalog(stack.emulator.endpoint), stack.outputs.glue_database)
    assert [s["snapshot_id"] for s in snaps] == [a["snapshot_id"], b["snapshot_id"]]

    got = rows_json("query", 'SELECT snapshot_id, operation, summary FROM "transactions$snapshots"')
    assert [(r["snapshot_id"], r["operation"]) for r in got] == [(s["snapshot_id"], "append") for s in snaps]
    assert got[1]["summary"]["etl.file_id"] == b["file_id"]
    history = rows_json("query", 'SELECT snapshot_id, is_current_ancestor FROM "transactions$history"')
    assert [r["snapshot_id"] for r in history] == [a["snapshot_id"], b["snapshot_id"]]
    files = rows_json("query", 'SELECT sum(record_count) AS n FROM "transactions$files"')
    assert files == [{"n": a["rows"] + b["rows"]}]
    parts = rows_json("query", 'SELECT sum(record_count) AS n, count(*) AS p FROM "transactions$partitions"')
    assert parts[0]["n"] == a["rows"] + b["rows"] and parts[0]["p"] >= 2

    # Time travel, Athena's syntax: the table as it was after the first load.
    count = "SELECT count(*) AS n, count(DISTINCT file_id) AS f FROM transactions"
    assert rows_json("query", count) == [{"n": a["rows"] + b["rows"], "f": 2}]
    version = f"{count} FOR VERSION AS OF {a['snapshot_id']}"
    assert rows_json("query", version) == [{"n": a["rows"], "f": 1}]
    first = datetime.datetime.fromtimestamp(snaps[0]["timestamp_ms"] / 1000, tz=datetime.UTC)
    stamp = first.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    as_of = f"{count} FOR TIMESTAMP AS OF TIMESTAMP '{stamp} UTC'"
    assert rows_json("query", as_of) == [{"n": a["rows"], "f": 1}]
    # Both versions in one statement (the view of each snapshot is its own).
    diff = (
        f"SELECT (SELECT count(*) FROM transactions) - (SELECT count(*) FROM transactions "
        f"FOR VERSION AS OF {a['snapshot_id']}) AS added"
    )
    assert rows_json("query", diff) == [{"added": b["rows"]}]


def test_UX4_history_lists_each_load_with_its_snapshot(two_loads: dict[str, Any]) -> None:
    a, b = two_loads["a.csv"], two_loads["b.csv"]
    loads = rows_json("history")
    assert [
        (r["file_id"], r["partner"], r["source_key"], r["rows_added"], r["rows_removed"]) for r in loads
    ] == [
        (a["file_id"], "default", a["key"], a["rows"], 0),
        (b["file_id"], "acme", b["key"], b["rows"], 0),
    ]
    assert [r["snapshot_id"] for r in loads] == [a["snapshot_id"], b["snapshot_id"]]
    assert [r["file_id"] for r in rows_json("history", "--partner", "acme")] == [b["file_id"]]
    assert rows_json("history", "--since", "2999-01-01") == []
    assert len(rows_json("history", "--since", "1h")) == 2
    text = etl("history")
    assert text.exit_code == 0 and a["file_id"] in text.stdout  # CSV off a terminal: ids whole
    assert_one_line_error(etl("history", "--since", "yesterday"), "yesterday")


def test_UX5_validate_counts_equal_what_the_pipeline_publishes(stack: Stack, tmp_path: Path) -> None:
    """The same file offline and through the emulator: equal counts, equal rejects by rule and
    column (the pipeline's from the transaction_rejects table), a repeated id across chunks."""
    from etl.contracts import REJECTS_TABLE
    from etl_cli.dataset import rows_of_file
    from etl_cli.validate import validate_file

    from .conftest import SMALL_CHUNK

    src = tmp_path / "src.csv"
    generate_csv(src, rows=2500, seed=17, bad_row_share=0.006)
    lines = src.read_bytes().rstrip(b"\n").split(b"\n")
    first_id = lines[1].split(b",", 1)[0]
    lines[-1] = first_id + b"," + lines[-1].split(b",", 1)[1]  # repeated far from the first
    path = tmp_path / "tx.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")

    offline = validate_file(path, "etl/schemas/default.json", chunk_size=SMALL_CHUNK, workers=2)
    assert offline.chunks > 1 and offline.rejects_by_rule["duplicate"] >= 1

    info = stack.upload(path, "default")
    rep = stack.wait(info["file_id"])
    assert rep.status == offline.status == "SUCCEEDED", rep.error
    assert (rep.rows_total, rep.rows_valid, rep.rows_rejected) == (
        offline.rows_total,
        offline.rows_valid,
        offline.rows_rejected,
    )
    cat = emulator_catalog(stack.emulator.endpoint, stack.outputs.region)
    rejects = rows_of_file(cat, stack.outputs.glue_database, info["file_id"], REJECTS_TABLE).to_pylist()
    by_rule: dict[str, int] = {}
    by_column: dict[str, int] = {}
    for r in rejects:
        by_rule[r["rule"]] = by_rule.get(r["rule"], 0) + 1
        by_column[r["column_name"]] = by_column.get(r["column_name"], 0) + 1
    assert by_rule == dict(offline.rejects_by_rule)
    assert by_column == dict(offline.rejects_by_column)


def test_UX6_written_client_config_lets_pyiceberg_and_duckdb_read_the_tables(
    stack: Stack, two_loads: dict[str, Any], tmp_path: Path
) -> None:
    """The files `etl local up` writes: the pyiceberg CLI, a pyiceberg script and DuckDB reach
    the tables with nothing but `. client.env` (no endpoint, no keys, no arguments)."""
    import os
    import shlex
    import subprocess
    import sys

    from etl_local.clients import write_client_config

    paths = write_client_config(stack.emulator.endpoint, stack.outputs.region, tmp_path / "state")
    db = stack.outputs.glue_database
    total = sum(load["rows"] for load in two_loads.values())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYICEBERG_"))}
    env["HOME"] = str(tmp_path)  # no ~/.pyiceberg.yaml: only client.env points at the config

    def sourced(command: str) -> str:
        script = f". {shlex.quote(paths['env_file'])} && {command}"
        proc = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    pyiceberg = Path(sys.executable).with_name("pyiceberg")
    assert db in sourced(f"{pyiceberg} --catalog etl-local list")
    tables = sourced(f"{pyiceberg} --catalog etl-local list {db}")
    assert "transactions" in tables and "transaction_rejects" in tables
    script = (
        "from pyiceberg.catalog import load_catalog; "
        f"t = load_catalog('etl-local').load_table('{db}.transactions'); "
        "con = t.scan().to_duckdb(table_name='transactions'); "
        "print(t.scan().to_arrow().num_rows, con.execute('SELECT count(*) FROM transactions').fetchone()[0])"
    )
    out = sourced(f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}").split()
    assert out == [str(total), str(total)]


def test_UX7_dr_status_says_it_deploys_the_second_region_once(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_cli_state(stack, tmp_path, monkeypatch)
    first = etl("dr", "status")
    assert first.exit_code == 0, (first.output, first.stderr)
    assert "deploying the DR region (eu-west-1)" in first.stderr  # not 30 s of silence
    assert "eu-west-1" in first.stdout
    again = etl("dr", "status")
    assert again.exit_code == 0 and again.stderr == ""  # deployed already: nothing to say
