"""`etl local run --json` end to end, as a user runs it: a subprocess with its own emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from etl_local.datagen import generate_csv

pytestmark = pytest.mark.e2e

ETL = Path(sys.executable).with_name("etl")


def test_local_run_json_prints_one_object_and_exits_zero(tmp_path: Path) -> None:
    path = tmp_path / "acme.csv"
    stats = generate_csv(path, rows=3000, seed=21, bad_row_share=0.003)
    env = {**os.environ, "ETL_LOCAL_DIR": str(tmp_path / "state")}
    env.pop("AWS_ENDPOINT_URL", None)
    proc = subprocess.run(
        [str(ETL), "local", "run", str(path), "--partner", "default", "--chunk-mb", "0.1", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    report = json.loads(lines[0])
    assert report["status"] == "SUCCEEDED"
    assert report["error"] is None
    assert (report["rows_total"], report["rows_valid"], report["rows_rejected"]) == (
        stats.rows,
        stats.valid_rows,
        stats.bad_rows,
    )
    assert report["chunks"] >= 3
    assert report["manifest"].endswith(f"/manifests/default/{report['file_id']}.json")
    # The emulator it started is gone again, but its results were copied to disk first.
    assert not (tmp_path / "state" / "emulator.json").exists()
    copy = Path(report["local_copy"])
    assert copy == tmp_path / "state" / "results" / report["file_id"]
    parts = sorted(copy.glob("output/**/*.parquet"))
    assert len(parts) == report["chunks"]
    assert sum(pq.read_metadata(p).num_rows for p in parts) == stats.valid_rows
    manifest = json.loads((copy / "manifests" / "default" / f"{report['file_id']}.json").read_text())
    assert manifest["file_id"] == report["file_id"]
    # UX3: the HTML report is written beside the results and named in the JSON.
    assert Path(report["report"]) == copy / "report.html"
    assert f"{stats.rows:,}" in Path(report["report"]).read_text()
    rejects = list(copy.glob("rejected/**/*.csv"))
    assert sum(len(p.read_text().splitlines()) - 1 for p in rejects) >= stats.bad_rows


def test_local_up_run_reuse_and_a_failed_file_exits_one(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    generate_csv(good, rows=600, seed=2, bad_row_share=0.0)
    bad = tmp_path / "bad.csv"
    head, rest = good.read_bytes().split(b"\n", 1)
    bad.write_bytes(head.replace(b"amount", b"amt") + b"\n" + rest)
    env = {**os.environ, "ETL_LOCAL_DIR": str(tmp_path / "state")}
    env.pop("AWS_ENDPOINT_URL", None)

    def etl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ETL), *args], capture_output=True, text=True, env=env, timeout=600, check=False
        )

    up = etl("local", "up")
    assert up.returncode == 0, up.stderr[-3000:]
    try:
        state = json.loads((tmp_path / "state" / "emulator.json").read_text())
        # UX7/UX6: up names its state directory and the client files it wrote for this emulator.
        assert f"state directory {tmp_path / 'state'}" in up.stdout
        assert (tmp_path / "state" / "client.env").read_text().count("PYICEBERG_HOME") == 1
        assert state["endpoint"] in (tmp_path / "state" / ".pyiceberg.yaml").read_text()
        failed = etl("local", "run", str(bad), "--json")
        assert failed.returncode == 1, failed.stderr[-3000:]
        report = json.loads(failed.stdout)
        assert report["status"] == "FAILED"
        assert report["error"].startswith("SchemaMismatch: ")
        assert "missing columns: 'amount'" in report["error"]
        assert "unexpected columns: 'amt'" in report["error"]
        ok = etl("local", "run", str(good), "--json")
        assert ok.returncode == 0, ok.stderr[-3000:]
        good_report = json.loads(ok.stdout)
        assert good_report["rows_total"] == 600
        # DATA6: the report reads the published rows back from the Iceberg table.
        assert isinstance(good_report["snapshot_id"], int)
        assert good_report["published_rows"] == 600
        # Both runs reused the emulator `local up` started; the operator commands see both files.
        assert json.loads((tmp_path / "state" / "emulator.json").read_text())["pid"] == state["pid"]
        listed = etl("--local", "list", "--json")
        assert listed.returncode == 0, listed.stderr[-3000:]
        assert sorted(f["status"] for f in json.loads(listed.stdout)) == ["FAILED", "SUCCEEDED"]
    finally:
        down = etl("local", "down")
    assert down.returncode == 0
    assert "discarded" in down.stdout and "kept on disk" in down.stdout  # UX7
    assert not (tmp_path / "state" / "emulator.json").exists()


def test_TBL7_threshold_failed_file_is_diagnosable_and_TBL2_fault_flag(tmp_path: Path) -> None:
    """A file the reject threshold fails: `local run` exits 1 with the reason (not a storage
    error), its rejects are kept and copied, `report` and `download` work for it. And
    `--fault` arms a named fault point in the emulator a command starts."""
    noisy = tmp_path / "noisy.csv"
    stats = generate_csv(noisy, rows=800, seed=5, bad_row_share=0.05)  # 5 % > the 1 % threshold
    good = tmp_path / "good.csv"
    generate_csv(good, rows=600, seed=2, bad_row_share=0.0)
    env = {**os.environ, "ETL_LOCAL_DIR": str(tmp_path / "state")}
    env.pop("AWS_ENDPOINT_URL", None)
    env.pop("ETL_LOCAL_FAULTS", None)

    def etl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ETL), *args], capture_output=True, text=True, env=env, timeout=600, check=False, cwd=tmp_path
        )

    refused = etl("local", "up", "--fault", "no.such_point")
    assert refused.returncode == 2 and "unknown fault point" in refused.stderr
    up = etl("local", "up", "--fault", "finalize.after_commit")
    assert up.returncode == 0, up.stderr[-3000:]
    try:
        failed = etl("local", "run", str(noisy), "--json")
        assert failed.returncode == 1, failed.stderr[-3000:] + failed.stdout[-3000:]
        report = json.loads(failed.stdout)
        assert report["status"] == "FAILED"
        assert report["error"].startswith("TooManyRejects: ")
        assert report["rows_rejected"] == stats.bad_rows
        fid = report["file_id"]
        # The partner's rejects CSV is kept (and in the local copy), the valid rows are not.
        down = etl("--local", "download", fid, "--to", str(tmp_path / "dl"))
        assert down.returncode == 0, down.stderr[-3000:]
        csvs = list((tmp_path / "dl").glob("rejected/**/*.csv"))
        assert sum(len(p.read_text().splitlines()) - 1 for p in csvs) >= stats.bad_rows
        assert not list((tmp_path / "dl").glob("output/**/*.parquet"))
        page = etl("--local", "report", fid, "--out", str(tmp_path / "r.html"))
        assert page.returncode == 0, page.stderr[-3000:]
        assert "TooManyRejects" in (tmp_path / "r.html").read_text()
        # The armed point fires once for this file too; Finalize's retry finds its commit.
        ok = etl("local", "run", str(good), "--json")
        assert ok.returncode == 0, ok.stderr[-3000:]
        assert json.loads(ok.stdout)["published_rows"] == 600
        log = (tmp_path / "state" / "server.log").read_text(errors="replace")
        assert "injected fault finalize.after_commit for file " + json.loads(ok.stdout)["file_id"] in log
    finally:
        assert etl("local", "down").returncode == 0
