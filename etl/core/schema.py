"""Partner schemas: Frictionless Table Schema + CSV Dialect files in ``etl/schemas/``.

A schema file describes the columns of a partner's CSV *in header order*. Standard keys:
``fields[].name/type/format/constraints`` (``required``, ``pattern``, ``enum``, ``minLength``,
``maxLength``), ``dialect`` (``delimiter``, ``quoteChar``, ``doubleQuote``, ``header``),
``encoding``, ``missingValues``. Our extensions use ``x-etl-*`` keys:

- top level: ``x-etl-schema-id``, ``x-etl-version``, ``x-etl-dataset``,
  ``x-etl-reject-threshold`` (share of rejected rows above which the file fails; default 0.01),
  ``x-etl-due-by`` (``"HH:MMZ"``, UTC: the partner's daily file is due by then; a scheduled
  check alerts when none arrived, SPEC OPS3);
- per field: ``x-etl-source-name`` (the partner's column name; ``name`` is our target name),
  ``x-etl-decimal`` ``{precision, scale}`` (required on ``number`` fields: numbers are exact
  decimals, never floats), ``x-etl-enum-file`` (a JSON file beside the schema whose ``codes``
  list becomes the ``enum`` constraint, e.g. the ISO 4217 list), ``x-etl-ignore`` (the column
  must be in the header but is not validated or kept).

Every schema file is validated when loaded; a bad one raises :class:`SchemaError` naming the
file and the offending key, so a broken deployment fails loudly on its first file.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from etl.errors import PermanentError, UnknownPartner

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "schemas")
DEFAULT_SCHEMA = "default"
DEFAULT_REJECT_THRESHOLD = 0.01

FIELD_TYPES = ("string", "integer", "number", "date", "datetime")
_KNOWN_CONSTRAINTS = {"required", "pattern", "enum", "minLength", "maxLength"}
# Frictionless keys we accept and ignore (documentation only).
_DOC_KEYS = {"title", "description", "example", "rdfType", "$comment"}
_FIELD_KEYS = _DOC_KEYS | {
    "name",
    "type",
    "format",
    "constraints",
    "x-etl-source-name",
    "x-etl-decimal",
    "x-etl-enum-file",
    "x-etl-ignore",
}
_TOP_KEYS = _DOC_KEYS | {
    "fields",
    "dialect",
    "encoding",
    "missingValues",
    "primaryKey",
    "x-etl-schema-id",
    "x-etl-version",
    "x-etl-dataset",
    "x-etl-reject-threshold",
    "x-etl-due-by",
}
# "06:00Z": hours and minutes of a UTC time of day (the Z is required: no local time zones).
_DUE_BY = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])Z$")
_DIALECT_KEYS = {"delimiter", "quoteChar", "doubleQuote", "header", "lineTerminator", "$comment"}
# Partner names come from S3 keys: only such names may select a schema file (no path tricks).
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SchemaError(PermanentError):
    """A schema file is missing, not JSON, or violates the schema format (message says where)."""


@dataclass(frozen=True)
class Field:
    """One target column and the rules its values must meet.

    ``name`` is the output column name, ``source_name`` the partner's header name.
    ``pattern`` is the raw Frictionless pattern (implicitly anchored: the whole value must match).
    """

    name: str
    source_name: str
    type: str
    format: str = "default"
    required: bool = False
    pattern: str | None = None
    enum: tuple[str, ...] | None = None
    min_length: int | None = None
    max_length: int | None = None
    precision: int | None = None
    scale: int | None = None
    description: str = ""

    @property
    def anchored_pattern(self) -> str | None:
        """The pattern as an RE2 regex that must match the whole value."""
        if self.pattern is None:
            return None
        return f"^(?:{self.pattern})$"


@dataclass(frozen=True)
class Schema:
    """A loaded, validated partner schema (see docs/internal-api.md)."""

    schema_id: str
    version: str
    dataset: str
    source_columns: list[str]
    fields: list[Field]
    column_mapping: dict[str, str]
    reject_threshold: float = DEFAULT_REJECT_THRESHOLD
    delimiter: str = ","
    encoding: str = "utf-8"
    quote_char: str = '"'
    ignored_columns: list[str] = field(default_factory=list)
    path: str = ""
    # (hour, minute) UTC by which the daily file is due, or None (no freshness check).
    due_by: tuple[int, int] | None = None
    # Frictionless ``primaryKey``: target names of the fields that identify a row (unique
    # values; the Parquet writer does not dictionary-encode them).
    primary_key: tuple[str, ...] = ()

    @property
    def target_columns(self) -> list[str]:
        """Output column names, in output order."""
        return [f.name for f in self.fields]

    def get_field(self, name: str) -> Field:
        """The field with target name ``name`` (KeyError if none)."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


def _fail(path: str, msg: str) -> SchemaError:
    return SchemaError(f"schema {os.path.basename(path) or path}: {msg}")


def _check_pattern(path: str, where: str, pattern: Any) -> str:
    if not isinstance(pattern, str) or not pattern:
        raise _fail(path, f"{where}: pattern must be a non-empty string")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise _fail(path, f"{where}: pattern {pattern!r} does not compile: {exc}") from None
    # Patterns run in RE2 (pyarrow.compute); Python's re accepts things RE2 rejects
    # (backreferences, lookaround), so compile it there too.
    import pyarrow as pa  # local import: schema loading stays cheap for callers not validating
    import pyarrow.compute as pc

    from etl.core.arrow_init import prime

    prime()  # before the first pa.array: keeps pandas out of the process (PERF4)

    try:
        pc.match_substring_regex(pa.array([""], pa.string()), f"^(?:{pattern})$")  # type: ignore[attr-defined]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise _fail(path, f"{where}: pattern {pattern!r} is not valid RE2: {exc}") from None
    return pattern


def _opt_int(path: str, where: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(path, f"{where} must be a non-negative integer, got {value!r}")
    return value


def _load_enum_file(path: str, where: str, rel: Any) -> tuple[str, ...]:
    if not isinstance(rel, str) or os.path.isabs(rel) or ".." in rel.replace("\\", "/").split("/"):
        raise _fail(path, f"{where}: x-etl-enum-file must be a relative path inside the schema folder")
    enum_path = os.path.join(os.path.dirname(path), rel)
    try:
        with open(enum_path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:
        raise _fail(path, f"{where}: cannot read x-etl-enum-file {rel!r}: {exc}") from None
    codes = doc.get("codes") if isinstance(doc, dict) else None
    if not isinstance(codes, list) or not codes or not all(isinstance(c, str) for c in codes):
        raise _fail(path, f"{where}: x-etl-enum-file {rel!r} needs a non-empty list of strings under 'codes'")
    return tuple(codes)


def _field_name(path: str, index: int, raw: Any) -> str:
    """The field's object shape, known keys and target name."""
    where = f"fields[{index}]"
    if not isinstance(raw, dict):
        raise _fail(path, f"{where} must be an object")
    unknown = sorted(set(raw) - _FIELD_KEYS)
    if unknown:
        raise _fail(path, "{}: unknown keys {}".format(where, ", ".join(unknown)))
    name = raw.get("name")
    if not isinstance(name, str) or not _IDENT.match(name):
        raise _fail(path, f"{where}: name must be an identifier ([A-Za-z_][A-Za-z0-9_]*), got {name!r}")
    return name


def _field_kind(path: str, where: str, raw: dict[str, Any], name: str) -> tuple[str, str, str, bool]:
    """(source_name, type, format, x-etl-ignore) of a field."""
    source_name = raw.get("x-etl-source-name", name)
    if not isinstance(source_name, str) or not source_name or source_name != source_name.strip():
        raise _fail(path, f"{where}: x-etl-source-name must be a non-empty string without outer spaces")
    ftype = raw.get("type", "string")
    if ftype not in FIELD_TYPES:
        raise _fail(path, "{}: type {!r} is not one of {}".format(where, ftype, ", ".join(FIELD_TYPES)))
    fmt = raw.get("format", "default")
    if fmt not in ("default", "any") and not (ftype == "date" and fmt == "%Y-%m-%d"):
        # Only ISO formats are supported: YYYY-MM-DD dates, ISO 8601 datetimes with an offset.
        raise _fail(path, f"{where}: format {fmt!r} is not supported (use 'default')")
    ignore = raw.get("x-etl-ignore", False)
    if not isinstance(ignore, bool):
        raise _fail(path, f"{where}: x-etl-ignore must be true or false")
    return source_name, ftype, fmt, ignore


def _field_constraints(path: str, where: str, raw: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The constraints object (known keys only) and its ``required`` flag."""
    cons = raw.get("constraints", {})
    if not isinstance(cons, dict):
        raise _fail(path, f"{where}: constraints must be an object")
    unknown = sorted(set(cons) - _KNOWN_CONSTRAINTS)
    if unknown:
        raise _fail(path, "{}: unsupported constraints {}".format(where, ", ".join(unknown)))
    required = cons.get("required", False)
    if not isinstance(required, bool):
        raise _fail(path, f"{where}: constraints.required must be true or false")
    return cons, required


def _field_enum(
    path: str, where: str, raw: dict[str, Any], cons: dict[str, Any], ftype: str
) -> tuple[str, ...] | None:
    """The allowed values: ``constraints.enum`` or ``x-etl-enum-file`` (string fields only)."""
    enum: tuple[str, ...] | None = None
    if "enum" in cons:
        values = cons["enum"]
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise _fail(path, f"{where}: constraints.enum must be a non-empty list of strings")
        enum = tuple(values)
    if "x-etl-enum-file" in raw:
        if enum is not None:
            raise _fail(path, f"{where}: use either constraints.enum or x-etl-enum-file, not both")
        enum = _load_enum_file(path, where, raw["x-etl-enum-file"])
    if enum is not None and ftype != "string":
        raise _fail(path, f"{where}: enum is supported on string fields only")
    return enum


def _field_lengths(
    path: str, where: str, cons: dict[str, Any], ftype: str, pattern: str | None
) -> tuple[int | None, int | None]:
    """(minLength, maxLength); with ``pattern`` they apply to string fields only."""
    min_length = _opt_int(path, where + ": minLength", cons.get("minLength"))
    max_length = _opt_int(path, where + ": maxLength", cons.get("maxLength"))
    if min_length is not None and max_length is not None and min_length > max_length:
        raise _fail(path, f"{where}: minLength > maxLength")
    if (pattern or min_length is not None or max_length is not None) and ftype != "string":
        raise _fail(path, f"{where}: pattern/minLength/maxLength apply to string fields only")
    return min_length, max_length


def _field_decimal(path: str, where: str, raw: dict[str, Any], ftype: str) -> tuple[int | None, int | None]:
    """(precision, scale): required on number fields, refused on any other."""
    dec = raw.get("x-etl-decimal")
    if ftype != "number":
        if dec is not None:
            raise _fail(path, f"{where}: x-etl-decimal is only allowed on number fields")
        return None, None
    if not isinstance(dec, dict) or set(dec) != {"precision", "scale"}:
        raise _fail(path, f"{where}: number fields need x-etl-decimal {{precision, scale}}")
    precision = _opt_int(path, where + ": precision", dec["precision"])
    scale = _opt_int(path, where + ": scale", dec["scale"])
    if precision is None or scale is None or not (1 <= precision <= 38) or scale > precision:
        raise _fail(path, f"{where}: x-etl-decimal needs 1 <= precision <= 38 and 0 <= scale <= precision")
    return precision, scale


def _parse_field(path: str, index: int, raw: Any) -> tuple[Field, bool]:
    """One entry of ``fields``: the :class:`Field` and whether it is ``x-etl-ignore``."""
    name = _field_name(path, index, raw)
    where = f"field {name!r}"
    source_name, ftype, fmt, ignore = _field_kind(path, where, raw, name)
    cons, required = _field_constraints(path, where, raw)
    pattern = _check_pattern(path, where, cons["pattern"]) if "pattern" in cons else None
    enum = _field_enum(path, where, raw, cons, ftype)
    min_length, max_length = _field_lengths(path, where, cons, ftype, pattern)
    precision, scale = _field_decimal(path, where, raw, ftype)
    desc = raw.get("description", "")
    return (
        Field(
            name=name,
            source_name=source_name,
            type=ftype,
            format=fmt,
            required=required,
            pattern=pattern,
            enum=enum,
            min_length=min_length,
            max_length=max_length,
            precision=precision,
            scale=scale,
            description=desc if isinstance(desc, str) else "",
        ),
        ignore,
    )


def _check_document(path: str, doc: Any) -> float:
    """Top-level keys, names, encoding and missing values; returns the reject threshold."""
    if not isinstance(doc, dict):
        raise _fail(path, "top level must be a JSON object")
    unknown = sorted(k for k in set(doc) - _TOP_KEYS)
    if unknown:
        raise _fail(path, "unknown top-level keys {}".format(", ".join(unknown)))
    for key in ("x-etl-schema-id", "x-etl-version", "x-etl-dataset"):
        value = doc.get(key)
        if not isinstance(value, str) or not _SAFE_NAME.match(value):
            raise _fail(path, f"{key} is required: a short name of [A-Za-z0-9_.-], got {value!r}")
    threshold = doc.get("x-etl-reject-threshold", DEFAULT_REJECT_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise _fail(path, f"x-etl-reject-threshold must be a number between 0 and 1, got {threshold!r}")
    encoding = doc.get("encoding", "utf-8")
    if not isinstance(encoding, str) or encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise _fail(path, f"encoding {encoding!r} is not supported (only utf-8)")
    if doc.get("missingValues", [""]) != [""]:
        raise _fail(path, 'missingValues must be [""] (an empty field is a missing value)')
    return float(threshold)


def _parse_dialect(path: str, doc: dict[str, Any]) -> str:
    """The CSV dialect (RFC 4180 with a header line); returns the delimiter."""
    dialect = doc.get("dialect", {})
    if not isinstance(dialect, dict):
        raise _fail(path, "dialect must be an object")
    unknown = sorted(set(dialect) - _DIALECT_KEYS)
    if unknown:
        raise _fail(path, "dialect: unsupported keys {}".format(", ".join(unknown)))
    delimiter = dialect.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n' or ord(delimiter) > 127:
        raise _fail(path, "dialect.delimiter must be one ASCII character other than a quote or newline")
    if dialect.get("quoteChar", '"') != '"' or dialect.get("doubleQuote", True) is not True:
        raise _fail(path, "dialect: only quoteChar '\"' with doubleQuote true (RFC 4180) is supported")
    if dialect.get("header", True) is not True:
        raise _fail(path, "dialect.header must be true: files must start with a header line")
    return delimiter


def _parse_fields(path: str, raw_fields: Any) -> tuple[list[Field], list[str], list[str], dict[str, str]]:
    """(output fields, source columns in file order, ignored columns, source -> target name)."""
    if not isinstance(raw_fields, list) or not raw_fields:
        raise _fail(path, "fields must be a non-empty list")
    fields: list[Field] = []
    source_columns: list[str] = []
    ignored: list[str] = []
    mapping: dict[str, str] = {}
    seen_targets = set()
    for i, raw in enumerate(raw_fields):
        fld, ignore = _parse_field(path, i, raw)
        if fld.source_name in source_columns:
            raise _fail(path, f"duplicate source column {fld.source_name!r}")
        source_columns.append(fld.source_name)
        if ignore:
            ignored.append(fld.source_name)
            continue
        if fld.name in seen_targets:
            raise _fail(path, f"duplicate field name {fld.name!r}")
        seen_targets.add(fld.name)
        fields.append(fld)
        mapping[fld.source_name] = fld.name
    if not fields:
        raise _fail(path, "every field is x-etl-ignore: nothing to output")
    return fields, source_columns, ignored, mapping


def parse_schema(doc: Any, path: str = "<memory>") -> Schema:
    """Validate a schema document (already JSON-decoded) and build a :class:`Schema`."""
    threshold = _check_document(path, doc)
    delimiter = _parse_dialect(path, doc)
    fields, source_columns, ignored, mapping = _parse_fields(path, doc.get("fields"))
    due_by = _parse_due_by(path, doc.get("x-etl-due-by"))
    primary_key = _parse_primary_key(path, doc.get("primaryKey"), fields)
    return Schema(
        schema_id=doc["x-etl-schema-id"],
        version=doc["x-etl-version"],
        dataset=doc["x-etl-dataset"],
        source_columns=source_columns,
        fields=fields,
        column_mapping=mapping,
        reject_threshold=threshold,
        delimiter=delimiter,
        encoding="utf-8",
        quote_char='"',
        ignored_columns=ignored,
        path=path,
        due_by=due_by,
        primary_key=primary_key,
    )


def _parse_primary_key(path: str, value: Any, fields: list[Field]) -> tuple[str, ...]:
    """Frictionless ``primaryKey``: one field name or a list of them (output fields only)."""
    if value is None:
        return ()
    names = [value] if isinstance(value, str) else value
    known = {f.name for f in fields}
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n in known for n in names):
        raise _fail(path, f"primaryKey must name one or more output fields, got {value!r}")
    return tuple(names)


def _parse_due_by(path: str, value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    match = _DUE_BY.match(value) if isinstance(value, str) else None
    if match is None:
        raise _fail(path, f'x-etl-due-by must be a UTC time of day like "06:00Z", got {value!r}')
    return int(match.group(1)), int(match.group(2))


def partner_schemas() -> list[str]:
    """The partners that have their own schema file (``etl/schemas/<partner>.json``)."""
    return sorted(
        name[: -len(".json")]
        for name in os.listdir(SCHEMA_DIR)
        if name.endswith(".json") and name != DEFAULT_SCHEMA + ".json" and _SAFE_NAME.match(name)
    )


@functools.lru_cache(maxsize=64)
def _load_cached(path: str, mtime_ns: int) -> Schema:
    # mtime is part of the key so an edited file (tests, local runs) is re-read.
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise _fail(path, f"cannot read: {exc}") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(path, f"not valid JSON: {exc}") from None
    return parse_schema(doc, path)


def load_schema_file(path: str) -> Schema:
    """Load and validate one schema file (cached per path and modification time)."""
    path = os.path.abspath(path)
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError as exc:
        raise _fail(path, f"cannot read: {exc}") from None
    return _load_cached(path, mtime)


def schema_path(partner: str) -> str:
    """The file ``load_schema(partner)`` reads: the partner's own if present, else the default."""
    if partner and _SAFE_NAME.match(partner):
        candidate = os.path.join(SCHEMA_DIR, partner + ".json")
        if os.path.isfile(candidate):
            return candidate
    return os.path.join(SCHEMA_DIR, DEFAULT_SCHEMA + ".json")


def known_partners(default_schema_partners: Iterable[str] = ()) -> list[str]:
    """SEC2: the partners a key may name: those with a schema file, those declared (context
    ``partners``) to use the default schema, and ``default`` itself."""
    return sorted({DEFAULT_SCHEMA, *partner_schemas(), *default_schema_partners})


def schema_for_partner(partner: str, default_schema_partners: Iterable[str] = ()) -> Schema:
    """SEC2: the partner's schema, or the default one if the partner is declared to use it;
    any other partner raises :class:`~etl.errors.UnknownPartner` naming the known ones (a typo
    in a prefix, or a partner onboarded without a schema, is refused instead of guessed)."""
    known = known_partners(default_schema_partners)
    if partner not in known:
        raise UnknownPartner(
            f"partner {partner!r} has no schema (etl/schemas/{partner}.json) and is not declared to "
            f"use the default schema; known partners: {', '.join(known)}"
        )
    return load_schema(partner)


def load_schema(partner: str) -> Schema:
    """The schema for ``partner``: ``etl/schemas/<partner>.json`` if present, else ``default.json``.

    Partner names that are not plain file names (``..``, slashes, spaces) never select a file;
    they get the default schema.
    """
    return load_schema_file(schema_path(partner))
