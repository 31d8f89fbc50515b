"""``etl report``: one self-contained HTML page per file (SPEC UX3).

Everything is inline (CSS in a <style>, charts as <svg>), no script, and a Content Security
Policy of ``default-src 'none'`` so a browser makes no request at all when it opens the page.
Every value that comes from the data (a partner's file can hold ``<script>``) goes through
:func:`html.escape`.

:func:`collect` reads what a page shows through a :class:`~etl_cli.pipeline.Pipeline` (the
status table, the rejects CSVs, the manifest, the partner's schema); :func:`render` is pure.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from etl.payloads import ChunkItem, FileItem
from etl_cli.render import chunk_duration, fmt_bytes, fmt_seconds, parse_time

SAMPLE_REJECTS = 50
# No request of any kind (no script, image, font or stylesheet from anywhere); inline CSS only.
CSP = "default-src 'none'; style-src 'unsafe-inline'"
MAX_BARS = 15

# A reject's rule, from the reason text of etl/core/rules.py, for rejects CSVs that have no
# ``rule`` column (written before it existed): the same stable codes as the rule column and the
# rejects table (etl.core.rules.RULES, SPEC UX8; a test checks every reason the validator
# writes). First match wins.
_RULES_FROM_REASON = (
    (r"required value is missing", "required"),
    (r"duplicates the transaction id of line", "duplicate"),
    (r"decimals$|digits before the decimal point|is outside", "range"),
    (r"is not a decimal number|is not an integer|is not a real calendar date|is not a date in", "type"),
    (r"is not an ISO 8601 timestamp|is not valid$", "type"),
    (r"does not match the pattern", "pattern"),
    (r"is not one of|is not an allowed value", "enum"),
    (r"is shorter than|characters long, more than", "length"),
    (r"invalid UTF-8", "encoding"),
    (r"expected \d+ fields, found", "fields"),
)


def rule_of(row: dict[str, str]) -> str:
    """The reject's rule: its ``rule`` column when the CSV has one, else read from the reason."""
    if row.get("rule"):
        return str(row["rule"])
    reason = row.get("reason") or ""
    for pattern, rule in _RULES_FROM_REASON:
        if re.search(pattern, reason):
            return rule
    return "other"


@dataclass
class Reject:
    line: int | None
    column: str
    rule: str
    value: str
    reason: str


@dataclass
class ReportData:
    file: FileItem
    chunks: list[ChunkItem]
    report: dict[str, Any]  # FileReport.to_json()
    rejects_total: int = 0
    by_rule: Counter[str] = field(default_factory=Counter)
    by_column: Counter[str] = field(default_factory=Counter)
    sample: list[Reject] = field(default_factory=list)
    schema: dict[str, Any] | None = None
    schema_name: str | None = None
    manifest: dict[str, Any] | None = None
    generated_at: str = ""


def _value_of(record: str, column: str, columns: list[str]) -> str:
    """The offending value: the record's field for ``column`` (whole record otherwise)."""
    if column in columns:
        try:
            fields = next(csv.reader([record]))
        except (csv.Error, StopIteration):
            fields = []
        if len(fields) == len(columns):
            return fields[columns.index(column)]
    return record.rstrip("\r\n")


def add_rejects(data: ReportData, csv_text: str, columns: list[str], sample: int = SAMPLE_REJECTS) -> None:
    """Count one rejects CSV (``line,column,reason,record`` [+ ``rule``]) into ``data``."""
    for row in csv.DictReader(io.StringIO(csv_text)):
        rule = rule_of(row)
        column = row.get("column") or "*"
        data.rejects_total += 1
        data.by_rule[rule] += 1
        data.by_column[column] += 1
        if len(data.sample) < sample:
            line = row.get("line") or ""
            data.sample.append(
                Reject(
                    int(line) if line.isdigit() else None,
                    column,
                    rule,
                    _value_of(row.get("record") or "", column, columns),
                    row.get("reason") or "",
                )
            )


def collect(pipe: Any, file_id: str) -> ReportData:
    """Everything the page shows, read from the deployed (or emulated) pipeline."""
    item = pipe.get_file(file_id)
    if item is None:
        from etl_cli.pipeline import PipelineError

        raise PipelineError(f"unknown file {file_id}")
    chunks = sorted(pipe.list_chunks(file_id), key=lambda c: str(c.get("chunk_id")))
    data = ReportData(
        file=item,
        chunks=chunks,
        report=pipe.report(file_id).to_json(),
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )
    columns: list[str] = []
    partner = item.get("partner")
    if partner:
        from etl.core import schema as schema_mod

        path = Path(schema_mod.schema_path(str(partner)))
        data.schema = json.loads(path.read_text(encoding="utf-8"))
        data.schema_name = path.name
        columns = [str(f.get("name")) for f in data.schema.get("fields", [])]
    s3 = pipe.client("s3")
    bucket = pipe.outputs.bucket
    for chunk in chunks:
        if chunk.get("rejects_key"):
            body = s3.get_object(Bucket=bucket, Key=chunk["rejects_key"])["Body"].read()
            add_rejects(data, body.decode("utf-8", errors="replace"), columns)
    if item.get("manifest_key"):
        try:
            body = s3.get_object(Bucket=bucket, Key=item["manifest_key"])["Body"].read()
            data.manifest = json.loads(body)
        except Exception:  # a FAILED file has none; a missing object is shown as such
            data.manifest = None
    return data


# ---------------------------------------------------------------------------------------------
# Rendering (pure)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;
  color:#1d2430;background:#f5f6f8}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.sub{color:#5b6573;margin:0 0 16px;word-break:break-all}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:600;color:#fff;font-size:13px}
.SUCCEEDED{background:#1a7f37}.FAILED{background:#cf222e}.other{background:#9a6700}
.reason{background:#fff0f0;border-left:4px solid #cf222e;padding:8px 12px;margin:12px 0;
  white-space:pre-wrap;word-break:break-word}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:10px 14px;min-width:130px}
.card .n{font-size:20px;font-weight:700}.card .l{color:#5b6573;font-size:12px;text-transform:uppercase}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.panel{background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:12px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border-bottom:1px solid #e6e9ed;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
td{overflow-wrap:anywhere}#sample td:nth-child(4){max-width:280px}#sample td:nth-child(5){max-width:420px}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
pre{background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:10px;overflow:auto;max-height:420px}
.muted{color:#5b6573}svg text{font:11px system-ui,sans-serif;fill:#1d2430}
.panel svg{max-width:100%;height:auto}
details summary{cursor:pointer;font-weight:600;margin:8px 0}
@media (max-width:800px){.grid{grid-template-columns:1fr}}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> str:
    return f"{value:,}" if isinstance(value, (int, float)) else "-"


def bar_chart(counts: list[tuple[str, int]], title: str, colour: str = "#cf222e") -> str:
    """A horizontal bar chart as inline SVG (labels and values are escaped)."""
    if not counts:
        return f'<p class="muted">{_e(title)}: none</p>'
    shown = counts[:MAX_BARS]
    rest = sum(n for _, n in counts[MAX_BARS:])
    if rest:
        shown.append((f"{len(counts) - MAX_BARS} more", rest))
    label_w, bar_w, row_h = 150, 300, 22
    height = row_h * len(shown) + 8
    top = max(n for _, n in shown) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {label_w + bar_w + 70} {height}" '
        f'width="{label_w + bar_w + 70}" height="{height}" aria-label="{_e(title)}">'
        f"<title>{_e(title)}</title>"
    ]
    for i, (label, n) in enumerate(shown):
        y = 4 + i * row_h
        w = max(1, round(n / top * bar_w))
        text = label if len(label) <= 22 else label[:21] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{_e(text)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 8}" fill="{colour}" rx="2"/>'
            f'<text x="{label_w + w + 6}" y="{y + 15}">{n:,}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def timeline_chart(chunks: list[ChunkItem]) -> str:
    """Per-chunk timings as an inline SVG Gantt chart: one bar per chunk, from its start."""
    spans = []
    for c in chunks:
        start, end = parse_time(c.get("started_at")), parse_time(c.get("finished_at"))
        if start and end and end >= start:
            spans.append((str(c.get("chunk_id", "?")).replace("CHUNK#", "#"), start, end, c.get("status")))
    if not spans:
        return '<p class="muted">no chunk timings (no chunk has run)</p>'
    t0 = min(s for _, s, _, _ in spans)
    total = max((e - t0).total_seconds() for _, _, e, _ in spans) or 1e-3
    label_w, plot_w, row_h = 70, 560, 16
    height = row_h * len(spans) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {label_w + plot_w + 70} {height}" '
        f'width="{label_w + plot_w + 70}" height="{height}" aria-label="chunk timings">'
        "<title>chunk timings</title>"
    ]
    for i, (label, start, end, status) in enumerate(spans):
        y = 4 + i * row_h
        x = label_w + (start - t0).total_seconds() / total * plot_w
        secs = (end - start).total_seconds()
        w = max(1.0, secs / total * plot_w)
        colour = "#cf222e" if status == "FAILED" else "#0969da"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 11}" text-anchor="end">{_e(label)}</text>'
            f'<rect x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{row_h - 5}" fill="{colour}" rx="2"/>'
            f'<text x="{x + w + 4:.1f}" y="{y + 11}">{secs:.2f} s</text>'
        )
    axis_y = height - 12
    parts.append(
        f'<line x1="{label_w}" y1="{axis_y - 8}" x2="{label_w + plot_w}" y2="{axis_y - 8}" stroke="#8c959f"/>'
        f'<text x="{label_w}" y="{axis_y + 4}">0 s</text>'
        f'<text x="{label_w + plot_w}" y="{axis_y + 4}" text-anchor="end">{total:.1f} s</text></svg>'
    )
    return "".join(parts)


def _schema_table(schema: dict[str, Any]) -> str:
    rows = []
    for f in schema.get("fields", []):
        cons = dict(f.get("constraints") or {})
        required = "yes" if cons.pop("required", False) else "no"
        cons_text = ", ".join(f"{k}={json.dumps(v)}" for k, v in cons.items())
        rows.append(
            f"<tr><td><code>{_e(f.get('name'))}</code></td><td>{_e(f.get('type'))}</td>"
            f"<td>{required}</td><td><code>{_e(cons_text)}</code></td></tr>"
        )
    return (
        "<table><thead><tr><th>column</th><th>type</th><th>required</th><th>constraints</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _column_counts(data: ReportData) -> list[tuple[str, int]]:
    """By column, with the whole-record rejects (column ``*``) named as such."""
    return [("(whole record)" if c == "*" else c, n) for c, n in data.by_column.most_common()]


def _reason_html(f: Any) -> str:
    """``<b>Type</b>: message``, the type said once (file items store ``Type: message``)."""
    kind = str(f.get("error_type") or "reason")
    text = str(f["error"])
    if text.startswith(kind + ": "):
        text = text[len(kind) + 2 :]
    return f"<b>{_e(kind)}</b>: {_e(text)}"


def render(data: ReportData) -> str:
    f, rep = data.file, data.report
    status = str(f.get("status", "UNKNOWN"))
    badge = status if status in ("SUCCEEDED", "FAILED") else "other"
    name = str(f.get("original_key") or f.get("key") or data.report.get("file_id"))
    total, valid, rejected = f.get("rows_total"), f.get("rows_valid"), f.get("rows_rejected")
    share = "-"
    if isinstance(total, (int, float)) and total:
        share = f"{(rejected or 0) / total * 100:.2f}%"
    duration = rep.get("duration_s")
    cards = [
        ("rows total", _num(total)),
        ("rows valid", _num(valid)),
        ("rows rejected", _num(rejected)),
        ("rejected share", share),
        ("size", fmt_bytes(f.get("size"))),
        ("chunks", f"{rep.get('chunks_succeeded', 0)}/{_num(f.get('chunk_count'))}"),
        ("duration", fmt_seconds(duration) if duration else "-"),
        ("attempts", _num(f.get("attempts"))),
    ]
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>ETL report: {_e(Path(name).name)} ({_e(status)})</title><style>{CSS}</style></head>",
        "<body><main>",
        f"<h1>{_e(Path(name).name)} <span class='badge {badge}' id='status'>{_e(status)}</span></h1>",
        f"<p class='sub'>file id <code>{_e(f.get('file_id'))}</code> · partner <b>{_e(f.get('partner'))}</b>"
        f" · <code>s3://{_e(f.get('bucket'))}/{_e(name)}</code> · schema {_e(f.get('schema_id') or '-')}"
        f" {_e(f.get('schema_version') or '')} · generated {_e(data.generated_at)}</p>",
    ]
    if f.get("error"):
        out.append(f"<div class='reason' id='reason'>{_reason_html(f)}</div>")
    out.append("<div class='cards' id='counts'>")
    for label, value in cards:
        out.append(
            f"<div class='card'><div class='n'>{_e(value)}</div><div class='l'>{_e(label)}</div></div>"
        )
    out.append("</div>")

    out.append(f"<h2>Rejects ({data.rejects_total:,})</h2>")
    if data.rejects_total:
        out.append("<div class='grid'>")
        out.append(
            f"<div class='panel'><b>by rule</b>{bar_chart(data.by_rule.most_common(), 'by rule')}</div>"
        )
        out.append(
            f"<div class='panel'><b>by column</b>"
            f"{bar_chart(_column_counts(data), 'by column', '#9a6700')}</div>"
        )
        out.append("</div>")
        out.append(f"<h2>First {len(data.sample)} rejects</h2>")
        out.append(
            "<table id='sample'><thead><tr><th>line</th><th>column</th><th>rule</th><th>value</th>"
            "<th>reason</th></tr></thead><tbody>"
        )
        for r in data.sample:
            out.append(
                f"<tr><td class='num'>{_e(r.line)}</td><td><code>{_e(r.column)}</code></td>"
                f"<td>{_e(r.rule)}</td><td><code>{_e(r.value)}</code></td><td>{_e(r.reason)}</td></tr>"
            )
        out.append("</tbody></table>")
    else:
        out.append("<p class='muted'>no rejected rows</p>")

    out.append(f"<h2>Chunks ({len(data.chunks)})</h2>")
    out.append(f"<div class='panel'>{timeline_chart(data.chunks)}</div>")
    if data.chunks:
        out.append(
            "<table id='chunks'><thead><tr><th>chunk</th><th>status</th><th>bytes</th><th>rows</th>"
            "<th>rejected</th><th>attempts</th><th>duration</th><th>error</th></tr></thead><tbody>"
        )
        for c in data.chunks:
            secs = chunk_duration(c)
            out.append(
                f"<tr><td>{_e(c.get('chunk_id'))}</td><td>{_e(c.get('status'))}</td>"
                f"<td class='num'>{_e(c.get('start'))}-{_e(c.get('end'))}</td>"
                f"<td class='num'>{_num(c.get('rows_in'))}</td>"
                f"<td class='num'>{_num(c.get('rows_rejected'))}</td>"
                f"<td class='num'>{_num(c.get('attempts'))}</td>"
                f"<td class='num'>{_e(fmt_seconds(secs) if secs is not None else '-')}</td>"
                f"<td>{_e(c.get('error') or '')}</td></tr>"
            )
        out.append("</tbody></table>")

    out.append("<h2>Schema</h2>")
    if data.schema:
        out.append(f"<p class='muted'>etl/schemas/{_e(data.schema_name)}: {_e(data.schema.get('title'))}</p>")
        out.append(_schema_table(data.schema))
        out.append(
            "<details><summary>schema JSON</summary>"
            f"<pre>{_e(json.dumps(data.schema, indent=2))}</pre></details>"
        )
    else:
        out.append("<p class='muted'>unknown (no partner recorded)</p>")
    out.append("<h2>Manifest</h2>")
    if data.manifest is not None:
        out.append(f"<pre id='manifest'>{_e(json.dumps(data.manifest, indent=2, sort_keys=True))}</pre>")
    else:
        out.append("<p class='muted'>no manifest (written only when a file succeeds)</p>")
    out.append("<h2>Where things are</h2><table>")
    for label in ("outputs", "rejects", "manifest", "processed", "failed", "execution_arn"):
        if rep.get(label):
            out.append(f"<tr><th>{_e(label)}</th><td><code>{_e(rep[label])}</code></td></tr>")
    out.append("</table></main></body></html>\n")
    return "".join(out)


def write_report(pipe: Any, file_id: str, out: Path) -> Path:
    """Collect, render and write the page for ``file_id`` to ``out``; returns ``out``."""
    html = render(collect(pipe, file_id))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
