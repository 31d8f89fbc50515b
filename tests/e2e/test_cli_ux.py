"""UX2 and UX3 on the emulator: `etl list` / `etl status` tables, progress, the HTML report
(rendered by headless Chromium), and `etl local run`'s output in a log (SPEC UX1-UX3)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from etl_cli import render
from etl_cli.main import cli
from etl_local.datagen import generate_csv

from .conftest import Stack

pytestmark = pytest.mark.e2e

ETL = Path(sys.executable).with_name("etl")
CHROMIUM = Path("/usr/bin/chromium")
XSS = "<script>alert('x')</script>"


def cli_base(stack: Stack, name: str) -> list[str]:
    """A stack named ``name`` on the emulator whose outputs point at the e2e pipeline."""
    o = stack.outputs
    outputs = {
        "BucketName": o.bucket,
        "TableName": o.table,
        "StateMachineArn": o.state_machine_arn,
        "ResultQueueUrl": o.results_queue_url,
        "AlertTopicArn": o.alerts_topic_arn,
        "DefaultSchemaPartners": o.default_schema_partners,  # SEC2: acme, acme2 (tests/e2e/conftest.py)
    }
    template = {
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": f"{name}-marker"}}},
        "Outputs": {k: {"Value": v} for k, v in outputs.items()},
    }
    stack.pipeline.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    return ["--stack", name, "--region", "us-east-1", "--endpoint", stack.emulator.endpoint]


def upload_good_and_bad(stack: Stack, tmp_path: Path) -> tuple[dict, dict, object]:
    good = tmp_path / "good.csv"
    stats = generate_csv(good, rows=1500, seed=8, bad_row_share=0.006)  # below the 1% threshold
    bad = tmp_path / "bad.csv"
    generate_csv(bad, rows=300, seed=9, bad_row_share=0.0)
    head, rest = bad.read_bytes().split(b"\n", 1)
    bad.write_bytes(head.replace(b"currency", b"ccy") + b"\n" + rest)
    g = stack.upload(good, "default")
    b = stack.upload(bad, "globex")  # no schema of its own: the default one
    assert stack.wait(g["file_id"]).status == "SUCCEEDED"
    assert stack.wait(b["file_id"]).status == "FAILED"
    return g, b, stats


def test_UX2_list_has_a_header_the_reason_and_filters(stack: Stack, tmp_path: Path) -> None:
    good, bad, stats = upload_good_and_bad(stack, tmp_path)
    base = cli_base(stack, "EtlPipeline-uxlist")
    runner = CliRunner()

    listed = runner.invoke(cli, [*base, "list"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split() == ["FILE", "ID", *render.FILE_COLUMNS[1:]]
    by_id = {line.split()[0]: line for line in lines[1:]}
    assert set(by_id) == {good["file_id"], bad["file_id"]}
    failed = by_id[bad["file_id"]]
    reason = failed[lines[0].index("REASON") :]
    assert "ccy" in reason or "SchemaMismatch" in reason, failed
    assert len(reason) <= render.REASON_WIDTH
    assert " globex " in failed and " FAILED " in failed
    ok = by_id[good["file_id"]]
    share = f"{stats.bad_rows / stats.rows * 100:.2f}%"
    assert share in ok and f"{stats.rows:,}" in ok, ok
    assert re.search(r"\d+\.\d s", ok), ok  # duration

    def ids(*args: str) -> set[str]:
        res = runner.invoke(cli, [*base, "list", *args])
        assert res.exit_code == 0, res.output
        return (
            {line.split()[0] for line in res.output.splitlines()[1:]} if res.output != "no files\n" else set()
        )

    assert ids("--status", "FAILED") == {bad["file_id"]}
    assert ids("--partner", "default") == {good["file_id"]}
    assert ids("--partner", "globex", "--status", "SUCCEEDED") == set()
    assert ids("--since", "1h") == {good["file_id"], bad["file_id"]}
    assert ids("--since", "2999-01-01") == set()
    as_json = runner.invoke(cli, [*base, "list", "--partner", "globex", "--json"])
    assert [f["file_id"] for f in json.loads(as_json.output)] == [bad["file_id"]]


def test_UX2_status_chunks_show_duration_and_attempts(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "chunky.csv"
    generate_csv(path, rows=2500, seed=5, bad_row_share=0.0)
    info = stack.upload(path, "default")
    rep = stack.wait(info["file_id"])
    assert rep.status == "SUCCEEDED" and (rep.chunks or 0) >= 3
    base = cli_base(stack, "EtlPipeline-uxstatus")
    res = CliRunner().invoke(cli, [*base, "status", info["file_id"], "--chunks"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith("CHUNK"))
    assert lines[header_at].split() == list(render.CHUNK_COLUMNS)
    rows = lines[header_at + 1 :]
    assert len(rows) == rep.chunks
    for row in rows:
        cells = row.split()
        assert cells[1] == "SUCCEEDED"
        assert cells[5] == "1", row  # attempts
        assert re.fullmatch(r"\d+\.\d", cells[6]) and cells[7] == "s", row  # duration "0.3 s"


def test_UX2_upload_reports_every_byte_and_wait_prints_chunks_only_without_json(
    stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "progress.csv"
    generate_csv(path, rows=1200, seed=6, bad_row_share=0.0)
    sent: list[int] = []
    info = stack.pipeline.upload(path, "default", name="progress-1.csv", progress=sent.append)
    assert sent and sum(sent) == path.stat().st_size == info["size"]
    stack.wait(info["file_id"])

    base = cli_base(stack, "EtlPipeline-uxwait")
    runner = CliRunner()
    plain = runner.invoke(cli, [*base, "upload", str(path), "--partner", "acme", "--wait"])
    assert plain.exit_code == 0, plain.output
    done = re.search(r"^SUCCEEDED: (\d+)/(\d+) chunks done$", plain.output, re.M)
    assert done and done.group(1) == done.group(2), plain.output
    quiet = runner.invoke(cli, [*base, "upload", str(path), "--partner", "acme2", "--wait", "--json"])
    assert quiet.exit_code == 0, quiet.output
    # The in-process handlers print their metric/log JSON to the same stdout; beside those,
    # exactly the report object and no progress line.
    ours = [
        line for line in quiet.output.splitlines() if line and not line.startswith(('{"_aws"', '{"level"'))
    ]
    assert len(ours) == 1, ours
    assert json.loads(ours[0])["status"] == "SUCCEEDED"
    assert "chunks done" not in quiet.output


def dump_dom(html_file: Path) -> str:
    """The page as headless Chromium renders it (no network, throwaway profile)."""
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: `make test-deps` installs Debian's chromium package")
    with tempfile.TemporaryDirectory(prefix="etl-chromium-") as profile:
        proc = subprocess.run(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--dump-dom",
                html_file.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    assert proc.returncode == 0 and "<html" in proc.stdout, proc.stderr[-2000:]
    return proc.stdout


def dom_text(dom: str) -> str:
    text = re.sub(r"<style.*?</style>", " ", dom, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text)
    return " ".join(text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").split())


def test_UX3_report_is_one_safe_page_with_the_numbers_chromium_renders(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "evil.csv"
    stats = generate_csv(path, rows=1800, seed=12, bad_row_share=0.005)
    lines = path.read_text().splitlines(keepends=True)
    # A rejected value carrying markup: transaction_id breaks its pattern.
    fields = lines[5].split(",")
    lines.insert(6, ",".join([XSS.replace(",", ""), *fields[1:]]))
    path.write_text("".join(lines))
    info = stack.upload(path, "default")
    rep = stack.wait(info["file_id"])
    assert rep.status == "SUCCEEDED", rep.error
    rows_total, rejected = stats.rows + 1, stats.bad_rows + 1
    assert (rep.rows_total, rep.rows_rejected) == (rows_total, rejected)

    out = tmp_path / "report.html"
    res = CliRunner().invoke(
        cli, [*cli_base(stack, "EtlPipeline-uxreport"), "report", info["file_id"], "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str(out)
    html = out.read_text()

    # Self-contained and inert: no script, no external resource, everything escaped.
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    assert not re.search(r"\b(src|href)\s*=|url\(|@import", html, re.I)
    assert "default-src 'none'" in html

    dom = dump_dom(out)
    assert "<script" not in dom.lower()  # the partner's markup stayed text
    text = dom_text(dom)
    assert "SUCCEEDED" in text
    assert f"{rows_total:,} rows total" in text.lower() or f"{rows_total:,} ROWS TOTAL" in text
    assert f"{rejected:,}" in text and f"Rejects ({rejected:,})" in text
    assert XSS.replace(",", "") in text  # shown as text in the sample rejects
    # Rejects by rule and by column are charts; the sample names line, column, value.
    assert dom.count("<svg") >= 3
    assert "by rule" in text and "by column" in text and "pattern" in text
    assert f"Chunks ({rep.chunks})" in text
    assert "transactions_v1" in text  # schema
    assert info["file_id"] in text


def test_UX1_UX3_local_run_in_a_log_writes_the_report_and_never_folds(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    stats = generate_csv(path, rows=1500, seed=31, bad_row_share=0.005)
    env = {**os.environ, "ETL_LOCAL_DIR": str(tmp_path / "state"), "COLUMNS": "40"}
    env.pop("AWS_ENDPOINT_URL", None)
    proc = subprocess.run(
        [str(ETL), "local", "run", str(path), "--chunk-mb", "0.1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and not re.search(r"(?<![\w-])b['\"]", out)
    assert "end-of-life" not in out and "feature flags" not in out
    lines = proc.stdout.splitlines()
    assert all(len(line) > 40 for line in lines if "s3://" in line)  # never folded at COLUMNS
    for label in ("outputs", "rejects", "manifest"):
        uri = next(line.split()[-1] for line in lines if line.startswith(label + " "))
        assert re.fullmatch(r"s3://[\w.-]+/\S+", uri), uri
    report = next(line.split(maxsplit=1)[1] for line in lines if line.startswith("report "))
    file_id = next(line.split()[-1] for line in lines if line.startswith("file id "))
    assert Path(report) == tmp_path / "state" / "results" / file_id / "report.html"
    assert f"{stats.rows:,}" in Path(report).read_text()
    assert re.search(r"^SUCCEEDED: (\d+)/\1 chunks done$", proc.stdout, re.M), proc.stdout
