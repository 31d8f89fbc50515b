"""Drafting and checking partner schemas (SPEC UX5): ``etl schema infer`` / ``etl schema check``.

:func:`infer_schema` reads a sample of a file with the csv module and proposes, per column, the
narrowest type the project's validator supports (etl/core/schema.py) that nearly every value
fits: a few bad values in a sample must not turn ``amount`` into a string, so a type is kept
when at least :data:`FIT` of the non-empty values fit it (the others become rejects, as they
would for the real schema). The draft is a starting point for a person to review.

:func:`check_schema` runs the loader's checks one part at a time so it can name every problem,
not only the first (the loader stops at the first).
"""

from __future__ import annotations

import csv
import datetime
import gzip
import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from etl.core.rules import TIMESTAMP_RE
from etl.core.schema import SCHEMA_DIR

FIT = 0.98  # share of non-empty values that must fit a type (bad rows in the sample)
REQUIRED_MAX_EMPTY = 0.005  # a column empty in fewer rows than this is required
ENUM_MAX_VALUES = 12
ISO_4217_FILE = Path(SCHEMA_DIR) / "data" / "iso4217_active.json"
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_INT = re.compile(r"-?[0-9]{1,18}")
_DECIMAL = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?")
_CODE = re.compile(r"[A-Z]{3}")


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    raw: Any = gzip.open(path, "rb") if gz else open(path, "rb")  # noqa: SIM115 - wrapped below
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")


def sample_columns(path: Path, sample_rows: int, delimiter: str = ",") -> tuple[list[str], list[list[str]]]:
    """The header and the values of each column over the first ``sample_rows`` records that
    have the header's field count."""
    with _open_text(path) as text:
        reader = csv.reader(text, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path}: no header line")
        columns: list[list[str]] = [[] for _ in header]
        for n, row in enumerate(reader):
            if n >= sample_rows:
                break
            if len(row) != len(header):
                continue  # a ragged record is a reject whatever the schema
            for values, value in zip(columns, row, strict=True):
                values.append(value)
    return [h.strip() for h in header], columns


def _fits(values: list[str], test: Any) -> bool:
    ok = sum(1 for v in values if test(v))
    return bool(values) and ok >= FIT * len(values)


def _is_date(v: str) -> bool:
    if not _DATE.fullmatch(v):
        return False
    try:
        datetime.date.fromisoformat(v)
    except ValueError:
        return False
    return True


def _decimal_shape(values: list[str]) -> tuple[int, int]:
    """(digits before the point, scale) over the values that look like decimals."""
    before = scale = 0
    for v in values:
        m = _DECIMAL.fullmatch(v)
        if m:
            before = max(before, len(m.group(1)))
            scale = max(scale, len(m.group(2) or ""))
    return before, scale


def _iso_codes() -> list[str]:
    return list(json.loads(ISO_4217_FILE.read_text(encoding="utf-8"))["codes"])


def _code_width(values: list[str]) -> int:
    """The width of a fixed-width digit code (a category code, a zip code: leading zeros
    matter, it is no number), else 0."""
    lengths = Counter(len(v) for v in values)
    width = lengths.most_common(1)[0][0] if lengths else 0
    return width if width >= 2 and _fits(values, lambda v: v.isdigit() and len(v) == width) else 0


def _string_constraints(values: list[str], cons: dict[str, Any]) -> None:
    """Patterns (fixed-length digit codes, ISO 4217 currency codes) and small enums."""
    counts = Counter(values)
    if len(values) >= 20 and _fits(values, _CODE.fullmatch):
        iso = set(_iso_codes())
        if _fits(values, iso.__contains__):  # currency codes: every active ISO 4217 code
            cons["pattern"] = "[A-Z]{3}"
            cons["enum"] = sorted(iso)
            return
    width = _code_width(values)
    if width:
        cons["pattern"] = f"[0-9]{{{width}}}"
        return
    # An enum: a few values, each seen often enough not to be a typo of a bad row.
    common = [v for v, n in counts.items() if n >= max(2, 0.001 * len(values))]
    if len(values) >= 50 and 0 < len(common) <= ENUM_MAX_VALUES and _fits(values, set(common).__contains__):
        cons["enum"] = sorted(common)


def infer_field(name: str, values: list[str]) -> dict[str, Any]:
    """One Table Schema field from a column's sampled values."""
    present = [v for v in values if v != ""]
    cons: dict[str, Any] = {
        "required": bool(values) and (len(values) - len(present)) < REQUIRED_MAX_EMPTY * len(values)
    }
    field: dict[str, Any] = {"name": re.sub(r"\W", "_", name) or "column", "type": "string"}
    if field["name"] != name:
        field["x-etl-source-name"] = name
    if not present:
        field["constraints"] = cons
        return field
    if _fits(present, _is_date):
        field.update(type="date", format="default")
    elif _fits(present, lambda v: re.fullmatch(TIMESTAMP_RE, v) is not None):
        field.update(type="datetime", format="default")
    elif _fits(present, _DECIMAL.fullmatch) and not _code_width(present):
        before, scale = _decimal_shape(present)
        if scale == 0 and _fits(present, _INT.fullmatch):
            field["type"] = "integer"
        else:
            field["type"] = "number"
            field["x-etl-decimal"] = {"precision": min(38, max(18, before + scale)), "scale": scale}
    else:
        _string_constraints(present, cons)
    field["constraints"] = cons
    return field


def infer_schema(path: Path, partner: str, sample_rows: int = 100_000) -> dict[str, Any]:
    """A draft schema document for ``path`` (partner ``partner``)."""
    header, columns = sample_columns(path, sample_rows)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", partner) or "partner"
    return {
        "$comment": f"Drafted by `etl schema infer` from {path.name}: review before use (docs/cli.md).",
        "x-etl-schema-id": f"{safe}_v1",
        "x-etl-version": "1.0.0",
        "x-etl-dataset": "transactions",
        "x-etl-reject-threshold": 0.01,
        "title": f"Partner {partner} (inferred)",
        "dialect": {"delimiter": ",", "quoteChar": '"', "doubleQuote": True, "header": True},
        "encoding": "utf-8",
        "missingValues": [""],
        "fields": [infer_field(name, values) for name, values in zip(header, columns, strict=True)],
    }


def check_schema(path: Path) -> list[str]:
    """Every problem of the schema file ``path`` (empty when the loader accepts it)."""
    from etl.core import schema as s

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        return [f"not UTF-8 text: {exc}"]
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    p = str(path)
    problems: list[str] = []

    def check(call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except s.SchemaError as exc:
            problems.append(str(exc).split(": ", 1)[-1])
            return None

    check(s._check_document, p, doc)
    if not isinstance(doc, dict):
        return problems
    check(s._parse_dialect, p, doc)
    raw_fields = doc.get("fields")
    if not isinstance(raw_fields, list) or not raw_fields:
        problems.append("fields must be a non-empty list")
    else:
        for i, raw in enumerate(raw_fields):
            check(s._parse_field, p, i, raw)
    check(s._parse_due_by, p, doc.get("x-etl-due-by"))
    if not problems:  # the checks across fields (duplicates, primary key) and the whole load
        check(s.parse_schema, doc, p)
    return problems
