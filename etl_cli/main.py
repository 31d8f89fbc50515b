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

from etl_cli.pipeline import (
    FileReport,
    Pipeline,
    PipelineError,
    make_session,
    outputs_from_stack,
    parse_since,
)

DEFAULT_STACK = "EtlPipeline-dev"


class Ctx:
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
                raise PipelineError("no local emulator is running: start one with `etl local up`")
            return harness.local_pipeline(emu.endpoint)
        session = make_session(self.region, self.profile)
        return Pipeline(session, outputs_from_stack(session, self.stack, self.endpoint))


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--stack",
    default=lambda: os.environ.get("ETL_STACK", DEFAULT_STACK),
    show_default="EtlPipeline-dev",
    help="Stack name whose outputs locate the pipeline (env ETL_STACK).",
)
@click.option("--region", default=lambda: os.environ.get("AWS_REGION"), help="AWS region.")
@click.option("--profile", default=None, help="AWS profile.")
@click.option("--endpoint", default=None, help="Custom AWS endpoint URL (an emulator with a deployed stack).")
@click.option("--local", "local", is_flag=True, help="Use the local emulator started by `etl local up`.")
@click.pass_context
def cli(
    ctx: click.Context, stack: str, region: str | None, profile: str | None, endpoint: str | None, local: bool
) -> None:
    """Operate the transaction ETL pipeline (AWS or local emulator)."""
    ctx.obj = Ctx(stack, region, profile, endpoint, local)


# ---------------------------------------------------------------------------------------------
# Rendering


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def render_report(rep: FileReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rep.to_json(), default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    colour = {"SUCCEEDED": "green", "FAILED": "red"}.get(rep.status, "yellow")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("status", f"[{colour}]{rep.status}[/]")
    table.add_row("file id", str(rep.file_id))
    table.add_row("source", f"s3://{rep.bucket}/{rep.key}" if rep.key else "-")
    table.add_row("size", _fmt_bytes(rep.size_bytes))
    if rep.rows_total is not None:
        share = (rep.rows_rejected or 0) / rep.rows_total * 100 if rep.rows_total else 0.0
        table.add_row(
            "rows",
            f"{rep.rows_total:,} total, {rep.rows_valid:,} valid, "
            f"{rep.rows_rejected:,} rejected ({share:.2f}%)",
        )
    table.add_row("chunks", f"{rep.chunks_succeeded}/{rep.chunks}" if rep.chunks is not None else "-")
    if rep.duration_s:
        tput = f", {rep.throughput_mb_s} MB/s" if rep.throughput_mb_s else ""
        table.add_row("duration", f"{rep.duration_s:.1f} s{tput}")
    for label, value in (
        ("outputs", rep.outputs),
        ("rejects", rep.rejects),
        ("manifest", rep.manifest),
        ("processed", rep.processed),
        ("failed", rep.failed),
        ("execution", rep.execution_arn),
        ("local copy", rep.local_copy),
    ):
        if value:
            table.add_row(label, value)
    if rep.error:
        table.add_row("error", f"[red]{rep.error}[/]")
    if rep.timings:
        table.add_row("wall time", ", ".join(f"{k} {v:.1f} s" for k, v in rep.timings.items()))
    console.print(table)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, default=str, indent=2))


# ---------------------------------------------------------------------------------------------
# Commands valid against AWS and the emulator


@cli.command()
@click.argument("file_id_or_key")
@click.option("--json", "as_json", is_flag=True)
@click.option("--chunks", "show_chunks", is_flag=True, help="Also list the chunk items.")
@click.pass_obj
def status(obj: Ctx, file_id_or_key: str, as_json: bool, show_chunks: bool) -> None:
    """Status of one file (by file id or S3 key)."""
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
        for c in pipe.list_chunks(file_id):
            click.echo(
                f"  {c['chunk_id']}  {c.get('status', '?'):10} rows {c.get('rows_in', '-')}"
                f"  bytes {c.get('start')}-{c.get('end')}  attempts {c.get('attempts', '-')}"
            )


@cli.command(name="list")
@click.option("--status", "status_", default=None, help="Only files in this status (e.g. FAILED).")
@click.option("--since", default=None, help="Only files registered since (ISO time or 30m/6h/2d).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_(obj: Ctx, status_: str | None, since: str | None, as_json: bool) -> None:
    """Registered files, oldest first."""
    try:
        files = obj.pipeline().list_files(status=status_, since=parse_since(since) if since else None)
    except PipelineError as exc:
        _fail(str(exc))
        return
    if as_json:
        _print_json(files)
        return
    if not files:
        click.echo("no files")
    for f in files:
        click.echo(
            f"{f.get('file_id')}  {f.get('status', '?'):10}  {f.get('created_at', '-')}  "
            f"rows {f.get('rows_total', '-')}  {f.get('original_key') or f.get('key')}"
        )


@cli.command()
@click.argument("file_id_or_key")
@click.option("--wait/--no-wait", default=True, help="Wait for the re-run to finish.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--timeout", default=1800.0, show_default=True)
@click.pass_obj
def reprocess(obj: Ctx, file_id_or_key: str, wait: bool, as_json: bool, timeout: float) -> None:
    """Re-run a FAILED file through the state machine (safe: outputs are overwritten, never duplicated)."""
    try:
        pipe = obj.pipeline()
        file_id = pipe.resolve_file_id(file_id_or_key)
        arn = pipe.reprocess(file_id)
    except PipelineError as exc:
        _fail(str(exc))
        return
    if not wait:
        click.echo(arn)
        return
    rep = pipe.wait_for_file(file_id, execution_arn=arn, timeout=timeout)
    render_report(rep, as_json)
    sys.exit(0 if rep.status == "SUCCEEDED" and rep.execution_status == "SUCCEEDED" else 1)


@cli.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--partner", required=True, help="Partner id: the file goes under incoming/<partner>/.")
@click.option("--wait", is_flag=True, help="Wait for the file to finish and print its report.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def upload(obj: Ctx, path: Path, partner: str, wait: bool, as_json: bool) -> None:
    """Upload a file under incoming/<partner>/ (the bucket's rule starts the workflow)."""
    try:
        pipe = obj.pipeline()
        info = pipe.upload(path, partner)
    except PipelineError as exc:
        _fail(str(exc))
        return
    if not wait:
        if as_json:
            _print_json(info)
        else:
            click.echo(f"uploaded s3://{info['bucket']}/{info['key']} (file id {info['file_id']})")
        return
    rep = pipe.wait_for_file(info["file_id"])
    render_report(rep, as_json)
    sys.exit(0 if rep.status == "SUCCEEDED" else 1)


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
    """Copy a file's Parquet parts, rejects and manifest to a local folder."""
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


# ---------------------------------------------------------------------------------------------
# Local mode


@cli.group()
def local() -> None:
    """The pipeline on a local AWS emulator (moto), with the real state machine and handlers."""


@local.command()
def up() -> None:
    """Start a persistent background emulator and deploy the stack on it."""
    from etl_local import harness

    emu = harness.running_emulator() or harness.start_background()
    outputs = harness.ensure_deployed(emu.endpoint)
    click.echo(f"emulator at {emu.endpoint} (pid {emu.pid}); bucket {outputs.bucket}")
    click.echo("use it with: etl --local list | status | upload | reprocess")


@local.command()
def down() -> None:
    """Stop the background emulator."""
    from etl_local import harness

    click.echo("stopped" if harness.stop_background() else "no emulator was running")


def results_dir() -> Path:
    """Where local runs copy their results (``.etl-local/results``)."""
    from etl_local import state

    return state.STATE_DIR / "results"


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
) -> int:
    from etl_local import harness

    timings = dict(timings or {})
    t0 = time.monotonic()

    def lap(phase: str) -> None:
        nonlocal t0
        now = time.monotonic()
        timings[phase] = round(now - t0, 2)
        t0 = now

    started_here = False
    emu = harness.running_emulator()
    console = None
    if not as_json:
        from rich.console import Console

        console = Console()
        if intro:
            console.print(intro)
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
        pipe = harness.local_pipeline(emu.endpoint, chunk_size_bytes=chunk_bytes, for_run=True)
        lap("deploy")
        info = pipe.upload(path, partner, name=name)
        lap("upload")
        if console:
            console.print(f"uploaded s3://{info['bucket']}/{info['key']}", soft_wrap=True)
            console.print(
                f"  {_fmt_bytes(info['size'])}, chunk size {_fmt_bytes(pipe.outputs.chunk_size_bytes)}, "
                f"file id {info['file_id']}; the bucket's EventBridge rule starts the workflow"
            )
        rep = _wait_with_progress(pipe, info["file_id"], console, timeout)
        lap("workflow")
        if rep.status in ("SUCCEEDED", "FAILED") and started_here and not keep:
            # The emulator keeps everything in memory and stops with this command: copy the
            # results to disk so they can be opened afterwards (pyarrow, duckdb, a spreadsheet).
            dest = results_dir() / str(info["file_id"])
            if pipe.download_results(info["file_id"], dest):
                rep.local_copy = str(dest)
            lap("copy results")
        rep.timings = timings
        render_report(rep, as_json)
        return 0 if rep.status == "SUCCEEDED" else 1
    except Exception as exc:
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
        return 2
    finally:
        if started_here and not keep:
            harness.stop_background(emu)


def _wait_with_progress(pipe: Pipeline, file_id: str, console: Any, timeout: float) -> FileReport:
    if console is None:
        return pipe.wait_for_file(file_id, timeout=timeout)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("waiting for the workflow", total=None)

        def on_progress(item: dict[str, Any] | None, chunks: list[dict[str, Any]]) -> None:
            if not item:
                return
            total = item.get("chunk_count")
            done = sum(1 for c in chunks if c.get("status") == "SUCCEEDED")
            progress.update(
                task, description=f"{item.get('status', '?'):10} chunks", total=total or None, completed=done
            )

        started = time.monotonic()
        rep = pipe.wait_for_file(file_id, timeout=timeout, on_progress=on_progress)
        progress.update(task, description=f"{rep.status:10} chunks")
        if rep.duration_s is None:
            rep.duration_s = round(time.monotonic() - started, 3)
    return rep


@local.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--partner", default="default", show_default=True)
@click.option("--chunk-mb", type=float, default=None, help="Chunk size for this run (default: the stack's).")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object.")
@click.option("--keep", is_flag=True, help="Leave the emulator running afterwards (for etl --local ...).")
@click.option("--timeout", default=3600.0, show_default=True)
def run(path: Path, partner: str, chunk_mb: float | None, as_json: bool, keep: bool, timeout: float) -> None:
    """Run one file through the local pipeline and report."""
    sys.exit(run_local_file(path, partner, chunk_mb, as_json, keep, timeout))


@local.command()
@click.option("--size-mb", type=float, default=160.0, show_default=True, help="Size of the generated file.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--bad-share", type=float, default=0.005, show_default=True, help="Share of bad rows.")
@click.option("--partner", default="default", show_default=True)
@click.option("--chunk-mb", type=float, default=None, help="Chunk size (default: the stack's, 50 MB).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--keep", is_flag=True)
@click.option("--timeout", default=3600.0, show_default=True)
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
    intro = (
        f"generated {path} ({_fmt_bytes(stats.bytes_written)}, {stats.rows:,} rows, "
        f"{stats.bad_rows:,} bad on purpose, seed {seed})"
    )
    name = f"transactions-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    generated = {"generate": round(time.monotonic() - t0, 2)}
    sys.exit(
        run_local_file(
            path, partner, chunk_mb, as_json, keep, timeout, name=name, intro=intro, timings=generated
        )
    )


def main() -> None:
    from infra.node_env import quiet_jsii

    quiet_jsii()  # before any synth: jsii's banner is silenced only for the running Node major
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    cli(prog_name="etl")


if __name__ == "__main__":
    main()
