"""Terminal rendering for ``etl``: the file report, the file list, chunk tables, progress.

Two audiences: a person at a terminal (rich colours, bars that redraw) and a log or a pipe
(CI, ``> file``, ``| grep``). When stdout is not a terminal nothing is wrapped or redrawn:
one plain line per fact, so an ``s3://`` URI is always whole and copyable (SPEC UX1).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import click

from etl.payloads import ChunkItem, FileItem

STATUS_COLOURS = {"SUCCEEDED": "green", "FAILED": "red", "DUPLICATE_CONTENT": "cyan"}
REASON_WIDTH = 60


def is_tty() -> bool:
    return sys.stdout.isatty()


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f} s"
    minutes, seconds = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def truncate(text: Any, width: int = REASON_WIDTH) -> str:
    s = " ".join(str(text or "").split())  # one line: errors can hold newlines
    return s if len(s) <= width else s[: width - 3] + "..."


def parse_time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def seconds_between(start: Any, end: Any) -> float | None:
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None or b < a:
        return None
    return (b - a).total_seconds()


# ---------------------------------------------------------------------------------------------
# The report of one file


def report_rows(rep: Any) -> list[tuple[str, str]]:
    """(label, value) lines of a :class:`etl_cli.pipeline.FileReport`, in display order."""
    rows = [("status", str(rep.status)), ("file id", str(rep.file_id))]
    rows.append(("source", f"s3://{rep.bucket}/{rep.key}" if rep.key else "-"))
    rows.append(("size", fmt_bytes(rep.size_bytes)))
    if rep.rows_total is not None:
        share = (rep.rows_rejected or 0) / rep.rows_total * 100 if rep.rows_total else 0.0
        rows.append(
            (
                "rows",
                f"{rep.rows_total:,} total, {rep.rows_valid or 0:,} valid, "
                f"{rep.rows_rejected or 0:,} rejected ({share:.2f}%)",
            )
        )
    rows.append(("chunks", f"{rep.chunks_succeeded}/{rep.chunks}" if rep.chunks is not None else "-"))
    if rep.duration_s:
        tput = f", {rep.throughput_mb_s} MB/s" if rep.throughput_mb_s else ""
        rows.append(("duration", f"{rep.duration_s:.1f} s{tput}"))
    if getattr(rep, "snapshot_id", None) is not None:
        published = getattr(rep, "published_rows", None)
        in_table = f" ({published:,} rows in the table)" if published is not None else ""
        rows.append(("published", f"snapshot {rep.snapshot_id}{in_table}"))
    if getattr(rep, "rows_live", None) == "superseded":  # TBL5
        rows.append(("rows", f"superseded by {rep.superseded_by} (a newer version of the key)"))
    elif getattr(rep, "rows_live", None) == "live" and rep.status == "SUCCEEDED":
        rows.append(("rows", "live (this is the key's live version)"))
    for label, value in (
        ("outputs", rep.outputs),
        ("rejects", rep.rejects),
        ("manifest", rep.manifest),
        ("duplicate of", getattr(rep, "duplicate_of", None)),
        ("processed", rep.processed),
        ("failed", rep.failed),
        ("execution", rep.execution_arn),
        ("local copy", rep.local_copy),
        ("report", getattr(rep, "report", None)),
    ):
        if value:
            rows.append((label, str(value)))
    if rep.error:
        rows.append(("error", str(rep.error)))
    if rep.timings:
        rows.append(("wall time", ", ".join(f"{k} {v:.1f} s" for k, v in rep.timings.items())))
    return rows


def render_report(rep: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rep.to_json(), default=str))
        return
    rows = report_rows(rep)
    if not is_tty():
        # A log or a pipe: never wrap (a folded URI cannot be copied), no colour codes.
        for label, value in rows:
            click.echo(f"{label:<11} {value}")
        return
    # A terminal: the same lines with colour; long values are left to the terminal's own soft
    # wrapping (no inserted newline, so a URI still copies whole).
    from rich.console import Console
    from rich.markup import escape

    console = Console(soft_wrap=True)
    for label, value in rows:
        text = escape(value)
        if label == "status":
            text = f"[bold {STATUS_COLOURS.get(value, 'yellow')}]{text}[/]"
        elif label == "error":
            text = f"[red]{text}[/]"
        console.print(f"[bold]{label:<11}[/] {text}", highlight=False)


# ---------------------------------------------------------------------------------------------
# Tables (plain text: the same in a terminal and a log)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell; the last column is never padded (reasons)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = []
        for i, cell in enumerate(row):
            if i == len(row) - 1:
                cells.append(str(cell))
            elif i in right:
                cells.append(str(cell).rjust(widths[i]))
            else:
                cells.append(str(cell).ljust(widths[i]))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


FILE_COLUMNS = ("FILE ID", "STATUS", "PARTNER", "SIZE", "ROWS", "REJECTED", "DURATION", "CREATED", "REASON")


def file_duration(item: FileItem) -> float | None:
    """Seconds from registration to the end (or to the last update while still running)."""
    end = item.get("finished_at") or item.get("updated_at")
    return seconds_between(item.get("created_at"), end)


def file_row(item: FileItem) -> list[str]:
    total, rejected = item.get("rows_total"), item.get("rows_rejected")
    share = "-"
    if isinstance(total, (int, float)) and isinstance(rejected, (int, float)):
        share = f"{rejected / total * 100:.2f}%" if total else "0.00%"
    created = parse_time(item.get("created_at"))
    reason = item.get("error") if item.get("status") == "FAILED" else ""
    return [
        str(item.get("file_id", "?")),
        str(item.get("status", "?")),
        str(item.get("partner") or "-"),
        fmt_bytes(item.get("size")),
        f"{total:,}" if isinstance(total, (int, float)) else "-",
        share,
        fmt_seconds(file_duration(item)),
        created.strftime("%Y-%m-%d %H:%M:%S") if created else "-",
        truncate(reason) if reason else "",
    ]


def render_file_list(files: list[FileItem]) -> str:
    return text_table(FILE_COLUMNS, [file_row(f) for f in files], right=(3, 4, 5, 6))


CHUNK_COLUMNS = ("CHUNK", "STATUS", "BYTES", "ROWS", "REJECTED", "ATTEMPTS", "DURATION", "ERROR")


def chunk_duration(chunk: ChunkItem) -> float | None:
    """Seconds of the chunk's last attempt (``started_at`` to ``finished_at``)."""
    return seconds_between(chunk.get("started_at"), chunk.get("finished_at"))


def chunk_row(chunk: ChunkItem) -> list[str]:
    start, end = chunk.get("start"), chunk.get("end")
    span = f"{start}-{end}" if start is not None and end is not None else "-"
    rows_in = chunk.get("rows_in")
    return [
        str(chunk.get("chunk_id", "?")),
        str(chunk.get("status", "?")),
        span,
        f"{rows_in:,}" if isinstance(rows_in, (int, float)) else "-",
        str(chunk.get("rows_rejected", "-")),
        str(chunk.get("attempts", "-")),
        fmt_seconds(chunk_duration(chunk)),
        truncate(chunk.get("error")) if chunk.get("error") else "",
    ]


def render_chunks(chunks: list[ChunkItem]) -> str:
    ordered = sorted(chunks, key=lambda c: str(c.get("chunk_id")))
    return text_table(CHUNK_COLUMNS, [chunk_row(c) for c in ordered], right=(3, 4, 5, 6))


# ---------------------------------------------------------------------------------------------
# Progress (a terminal only: silent with --json, one plain final line in a log)


@contextlib.contextmanager
def upload_progress(total: int, label: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A bytes bar for an upload; yields boto3's ``Callback`` (called with bytes sent)."""
    if not enabled or not is_tty():
        yield lambda _n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


def chunks_done(chunks: list[ChunkItem]) -> int:
    return sum(1 for c in chunks if c.get("status") == "SUCCEEDED")


@contextlib.contextmanager
def chunk_progress(
    enabled: bool, console: Any = None
) -> Iterator[Callable[[FileItem | None, list[ChunkItem]], None] | None]:
    """A chunks-done/total bar for a wait; yields ``Pipeline.wait_for_file``'s ``on_progress``.

    In a log (not a terminal) it prints one plain line at the end instead of a bar.
    """
    if not enabled:
        yield None
        return
    last: dict[str, Any] = {}

    def remember(item: FileItem | None, chunks: list[ChunkItem]) -> None:
        if item:
            last.update(status=item.get("status", "?"), total=item.get("chunk_count"))
            last["done"] = chunks_done(chunks)

    if not is_tty() and console is None:
        yield remember
        if last:
            click.echo(f"{last['status']}: {last['done']}/{last['total'] or '?'} chunks done")
        return
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

        def update(item: FileItem | None, chunks: list[ChunkItem]) -> None:
            remember(item, chunks)
            if item:
                progress.update(
                    task,
                    description=f"{item.get('status', '?'):10} chunks",
                    total=item.get("chunk_count") or None,
                    completed=chunks_done(chunks),
                )

        yield update
        if last:
            progress.update(task, description=f"{last['status']:10} chunks")


# ---------------------------------------------------------------------------------------------
# Result sets (etl query, etl history): SPEC UX4

ROW_FORMATS = ("table", "csv", "json")


def row_format(requested: str | None) -> str:
    """``--format``: as given, else a table on a terminal and CSV in a pipe or a file."""
    return requested or ("table" if is_tty() else "csv")


def plain_value(value: Any) -> Any:
    """A JSON/CSV-friendly value: Arrow maps (lists of pairs) become objects; decimals stay
    exact (strings in JSON)."""
    if isinstance(value, list) and value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return {str(k): plain_value(v) for k, v in value}
    return value


def render_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> None:
    """Rows in ``fmt``; no value is ever shortened (a table folds long values instead)."""
    plain = [[plain_value(v) for v in r] for r in rows]
    if fmt == "json":
        click.echo(json.dumps([dict(zip(columns, r, strict=True)) for r in plain], default=str))
        return
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for r in plain:
            writer.writerow(["" if v is None else json.dumps(v) if isinstance(v, dict) else v for v in r])
        click.echo(buf.getvalue(), nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    out = Table()
    for c in columns:
        out.add_column(c, overflow="fold")
    for r in plain:
        out.add_row(*("" if v is None else str(v) for v in r))
    Console().print(out)
