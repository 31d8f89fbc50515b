"""``etl``: the operator CLI, against a deployed stack or the local emulator.

etl --stack EtlPipeline-prod --region us-east-1 --profile prod list --status FAILED
etl --local status <file_id>          # the emulator started by `etl local up`
etl local demo                        # the main job on this machine
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from etl.aws.status import FILE_STATUSES
from etl_cli import exits, onboard
from etl_cli.pipeline import (
    OK_FILE_STATES,
    FileReport,
    Pipeline,
    PipelineError,
    make_session,
    outputs_from_stack,
    parse_since,
    require_credentials,
)
from etl_cli.render import (
    ROW_FORMATS,
    chunk_progress,
    render_chunks,
    render_file_list,
    render_report,
    render_rows,
    row_format,
    upload_progress,
)
from etl_cli.render import fmt_bytes as _fmt_bytes

DIST_NAME = "transaction-etl"  # pyproject's [project] name: `etl --version` reads its metadata

DEFAULT_STACK = "EtlPipeline-dev"


class Ctx:
    stack_explicit = False  # --stack or ETL_STACK given (etl query: Athena, not the emulator)

    def __init__(
        self, stack: str, region: str | None, profile: str | None, endpoint: str | None, local: bool
    ):
        self.stack, self.region, self.profile, self.endpoint, self.local = (
            stack,
            region,
            profile,
            endpoint,
            local,
        )

    def pipeline(self) -> Pipeline:
        if self.local or (self.endpoint is None and os.environ.get("ETL_LOCAL") == "1"):
            from etl_local import harness

            emu = harness.running_emulator()
            if emu is None:
                raise PipelineError(no_emulator())
            return Pipeline(*harness.local_stack(emu.endpoint))
        session = make_session(self.region, self.profile)
        return Pipeline(session, outputs_from_stack(session, self.stack, self.endpoint))


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(exits.USAGE)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DIST_NAME, prog_name="etl", message="%(prog)s %(version)s")
@click.option(
    "--stack",
    default=lambda: os.environ.get("ETL_STACK", DEFAULT_STACK),
    show_default="EtlPipeline-dev",
    help="Stack name whose outputs locate the pipeline (env ETL_STACK).",
)
@click.option("--region", default=lambda: os.environ.get("AWS_REGION"), help="AWS region (env AWS_REGION).")
@click.option("--profile", default=None, help="AWS profile name from ~/.aws/config.")
@click.option("--endpoint", default=None, help="Custom AWS endpoint URL (an emulator with a deployed stack).")
@click.option("--local", "local", is_flag=True, help="Use the local emulator started by `etl local up`.")
@click.pass_context
def cli(
    ctx: click.Context, stack: str, region: str | None, profile: str | None, endpoint: str | None, local: bool
) -> None:
    """Operate the transaction ETL pipeline (AWS or local emulator)."""
    ctx.obj = Ctx(stack, region, profile, endpoint, local)
    source = ctx.get_parameter_source("stack")
    ctx.obj.stack_explicit = (source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")) or bool(
        os.environ.get("ETL_STACK")
    )


# ---------------------------------------------------------------------------------------------
# Rendering


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, default=str, indent=2))


# ---------------------------------------------------------------------------------------------
# Commands valid against AWS and the emulator


@cli.command()
@click.argument("file_id_or_key")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option(
    "--chunks", "show_chunks", is_flag=True, help="Also list the chunks: status, rows, attempts, duration."
)
@click.pass_obj
def status(obj: Ctx, file_id_or_key: str, as_json: bool, show_chunks: bool) -> None:
    """Status of FILE_ID_OR_KEY: a file id, or the S3 key of the file (incoming/, processed/, failed/)."""
    try:
        pipe = obj.pipeline()
        file_id = pipe.resolve_file_id(file_id_or_key)
        rep = pipe.report(file_id)
    except PipelineError as exc:
        _fail(str(exc))
        return
    if as_json:
        data = rep.to_json()
        if show_chunks:
            data["chunk_items"] = pipe.list_chunks(file_id)
        _print_json(data)
        return
    render_report(rep, False)
    if show_chunks:
        chunks = pipe.list_chunks(file_id)
        click.echo("")
        click.echo(render_chunks(chunks) if chunks else "no chunks")


@cli.command(name="list")
@click.option(
    "--status",
    "status_",
    type=click.Choice(FILE_STATUSES, case_sensitive=False),
    default=None,
    help="Only files in this status.",
)
@click.option("--partner", default=None, help="Only files of this partner (the incoming/<partner>/ folder).")
@click.option(
    "--since", default=None, help="Only files registered since: ISO 8601 time, or an age like 30m, 6h, 2d."
)
@click.option("--json", "as_json", is_flag=True, help="Print the file items as a JSON list.")
@click.pass_obj
def list_(obj: Ctx, status_: str | None, partner: str | None, since: str | None, as_json: bool) -> None:
    """Registered files, oldest first: status, partner, size, rows, rejected share, duration, reason."""
    try:
        files = obj.pipeline().list_files(status=status_, since=parse_since(since) if since else None)
    except PipelineError as exc:
        _fail(str(exc))
        return
    if partner:
        files = [f for f in files if f.get("partner") == partner]
    if as_json:
        _print_json(files)
        return
    click.echo(render_file_list(files) if files else "no files")


@cli.command()
@click.argument("file_id_or_key")
@click.option("--wait/--no-wait", default=True, help="Wait for the re-run to finish (chunk progress bar).")
@click.option("--json", "as_json", is_flag=True, help="Print the final report as one JSON object.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=1800.0,
    show_default=True,
    help="Seconds to wait for the re-run before giving up.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Also load a DUPLICATE_CONTENT file (its bytes were already loaded by another file).",
)
@click.option(
    "--rollback",
    is_flag=True,
    help="Let an older version of a key replace the rows of its newer, live version (TBL5).",
)
@click.pass_obj
def reprocess(
    obj: Ctx, file_id_or_key: str, wait: bool, as_json: bool, timeout: float, force: bool, rollback: bool
) -> None:
    """Re-run FILE_ID_OR_KEY, a FAILED file (or with --force a DUPLICATE_CONTENT one), through the
    state machine (outputs are overwritten). An older version of a key whose newer version is
    live is refused unless --rollback is given."""
    try:
        pipe = obj.pipeline()
        file_id = pipe.resolve_file_id(file_id_or_key)
        arn = pipe.reprocess(file_id, force=force, rollback=rollback)
    except PipelineError as exc:
        _fail(str(exc))
        return
    if not wait:
        click.echo(arn)
        return
    with chunk_progress(enabled=not as_json) as on_progress:
        rep = pipe.wait_for_file(file_id, execution_arn=arn, timeout=timeout, on_progress=on_progress)
    render_report(rep, as_json)
    sys.exit(0 if rep.status in OK_FILE_STATES and rep.execution_status == "SUCCEEDED" else 1)


@cli.command()
@click.argument("file_id_or_key")
@click.option("--force", is_flag=True, help="Send again even if the result was already sent.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as one JSON object.")
@click.pass_obj
def notify(obj: Ctx, file_id_or_key: str, force: bool, as_json: bool) -> None:
    """Re-send the result message of FILE_ID_OR_KEY, a SUCCEEDED file, to the result queue (it
    was not sent, or downstream lost it). Each re-send has its own de-duplication id
    (<file_id>#<attempt>)."""
    try:
        pipe = obj.pipeline()
        file_id = pipe.resolve_file_id(file_id_or_key)
        answer = pipe.notify(file_id, force=force)
    except PipelineError as exc:
        _fail(str(exc))
        return
    if as_json:
        _print_json(answer)
    elif answer.get("sent"):
        click.echo(f"result of {file_id} sent (dedup id {answer.get('dedup_id')})")
    else:
        click.echo(f"not sent: {answer.get('reason')}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the answer as one JSON object.")
@click.pass_obj
def sweep(obj: Ctx, as_json: bool) -> None:
    """Run the reconcile sweep now (it runs every 15 minutes): fail stale files, re-send unsent
    results, alert on overdue partner files."""
    try:
        answer = obj.pipeline().sweep()
    except PipelineError as exc:
        _fail(str(exc))
        return
    if as_json:
        _print_json(answer)
        return
    for key in ("reconciled", "resent", "unsent", "missing"):
        click.echo(f"{key}: {', '.join(answer.get(key) or []) or '-'}")


@cli.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--partner", required=True, help="Partner id: the file goes under incoming/<partner>/.")
@click.option("--wait", is_flag=True, help="Wait for the file to finish (chunk progress bar), then report.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object; no progress bars.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=1800.0,
    show_default=True,
    help="Seconds --wait waits for the workflow before giving up.",
)
@click.pass_obj
def upload(obj: Ctx, path: Path, partner: str, wait: bool, as_json: bool, timeout: float) -> None:
    """Upload PATH under incoming/<partner>/ (the bucket's rule starts the workflow)."""
    try:
        pipe = obj.pipeline()
        with upload_progress(path.stat().st_size, f"uploading {path.name}", enabled=not as_json) as sent:
            info = pipe.upload(path, partner, progress=sent)
    except PipelineError as exc:
        _fail(str(exc))
        return
    if not wait:
        if as_json:
            _print_json(info)
        else:
            click.echo(f"uploaded s3://{info['bucket']}/{info['key']} (file id {info['file_id']})")
        return
    with chunk_progress(enabled=not as_json) as on_progress:
        rep = pipe.wait_for_file(info["file_id"], timeout=timeout, on_progress=on_progress)
    render_report(rep, as_json)
    sys.exit(0 if rep.status in OK_FILE_STATES else 1)


@cli.command()
@click.argument("file_id_or_key")
@click.option(
    "--to",
    "dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("etl-results"),
    show_default=True,
    help="Folder to copy into; S3 keys become relative paths.",
)
@click.pass_obj
def download(obj: Ctx, file_id_or_key: str, dest: Path) -> None:
    """Copy the Parquet parts, rejects and manifest of FILE_ID_OR_KEY to a local folder."""
    try:
        pipe = obj.pipeline()
        file_id = pipe.resolve_file_id(file_id_or_key)
        written = pipe.download_results(file_id, dest)
    except PipelineError as exc:
        _fail(str(exc))
        return
    for path in written:
        click.echo(str(path))
    click.echo(f"{len(written)} objects copied to {dest}")


@cli.command()
@click.argument("file_id_or_key")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="HTML file to write (default: etl-report-<file_id>.html in the current folder).",
)
@click.pass_obj
def report(obj: Ctx, file_id_or_key: str, out: Path | None) -> None:
    """Write one self-contained HTML page about FILE_ID_OR_KEY: status, counts, rejects, timings."""
    from etl_cli.html_report import write_report

    try:
        pipe = obj.pipeline()
        file_id = pipe.resolve_file_id(file_id_or_key)
        path = write_report(pipe, file_id, out or Path(f"etl-report-{file_id}.html"))
    except PipelineError as exc:
        _fail(str(exc))
        return
    click.echo(str(path))


# ---------------------------------------------------------------------------------------------
# Local mode


@cli.group()
def local() -> None:
    """The pipeline on a local AWS emulator (moto), with the real state machine and handlers."""


FAULT_HELP = (
    "Arm a named fault point (repeatable; each fires once per file), e.g. finalize.after_commit. "
    "The list: docs/local-mode.md, 'Fault points'."
)


def arm_faults(fault: tuple[str, ...]) -> None:
    """Check ``--fault`` names and hand them to the emulator this command starts
    (``ETL_LOCAL_FAULTS``). A running emulator keeps what it was started with."""
    if not fault:
        return
    from etl_local import faults, harness

    try:
        names = faults.parse(list(fault))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from None
    if harness.running_emulator() is not None:
        raise click.UsageError("--fault arms a new emulator; one is running: `etl local down` first")
    os.environ[faults.ENV] = ",".join(names)


@local.command()
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object (endpoint, bucket, Glue database, tables)."
)
@click.option("--fault", multiple=True, metavar="POINT", help=FAULT_HELP)
def up(as_json: bool, fault: tuple[str, ...]) -> None:
    """Start a persistent background emulator and deploy the stack on it."""
    from etl.contracts import DATASET_TABLES
    from etl_local import harness, state

    arm_faults(fault)
    emu = harness.running_emulator()
    if emu is None:
        if not as_json:
            click.echo(f"starting the local emulator (state in {state.STATE_DIR})...", err=True)
        emu = harness.start_background()
    if not as_json:
        click.echo("deploying the synthesized stack on it (reused when already deployed)...", err=True)
    outputs = harness.ensure_deployed(emu.endpoint)
    from etl_local.clients import write_client_config

    clients = write_client_config(emu.endpoint, outputs.region)
    if as_json:
        click.echo(
            json.dumps(
                {
                    **clients,
                    "endpoint": emu.endpoint,
                    "region": outputs.region,
                    "bucket": outputs.bucket,
                    "glue_database": outputs.glue_database,
                    "tables": list(DATASET_TABLES),
                    "warehouse": f"s3://{outputs.bucket}/tables/",
                    "pid": emu.pid,
                    "state_dir": str(state.STATE_DIR),
                }
            )
        )
        return
    click.echo(f"emulator at {emu.endpoint} (pid {emu.pid}); bucket {outputs.bucket}")
    click.echo(f"Glue database {outputs.glue_database}: tables {', '.join(DATASET_TABLES)}")
    click.echo(f"state directory {state.STATE_DIR} (set ETL_LOCAL_DIR to use another)")
    click.echo(
        f"pyiceberg/DuckDB: . {clients['env_file']}; then pyiceberg --catalog etl-local list "
        f"(config {clients['pyiceberg_config']})"
    )
    click.echo('use it with: etl --local list | status | upload | reprocess; etl query "SELECT ..."')


@local.command()
def down() -> None:
    """Stop the background emulator; everything it held (in memory) is discarded."""
    from etl_local import harness, state

    current = state.read() or {}
    if not harness.stop_background():
        click.echo("no emulator was running")
        return
    click.echo(
        f"stopped the emulator (pid {current.get('pid', '?')}): it kept everything in memory, so its "
        "buckets, tables, status items, queues and executions are discarded"
    )
    click.echo(f"kept on disk: {state.STATE_DIR} (results of local runs, demo files, server.log)")


def results_dir() -> Path:
    """Where local runs copy their results (``results/`` in the state directory)."""
    from etl_local import state

    return state.STATE_DIR / "results"


class _Laps:
    """Wall seconds per phase of a local run (the report's ``timings``)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = dict(timings or {})
        self._t0 = time.monotonic()

    def __call__(self, phase: str) -> None:
        now = time.monotonic()
        self.timings[phase] = round(now - self._t0, 2)
        self._t0 = now


def _run_console(as_json: bool, intro: str | None) -> Any:
    """A rich console for the human-readable run (None with --json)."""
    if as_json:
        return None
    from rich.console import Console

    console = Console(soft_wrap=True)  # a log line is never folded (URIs stay whole)
    if intro:
        console.print(intro, soft_wrap=True, markup=False)
    return console


def _upload_announced(
    pipe: Pipeline, path: Path, partner: str, name: str | None, console: Any
) -> dict[str, Any]:
    """Upload ``path`` with a progress bar and say where it went."""
    with upload_progress(path.stat().st_size, f"uploading {path.name}", enabled=console is not None) as sent:
        info = pipe.upload(path, partner, name=name, progress=sent)
    if console:
        console.print(f"uploaded s3://{info['bucket']}/{info['key']}", soft_wrap=True, markup=False)
        console.print(
            f"  {_fmt_bytes(info['size'])}, chunk size {_fmt_bytes(pipe.outputs.chunk_size_bytes)}, "
            f"file id {info['file_id']}; the bucket's EventBridge rule starts the workflow",
            soft_wrap=True,
            markup=False,
        )
    return info


def _wait_with_progress(pipe: Pipeline, file_id: str, timeout: float, console: Any) -> FileReport:
    bar_console = console if console is not None and console.is_terminal else None
    with chunk_progress(enabled=console is not None, console=bar_console) as on_progress:
        started = time.monotonic()
        rep = pipe.wait_for_file(file_id, timeout=timeout, on_progress=on_progress)
        if rep.duration_s is None:
            rep.duration_s = round(time.monotonic() - started, 3)
    return rep


def _read_back(
    pipe: Pipeline,
    endpoint: str,
    database: str,
    rep: FileReport,
    file_id: str,
    console: Any,
    final_query: str | None,
    title: str,
) -> None:
    """A SUCCEEDED file's rows in the table (``published_rows``), and the demo's closing query."""
    from etl_cli.dataset import rows_of_file
    from etl_local.catalog import emulator_catalog

    cat = emulator_catalog(endpoint, pipe.outputs.region)
    rep.published_rows = rows_of_file(cat, database, file_id).num_rows
    if final_query and console:
        _print_table(console, title, query_local_sql(final_query.format(file_id=file_id), endpoint, pipe))


def _save_results(pipe: Pipeline, rep: FileReport, file_id: str, copy: bool, lap: _Laps) -> None:
    """Copy the results to disk (``copy``: the emulator stops with this command, its state is
    in memory) and write the HTML report beside them."""
    from etl_cli.html_report import write_report

    dest = results_dir() / file_id
    if copy:
        if pipe.download_results(file_id, dest):
            rep.local_copy = str(dest)
        lap("copy results")
    rep.report = str(write_report(pipe, file_id, dest / "report.html"))
    lap("report")


def _print_run_error(exc: Exception, as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "status": "ERROR",
                    "file_id": None,
                    "rows_total": None,
                    "rows_valid": None,
                    "rows_rejected": None,
                    "chunks": None,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            )
        )
    else:
        click.echo(f"error: {type(exc).__name__}: {exc}", err=True)


def run_local_file(
    path: Path,
    partner: str,
    chunk_mb: float | None,
    as_json: bool,
    keep: bool,
    timeout: float,
    name: str | None = None,
    intro: str | None = None,
    timings: dict[str, float] | None = None,
    final_query: str | None = None,
    final_query_title: str = "",
) -> int:
    from etl_local import harness

    lap = _Laps(timings)
    started_here = False
    emu = harness.running_emulator()
    console = _run_console(as_json, intro)
    try:
        if emu is None:
            if console:
                console.print("[dim]starting the local emulator (moto on loopback)...[/]")
            emu = harness.start_background()
            started_here = True
        lap("emulator")
        if console:
            console.print(f"[dim]emulator {emu.endpoint}; deploying the synthesized stack...[/]")
        chunk_bytes = int(chunk_mb * 1024 * 1024) if chunk_mb else None
        pipe = Pipeline(*harness.local_stack(emu.endpoint, chunk_size_bytes=chunk_bytes, for_run=True))
        lap("deploy")
        info = _upload_announced(pipe, path, partner, name, console)
        file_id = str(info["file_id"])
        lap("upload")
        rep = _wait_with_progress(pipe, file_id, timeout, console)
        lap("workflow")
        database = pipe.outputs.glue_database
        if rep.status == "SUCCEEDED" and database:
            _read_back(pipe, emu.endpoint, database, rep, file_id, console, final_query, final_query_title)
            lap("read back")
        if rep.status in ("SUCCEEDED", "FAILED", "DUPLICATE_CONTENT"):
            _save_results(pipe, rep, file_id, copy=started_here and not keep, lap=lap)
        rep.timings = lap.timings
        render_report(rep, as_json)
        return 0 if rep.status in OK_FILE_STATES else 1
    except Exception as exc:
        _print_run_error(exc, as_json)
        return 2
    finally:
        if started_here and not keep:
            harness.stop_background(emu)


PARTNER_HELP = "Partner id: the file goes under incoming/<partner>/ and gets its schema."
CHUNK_MB = click.FloatRange(min=0.01, max=1024)
TIMEOUT_S = click.FloatRange(min=1)


def query_local_sql(sql: str, endpoint: str, pipe: Pipeline) -> Any:
    """``sql`` over the emulator's tables (DuckDB over pyiceberg scans)."""
    from etl_cli.dataset import query_local
    from etl_local.catalog import emulator_catalog

    if not pipe.outputs.glue_database:
        raise PipelineError("the local stack has no Glue database (deploy predates the dataset)")
    return query_local(sql, emulator_catalog(endpoint, pipe.outputs.region), pipe.outputs.glue_database)


def _print_table(console: Any, title: str, table: Any) -> None:
    from rich.table import Table

    out = Table(title=title or None)
    for name in table.column_names:
        out.add_column(name)
    for row in table.to_pylist():
        out.add_row(*("" if v is None else str(v) for v in row.values()))
    console.print(out)


# The demo's closing query: the busiest (day, currency) totals of the file just loaded.
DEMO_QUERY = (
    "SELECT transaction_date, currency, count(*) AS transactions, sum(amount) AS total "
    "FROM transactions WHERE file_id = '{file_id}' "
    "GROUP BY 1, 2 ORDER BY transactions DESC, 1, 2 LIMIT 12"
)


@local.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--partner", default="default", show_default=True, help=PARTNER_HELP)
@click.option(
    "--chunk-mb",
    type=CHUNK_MB,
    default=None,
    help="Chunk size in MB for this run, 0.01-1024 (default: the stack's, 50 MB).",
)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object; no progress.")
@click.option("--keep", is_flag=True, help="Leave the emulator running afterwards (for etl --local ...).")
@click.option(
    "--timeout", type=TIMEOUT_S, default=3600.0, show_default=True, help="Seconds to wait for the workflow."
)
@click.option("--fault", multiple=True, metavar="POINT", help=FAULT_HELP)
def run(
    path: Path,
    partner: str,
    chunk_mb: float | None,
    as_json: bool,
    keep: bool,
    timeout: float,
    fault: tuple[str, ...],
) -> None:
    """Run PATH (CSV, or .csv.gz) through the local pipeline; report, and write report.html."""
    arm_faults(fault)
    sys.exit(run_local_file(path, partner, chunk_mb, as_json, keep, timeout))


def demo_intro(path: Path, stats: Any, seed: int) -> str:
    """The demo's first line (tools/readme_blocks.py checks the README's copy of it, UX9)."""
    return (
        f"generated {path} ({_fmt_bytes(stats.bytes_written)}, {stats.rows:,} rows, "
        f"{stats.bad_rows:,} bad on purpose, seed {seed})"
    )


@local.command()
@click.option(
    "--size-mb",
    type=click.FloatRange(min=0.001, max=100_000),
    default=160.0,
    show_default=True,
    help="Size of the generated file in MB.",
)
@click.option(
    "--seed", type=int, default=42, show_default=True, help="Random seed: the same seed, the same file."
)
@click.option(
    "--bad-share",
    type=click.FloatRange(min=0, max=1),
    default=0.005,
    show_default=True,
    help="Share of rows made invalid on purpose, 0-1 (0.005 = 0.5%).",
)
@click.option("--partner", default="default", show_default=True, help=PARTNER_HELP)
@click.option(
    "--chunk-mb",
    type=CHUNK_MB,
    default=None,
    help="Chunk size in MB, 0.01-1024 (default: the stack's, 50 MB).",
)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object; no progress.")
@click.option("--keep", is_flag=True, help="Leave the emulator running afterwards (for etl --local ...).")
@click.option(
    "--timeout", type=TIMEOUT_S, default=3600.0, show_default=True, help="Seconds to wait for the workflow."
)
def demo(
    size_mb: float,
    seed: int,
    bad_share: float,
    partner: str,
    chunk_mb: float | None,
    as_json: bool,
    keep: bool,
    timeout: float,
) -> None:
    """Generate a realistic transaction file and run it through the local pipeline."""
    from etl_local import state
    from etl_local.datagen import generate_csv

    state.STATE_DIR.mkdir(parents=True, exist_ok=True)
    path = state.STATE_DIR / f"demo-{int(size_mb)}mb-seed{seed}.csv"
    t0 = time.monotonic()
    stats = generate_csv(
        path, size_bytes=int(size_mb * 1024 * 1024), seed=seed, bad_row_share=bad_share, schema=partner
    )
    intro = demo_intro(path, stats, seed)
    name = f"transactions-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    generated = {"generate": round(time.monotonic() - t0, 2)}
    sys.exit(
        run_local_file(
            path,
            partner,
            chunk_mb,
            as_json,
            keep,
            timeout,
            name=name,
            intro=intro,
            timings=generated,
            final_query=DEMO_QUERY,
            final_query_title="etl query: daily totals per currency of this file (busiest 12)",
        )
    )


FORMAT_OPTION = click.option(
    "--format",
    "fmt",
    type=click.Choice(ROW_FORMATS),
    default=None,
    help="Output: table (default on a terminal), csv (default otherwise; values never cut), json.",
)


def _local_pipe() -> tuple[str, Pipeline]:
    """The running emulator's endpoint and pipeline, or a one-line error."""
    from etl_local import harness

    emu = harness.running_emulator()
    if emu is None:
        raise PipelineError(no_emulator())
    return emu.endpoint, Pipeline(*harness.local_stack(emu.endpoint))


def no_emulator() -> str:
    """No emulator: say where the CLI looked (the state directory, ETL_LOCAL_DIR)."""
    from etl_local import state

    return f"no local emulator is running: start one with `etl local up` (looked in {state.STATE_DIR})"


def _uses_local_dataset(obj: Ctx) -> bool:
    """Dataset commands read the emulator unless a stack or an endpoint is named."""
    return obj.local or (not obj.stack_explicit and obj.endpoint is None)


@cli.command()
@click.argument("sql")
@FORMAT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--timeout", type=TIMEOUT_S, default=300.0, show_default=True, help="Athena: seconds to wait.")
@click.pass_obj
def query(obj: Ctx, sql: str, fmt: str | None, as_json: bool, timeout: float) -> None:
    """Run SQL over the dataset tables (transactions, transaction_rejects).

    Locally (the emulator of `etl local up`; the default unless --stack/ETL_STACK is given):
    DuckDB over pyiceberg scans. Against a deployed stack: Athena, in the stack's workgroup.
    Both read Athena's metadata tables ("transactions$snapshots", "$history", "$files",
    "$partitions") and time travel: FROM transactions FOR VERSION AS OF <snapshot id>, or
    FOR TIMESTAMP AS OF TIMESTAMP '2026-12-07 10:00:00 UTC'. An error in the SQL is one line
    on stderr and exit code 2.
    """
    from etl_cli import dataset

    try:
        if _uses_local_dataset(obj):
            endpoint, pipe = _local_pipe()
            table = query_local_sql(sql, endpoint, pipe)
            columns, rows = table.column_names, [list(r.values()) for r in table.to_pylist()]
        else:
            session = make_session(obj.region, obj.profile)
            outputs = outputs_from_stack(session, obj.stack, obj.endpoint)
            if not outputs.athena_workgroup:
                raise PipelineError(
                    f"stack {obj.stack} has no AthenaWorkGroupName output (deployed before the dataset?)"
                )
            database = outputs.glue_database or glue_database_of_stack(obj.stack)
            columns, rows = dataset.query_athena(sql, session, outputs.athena_workgroup, database, timeout)
    except (PipelineError, dataset.AthenaError, dataset.QueryError) as exc:
        _fail(str(exc))
        return
    render_rows(columns, rows, "json" if as_json else row_format(fmt))


@cli.command()
@click.option("--partner", default=None, help="Only loads of this partner.")
@click.option("--since", default=None, help="Only loads since: ISO 8601 time, or an age like 30m, 6h, 2d.")
@FORMAT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_obj
def history(obj: Ctx, partner: str | None, since: str | None, fmt: str | None, as_json: bool) -> None:
    """Loads of the transactions table, oldest first: time, file, partner, key, rows added and
    removed, snapshot (the load audit trail; use the snapshot id with FOR VERSION AS OF)."""
    from etl_cli import dataset

    try:
        since_at = parse_since(since) if since else None
        if _uses_local_dataset(obj):
            from etl_local.catalog import emulator_catalog

            endpoint, pipe = _local_pipe()
            catalog = emulator_catalog(endpoint, pipe.outputs.region)
            database = pipe.outputs.glue_database or glue_database_of_stack("EtlPipeline-local")
        else:
            session = make_session(obj.region, obj.profile)
            outputs = outputs_from_stack(session, obj.stack, obj.endpoint)
            catalog = dataset.aws_catalog(session)
            database = outputs.glue_database or glue_database_of_stack(obj.stack)
        loads = dataset.load_history(catalog, database, partner=partner, since=since_at)
    except PipelineError as exc:
        _fail(str(exc))
        return
    columns = list(dataset.HISTORY_COLUMNS)
    render_rows(
        columns, [[load[c] for c in columns] for load in loads], "json" if as_json else row_format(fmt)
    )


# ---------------------------------------------------------------------------------------------
# Disaster recovery (DR3): etl dr status | promote --region R | demote


def _dr_regions(obj: Ctx) -> list[Any]:
    """The primary and DR stacks: the emulator's two regions, or the two CloudFormation stacks
    (``EtlPipeline-<suffix>`` in us-east-1, ``EtlPipelineDr-<suffix>`` in eu-west-1)."""
    from etl_cli import dr

    if obj.local or (obj.endpoint is None and os.environ.get("ETL_LOCAL") == "1"):
        from etl_local import harness

        emu = harness.running_emulator()
        if emu is None:
            raise PipelineError(no_emulator())
        session, primary = harness.local_stack(emu.endpoint)

        def announce() -> None:  # the first DR command deploys the second region (~30 s)
            click.echo("deploying the DR region (eu-west-1) on the emulator, once (~30 s)...", err=True)

        secondary = harness.ensure_dr_deployed(emu.endpoint, primary, session=session, on_deploy=announce)
        suffix = "local"
        return [
            dr.Region("primary", primary.region, session, primary, suffix, emu.endpoint),
            dr.Region("dr", secondary.region, session, secondary, suffix, emu.endpoint),
        ]
    suffix = obj.stack.split("-", 1)[1] if "-" in obj.stack else obj.stack
    regions = []
    for name, stack, region in (
        ("primary", f"EtlPipeline-{suffix}", dr.PRIMARY_REGION),
        ("dr", f"EtlPipelineDr-{suffix}", dr.DR_REGION),
    ):
        session = make_session(region, obj.profile)
        require_credentials(session)  # no credentials is a setup error, not an unreachable region
        try:
            outputs = outputs_from_stack(session, stack, obj.endpoint)
        except PipelineError:
            if name == "primary":  # promoting because the primary is down: go on without it
                click.echo(f"warning: {stack} in {region} is unreachable", err=True)
                continue
            raise
        regions.append(dr.Region(name, region, session, outputs, suffix, obj.endpoint))
    return regions


def _dr_switch(obj: Ctx, region: str, as_json: bool) -> None:
    from etl_cli import dr

    try:
        report = dr.switch(_dr_regions(obj), region)
    except dr.DrError as exc:
        _fail(str(exc))
        return
    if as_json:
        _print_json(report)
        return
    for line in report["changes"] or [f"nothing to change: {region} is active already"]:
        click.echo(line)
    drained = report.get("drain") or {}
    click.echo(
        "outbox: {} announced, {} already in the announcement ledger, {} not sent".format(
            len(drained.get("resent", [])), len(drained.get("in_ledger", [])), len(drained.get("unsent", []))
        )
    )
    for warning in report["warnings"]:
        click.echo(f"warning: {warning}", err=True)


@cli.group(name="dr")
def dr_group() -> None:
    """Disaster recovery: which region announces and pages (docs/disaster-recovery.md)."""


@dr_group.command(name="status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def dr_status(obj: Ctx, as_json: bool) -> None:
    """Each region's role (active/standby), where it comes from, and its alarm actions."""
    from etl_cli import dr

    rows = dr.status(_dr_regions(obj))
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        alarms = f"alarm actions on {r.get('alarm_actions_enabled', '?')}/{r.get('alarms', '?')}"
        click.echo(
            f"{r['region']:<10} {r['name']:<8} {r['role']:<8} ({r.get('source', r.get('error'))}) {alarms}"
        )


@dr_group.command(name="promote")
@click.option("--region", "target", default="eu-west-1", show_default=True, help="The region to make active.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def dr_promote(obj: Ctx, target: str, as_json: bool) -> None:
    """Fail over: TARGET active (announces, pages, drains its outbox), the other standby."""
    _dr_switch(obj, target, as_json)


@dr_group.command(name="demote")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def dr_demote(obj: Ctx, as_json: bool) -> None:
    """Fail back: the primary (us-east-1) active again, the DR region standby."""
    from etl_cli import dr

    _dr_switch(obj, dr.PRIMARY_REGION, as_json)


# Offline onboarding (UX5): etl validate, etl schema infer | check (etl_cli/onboard.py)
cli.add_command(onboard.validate)
cli.add_command(onboard.schema_group)


def glue_database_of_stack(stack: str) -> str:
    """``EtlPipeline-<suffix>`` -> the Glue database of that suffix (etl.contracts)."""
    from etl.contracts import glue_database

    return glue_database(stack.split("-", 1)[1] if "-" in stack else stack)


def main(argv: list[str] | None = None) -> None:
    """The ``etl`` entry point: user errors become one ``error: ...`` line and exit code 2, a
    failed AWS or emulator call one line and exit code 3 (etl_cli/exits.py, docs/cli.md)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from infra.node_env import quiet_jsii

    quiet_jsii()  # before any synth: jsii's banner is silenced only for the running Node major
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    try:
        code = cli.main(args=argv, prog_name="etl", standalone_mode=False)
    except click.UsageError as exc:  # bad option or argument value, unknown command
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(exits.USAGE)
    except click.ClickException as exc:  # e.g. a file that cannot be opened
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exits.USAGE)
    except PipelineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exits.USAGE)
    except (BotoCoreError, ClientError) as exc:
        click.echo(f"error: AWS: {' '.join(str(exc).split())}", err=True)
        sys.exit(exits.INFRASTRUCTURE)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(exits.INTERRUPTED)
    sys.exit(code if isinstance(code, int) else exits.OK)


if __name__ == "__main__":
    main()
