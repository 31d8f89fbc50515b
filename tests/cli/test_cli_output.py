"""UX1: what `etl` prints when it is not a terminal (CI logs, `> file`): no traceback for a user
error, no bytes reprs, unbroken URIs, `--version`, help on every option (SPEC UX1)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from etl_cli import render
from etl_cli.main import DIST_NAME, cli
from etl_cli.pipeline import FileReport

REPO = Path(__file__).resolve().parents[2]
ETL = Path(sys.executable).with_name("etl")
BYTES_REPR = re.compile(r"(?<![\w-])b['\"]")  # b'...' as Python prints bytes (not "--chunk-mb'")


def run_etl(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`etl ...` in a subprocess with stdout/stderr captured: not a TTY, as in CI."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(ETL), *args], capture_output=True, text=True, env=full_env, timeout=timeout, check=False
    )


def assert_one_line_user_error(proc: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not BYTES_REPR.search(proc.stderr + proc.stdout)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for text in expected:
        assert text in lines[0]


def test_UX1_version_is_the_package_version() -> None:
    proc = run_etl("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"etl {importlib.metadata.version(DIST_NAME)}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["local", "run", "README.md", "--chunk-mb", "-5"], ["--chunk-mb", "-5"]),
        (["local", "run", "README.md", "--chunk-mb", "lots"], ["--chunk-mb", "lots"]),
        (["local", "demo", "--bad-share", "2"], ["--bad-share"]),
        (["local", "run", "no-such-file.csv"], ["no-such-file.csv"]),
        (["no-such-command"], ["no-such-command"]),
    ],
)
def test_UX1_bad_option_value_is_one_line_and_exit_2(args: list[str], expected: list[str]) -> None:
    assert_one_line_user_error(run_etl(*args), *expected)


def test_UX1_no_emulator_running_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = run_etl("--local", "status", "0" * 32, env={"ETL_LOCAL_DIR": str(tmp_path)})
    assert_one_line_user_error(proc, "no local emulator is running")


def test_UX1_bad_cdk_context_value_is_one_line_and_exit_2() -> None:
    """`cdk synth -c environmentSuffix=Bad_Name` runs app.py with the context in CDK_CONTEXT_JSON."""
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps({"environmentSuffix": "Bad_Name"})}
    env.pop("CDK_OUTDIR", None)
    proc = subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert_one_line_user_error(proc, "environmentSuffix", "Bad_Name")


def _long_report() -> FileReport:
    bucket = "etl-data-local-123456789012-us-east-1"
    fid = "beb26260f21bc2fb7ee345084f80010e"
    return FileReport(
        status="SUCCEEDED",
        file_id=fid,
        bucket=bucket,
        key="incoming/default/transactions-20261130-040428.csv",
        size_bytes=405524,
        rows_total=3000,
        rows_valid=2970,
        rows_rejected=30,
        chunks=4,
        chunks_succeeded=4,
        outputs=f"s3://{bucket}/output/transactions/partner=default/file_id={fid}/",
        rejects=f"s3://{bucket}/rejected/partner=default/file_id={fid}/",
        manifest=f"s3://{bucket}/manifests/default/{fid}.json",
    )


def test_UX1_report_never_folds_a_uri_when_not_a_tty() -> None:
    rep = _long_report()
    code = (
        "import json, sys; from etl_cli.pipeline import FileReport; "
        "from etl_cli.render import render_report; "
        "render_report(FileReport(**json.loads(sys.argv[1])), False)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(rep.to_json())],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "40"},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for uri in (rep.outputs, rep.rejects, rep.manifest, f"s3://{rep.bucket}/{rep.key}"):
        assert any(line.split()[-1] == uri for line in lines), (uri, proc.stdout)
    assert "\x1b[" not in proc.stdout  # no colour codes in a log
    assert re.search(r"^rows\s+3,000 total, 2,970 valid, 30 rejected \(1\.00%\)$", proc.stdout, re.M)


def _walk(command: click.Command, path: str) -> list[tuple[str, click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found += _walk(sub, f"{path} {name}")
    return found


UNIT_WORDS = ("seconds", "mb", "0-1", "seed", "rows")  # rows: a count of records


def test_UX1_every_command_option_and_argument_has_help_with_units() -> None:
    missing = []
    for path, command in _walk(cli, "etl"):
        if not (command.help or "").strip():
            missing.append(f"{path}: no help")
        for param in command.params:
            if isinstance(param, click.Option):
                if not (param.help or "").strip():
                    missing.append(f"{path} {param.opts[0]}: no help")
                elif isinstance(
                    param.type, (click.types.FloatParamType, click.types.IntParamType)
                ) and not any(word in param.help.lower() for word in UNIT_WORDS):
                    missing.append(f"{path} {param.opts[0]}: a number without its unit")
            elif isinstance(param, click.Argument):
                name = (param.name or "").upper()
                if name not in (command.help or ""):
                    missing.append(f"{path} {name}: argument not described in the command's help")
    assert missing == [], "\n".join(missing)


def test_UX1_list_and_chunk_tables_align_and_keep_reasons_on_one_line() -> None:
    files = [
        {
            "file_id": "a" * 32,
            "status": "FAILED",
            "partner": "acme_bank",
            "size": 2048,
            "rows_total": None,
            "created_at": "2026-11-30T04:00:00.000Z",
            "finished_at": "2026-11-30T04:00:12.500Z",
            "error": "SchemaMismatch: header does not match schema transactions_v1:\nmissing column amount; "
            + "x" * 200,
        },
        {
            "file_id": "b" * 32,
            "status": "SUCCEEDED",
            "partner": "default",
            "size": 3 * 1024 * 1024,
            "rows_total": 4000,
            "rows_rejected": 20,
            "created_at": "2026-11-30T04:01:00.000Z",
            "finished_at": "2026-11-30T04:02:30.000Z",
        },
    ]
    lines = render.render_file_list(files).splitlines()
    assert lines[0].split() == ["FILE", "ID", *render.FILE_COLUMNS[1:]]
    assert len(lines) == 3
    failed, ok = lines[1], lines[2]
    assert "acme_bank" in failed and "12.5 s" in failed
    reason = failed[lines[0].index("REASON") :]
    assert reason.startswith("SchemaMismatch: header does not match schema transactions")
    assert reason.endswith("...") and len(reason) == render.REASON_WIDTH
    assert "0.50%" in ok and "4,000" in ok and "1m30s" in ok and "3.0 MB" in ok
    # Columns line up: every STATUS cell starts under the header.
    col = lines[0].index("STATUS")
    assert failed[col:].startswith("FAILED") and ok[col:].startswith("SUCCEEDED")
