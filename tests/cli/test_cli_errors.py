"""SPEC UX7/UX8: every bad argument, missing file, unknown value, stopped emulator or missing AWS
configuration is one `error: ...` line and a documented exit code; the exit-code table in
docs/cli.md is the one in etl_cli/exits.py; the state directory does not depend on the
working directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from etl_cli import exits, main

from .test_cli_output import ETL, REPO, assert_one_line_user_error

NO_AWS = {
    "AWS_CONFIG_FILE": "/nonexistent/config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
}
AWS_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def etl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in AWS_VARS and k != "ETL_STACK"}
    full.update(NO_AWS)
    full.update(env or {})
    return subprocess.run(
        [str(ETL), *args], capture_output=True, text=True, env=full, timeout=120, check=False
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["list"], ["no AWS region", "AWS_REGION", "--local"]),
        (["--stack", "EtlPipeline-x", "query", "SELECT 1"], ["no AWS region"]),
        (["--stack", "EtlPipeline-x", "history"], ["no AWS region"]),
        (["dr", "status"], ["no AWS credentials"]),  # dr names its regions
        (["--region", "us-east-1", "status", "f" * 32], ["no AWS credentials", "AWS_PROFILE"]),
        (["--region", "us-east-1", "--profile", "nobody", "list"], ["nobody"]),
    ],
)
def test_UX7_no_aws_configuration_is_one_line_saying_what_to_set(
    args: list[str], expected: Sequence[str]
) -> None:
    assert_one_line_user_error(etl(*args), *expected)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["list", "--status", "BOGUS"], ["BOGUS", "failed"]),
        (["query", "SELECT 1", "--format", "xml"], ["xml"]),
        (["history", "--format", "yaml"], ["yaml"]),
        (["local", "run", "."], ["."]),
        (["upload", "no-such.csv", "--partner", "p"], ["no-such.csv"]),
        (["query"], ["SQL"]),
    ],
)
def test_UX8_bad_option_values_and_paths_are_one_line_and_exit_2(
    args: list[str], expected: Sequence[str]
) -> None:
    assert_one_line_user_error(etl(*args), *expected)


@pytest.mark.parametrize(
    "args",
    [
        ["--local", "status", "0" * 32],
        ["--local", "list"],
        ["--local", "query", "SELECT 1"],
        ["--local", "history"],
        ["--local", "dr", "status"],
        ["query", "SELECT 1"],  # the emulator is the query default
    ],
)
def test_UX7_a_stopped_emulator_is_one_line_naming_the_state_dir(args: list[str], tmp_path: Path) -> None:
    proc = etl(*args, env={"ETL_LOCAL_DIR": str(tmp_path)})
    assert_one_line_user_error(proc, "no local emulator is running", str(tmp_path))


def test_UX7_state_directory_is_absolute_and_the_same_from_any_folder(tmp_path: Path) -> None:
    code = "from etl_local import state; print(state.STATE_DIR)"
    env = {k: v for k, v in os.environ.items() if k != "ETL_LOCAL_DIR"}
    env["XDG_STATE_HOME"] = str(tmp_path / "xdg")
    seen = set()
    for cwd in (REPO, tmp_path, Path("/")):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        seen.add(out)
    assert seen == {str(tmp_path / "xdg" / "etl-local")}
    # ETL_LOCAL_DIR wins, made absolute (the background server gets the same directory).
    env["ETL_LOCAL_DIR"] = "rel-state"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == str(tmp_path / "rel-state")


def test_UX7_local_down_without_an_emulator_says_so(tmp_path: Path) -> None:
    proc = etl("local", "down", env={"ETL_LOCAL_DIR": str(tmp_path)})
    assert proc.returncode == 0 and proc.stdout.strip() == "no emulator was running", proc


def test_UX8_a_failed_aws_call_is_one_line_and_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def denied(*_: object, **__: object) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no\nway"}}, "DescribeStacks")

    monkeypatch.setattr(main.cli, "main", denied)
    with pytest.raises(SystemExit) as exit_:
        main.main(["list"])
    assert exit_.value.code == exits.INFRASTRUCTURE == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: AWS: ") and "AccessDenied" in err


def test_UX8_exit_code_table_in_the_docs_is_the_code_s() -> None:
    text = (REPO / "docs" / "cli.md").read_text()
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = [
        [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if re.match(r"\|\s*`?\d", line)
    ]
    assert [(int(r[0]), r[1]) for r in rows] == [(c, outcome) for c, outcome, _ in exits.EXIT_CODES]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["validate", "no-such.csv"], ["no-such.csv"]),
        (["validate", "."], ["."]),
        (["validate", "README.md", "--partner", "p", "--schema", "etl/schemas/default.json"], ["not both"]),
        (["validate", "README.md", "--schema", "pyproject.toml"], ["pyproject.toml"]),
        (["schema", "infer", "no-such.csv", "--partner", "p"], ["no-such.csv"]),
        (["schema", "check", "no-such.json"], ["no-such.json"]),
    ],
)
def test_UX5_offline_commands_refuse_bad_paths_in_one_line(args: list[str], expected: list[str]) -> None:
    proc = subprocess.run(
        [str(ETL), *args], capture_output=True, text=True, cwd=REPO, timeout=120, check=False
    )
    assert_one_line_user_error(proc, *expected)
