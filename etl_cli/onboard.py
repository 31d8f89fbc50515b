"""Onboarding a partner offline (SPEC UX5): ``etl validate``, ``etl schema infer``,
``etl schema check``. Nothing here needs an emulator or AWS."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from etl_cli import exits
from etl_cli.render import fmt_bytes, text_table

FILE_ARG = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)


def _schema_file(partner: str | None, schema: Path | None) -> str:
    """The schema a file is validated with: ``--schema PATH``, else the partner's (as the
    pipeline picks it: etl/schemas/<partner>.json, else default.json)."""
    from etl.core.schema import SchemaError, load_schema_file, schema_path

    path = str(schema) if schema else schema_path(partner or "default")
    try:
        load_schema_file(path)
    except SchemaError as exc:
        raise click.UsageError(f"{path}: {exc} (see: etl schema check {path})") from exc
    except (OSError, ValueError) as exc:
        raise click.UsageError(f"cannot read schema {path}: {exc}") from exc
    return path


def report_html(result: Any, schema_path: str) -> str:
    """The ``etl report`` page for an offline validation (no chunks timeline, no manifest)."""
    from etl_cli import html_report

    f: dict[str, Any] = {
        "file_id": "(not uploaded)",
        "status": result.status,
        "partner": "-",
        "key": result.path,
        "bucket": "local file",
        "size": result.size_bytes,
        "rows_total": result.rows_total,
        "rows_valid": result.rows_valid,
        "rows_rejected": result.rows_rejected,
        "chunk_count": result.chunks,
        "schema_id": result.schema_id,
        "error": result.error,
        "error_type": result.error_type,
    }
    data = html_report.ReportData(
        file=f,  # type: ignore[arg-type]
        chunks=[],
        report={"file_id": None, "chunks_succeeded": result.chunks, "duration_s": result.duration_s},
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    data.rejects_total = result.rows_rejected
    data.by_rule.update(result.rejects_by_rule)
    data.by_column.update(result.rejects_by_column)
    data.sample = [
        html_report.Reject(s.line, s.column, s.rule, s.value or "", s.reason) for s in result.sample
    ]
    data.schema = json.loads(Path(schema_path).read_text(encoding="utf-8"))
    data.schema_name = Path(schema_path).name
    return html_report.render(data)


def _print_validation(result: Any) -> None:
    share = result.rows_rejected / result.rows_total * 100 if result.rows_total else 0.0
    chunks = f"{result.chunks} chunk{'s' if result.chunks != 1 else ''}"
    click.echo(
        f"{result.status:<10} {result.path} ({fmt_bytes(result.size_bytes)}, schema {result.schema_path})"
    )
    click.echo(
        f"rows       {result.rows_total:,} total, {result.rows_valid:,} valid, "
        f"{result.rows_rejected:,} rejected ({share:.2f}%) in {chunks}, {result.duration_s} s"
    )
    if result.error:
        click.echo(f"reason     {result.error_type}: {result.error}")
    if result.rejects_by_rule:
        click.echo("by rule    " + ", ".join(f"{r} {n:,}" for r, n in result.rejects_by_rule.most_common()))
        click.echo("by column  " + ", ".join(f"{c} {n:,}" for c, n in result.rejects_by_column.most_common()))
        rows = [[str(s.line), s.column, s.rule, s.reason] for s in result.sample[:10]]
        click.echo("")
        click.echo(text_table(["line", "column", "rule", "reason"], rows, right=(0,)))
    if result.report:
        click.echo(f"report     {result.report}")


@click.command()
@click.argument("path", type=FILE_ARG)
@click.option("--partner", default=None, help="Validate with this partner's schema (default: default).")
@click.option(
    "--schema",
    "schema",
    type=FILE_ARG,
    default=None,
    help="Validate with this Table Schema file instead (a draft from `etl schema infer`).",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="HTML report to write (default: etl-validate-<file name>.html in the current folder).",
)
@click.option(
    "--chunk-mb",
    type=click.FloatRange(min=0.01, max=1024),
    default=None,
    help="Chunk size in MB, 0.01-1024 (default 50).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def validate(
    path: Path,
    partner: str | None,
    schema: Path | None,
    report_path: Path | None,
    chunk_mb: float | None,
    as_json: bool,
) -> None:
    """Validate PATH (CSV or .csv.gz) as the pipeline would, offline: counts, rejects by rule
    and column, the first rejects, an HTML report. Exit 0 if the file would SUCCEED, 1 if not."""
    from etl.contracts import DEFAULT_CHUNK_SIZE_BYTES
    from etl_cli.validate import validate_file

    if partner and schema:
        raise click.UsageError("give --partner or --schema, not both")
    schema_path = _schema_file(partner, schema)
    chunk = int(chunk_mb * 1024 * 1024) if chunk_mb else DEFAULT_CHUNK_SIZE_BYTES
    result = validate_file(path, schema_path, chunk_size=chunk)
    out = report_path or Path(f"etl-validate-{path.name}.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report_html(result, schema_path), encoding="utf-8")
    result.report = str(out)
    if as_json:
        click.echo(json.dumps(result.to_json(), default=str))
    else:
        _print_validation(result)
    sys.exit(exits.OK if result.status == "SUCCEEDED" else exits.FAILED)


@click.group(name="schema")
def schema_group() -> None:
    """Draft and check partner schemas (Table Schema files, docs/validation.md)."""


@schema_group.command(name="infer")
@click.argument("path", type=FILE_ARG)
@click.option("--partner", required=True, help="Partner id: the schema's id and default file name.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the draft (default: print it).",
)
@click.option(
    "--sample-rows", type=click.IntRange(min=1), default=100_000, show_default=True, help="Rows read."
)
def infer(path: Path, partner: str, output: Path | None, sample_rows: int) -> None:
    """Draft a Table Schema for PATH from a sample of its rows: types, required, enums,
    patterns (e.g. ISO 4217 codes), date and timestamp formats, decimal scale."""
    from etl_cli.schema_tools import infer_schema

    doc = infer_schema(path, partner, sample_rows=sample_rows)
    text = json.dumps(doc, indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    click.echo(
        f"wrote {output}: {len(doc['fields'])} fields; check it with: etl schema check {output}", err=True
    )


@schema_group.command(name="check")
@click.argument("path", type=FILE_ARG)
def check(path: Path) -> None:
    """Check the schema file PATH: every problem named (exit 1 if any)."""
    from etl_cli.schema_tools import check_schema

    problems = check_schema(path)
    for problem in problems:
        click.echo(f"{path}: {problem}")
    if problems:
        sys.exit(exits.FAILED)
    click.echo(f"{path}: ok")
