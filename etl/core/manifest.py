"""The per-file manifest: what was read, what was written, with counts and checksums.

Pure and deterministic: the same inputs give byte-identical JSON (sorted keys, no clock read
here: ``created_at`` is passed in), so a re-run of Finalize overwrites the manifest with the
same bytes. Inputs are the shapes the workflow already has: the ``$.file`` dict (or the
file item), the chunk items of the status table (DynamoDB numbers arrive as ``Decimal``),
the schema, the execution ARN.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from etl.core.counts import check_conservation
from etl.core.schema import Schema
from etl.payloads import ChunkItem, FileAttrs, Manifest, ManifestChunk, ManifestObject

MANIFEST_VERSION = 1


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"manifest: {name} must be an integer, got {value!r}")
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise ValueError(f"manifest: {name} must be an integer, got {value!r}")
        return int(value)
    return int(value)


def _opt_int(value: Any, name: str) -> int | None:
    return None if value is None else _int(value, name)


def _object(key: Any, sha256: Any, size: Any, name: str) -> ManifestObject | None:
    if not key:
        return None
    return {"key": str(key), "sha256": None if sha256 is None else str(sha256), "bytes": _opt_int(size, name)}


def build_manifest(
    file: FileAttrs,
    chunks: Sequence[ChunkItem],
    schema: Schema,
    execution_arn: str | None,
    created_at: str,
    checksums: Mapping[str, str] | None = None,
    processed_key: str | None = None,
) -> Manifest:
    """The manifest document of one successfully processed file.

    ``file``: ``file_id``, ``bucket``, ``key`` / ``original_key``, ``version_id``, ``etag``,
    ``size``, ``partner``, ``compression`` (missing optional keys become null).
    ``chunks``: one mapping per chunk with ``chunk_id``, ``index`` (or derived from the id),
    ``start``, ``end``, ``first_line``, ``rows_in``, ``rows_valid``, ``rows_rejected``,
    ``output_key`` and optionally ``output_sha256``/``output_bytes``, ``rejects_key``,
    ``rejects_sha256``/``rejects_bytes``. ``checksums`` (object key -> sha256) fills in
    checksums the chunk items lack. Raises :class:`ConservationViolation` when a chunk's or
    the file's counts do not add up.
    """
    sums = dict(checksums or {})
    out_chunks: list[ManifestChunk] = []
    total = valid = rejected = 0
    for c in chunks:
        cid = str(c.get("chunk_id", ""))
        r_in = _int(c.get("rows_in"), cid + ".rows_in")
        r_ok = _int(c.get("rows_valid"), cid + ".rows_valid")
        r_bad = _int(c.get("rows_rejected"), cid + ".rows_rejected")
        check_conservation(cid, r_in, r_ok, r_bad)
        total, valid, rejected = total + r_in, valid + r_ok, rejected + r_bad
        index = c.get("index")
        if index is None and cid.startswith("CHUNK#"):
            index = int(cid[len("CHUNK#") :])
        out_key, rej_key = c.get("output_key"), c.get("rejects_key")
        out_chunks.append(
            {
                "chunk_id": cid,
                "index": _opt_int(index, cid + ".index"),
                "start": _opt_int(c.get("start"), cid + ".start"),
                "end": _opt_int(c.get("end"), cid + ".end"),
                "first_line": _opt_int(c.get("first_line"), cid + ".first_line"),
                "rows_in": r_in,
                "rows_valid": r_ok,
                "rows_rejected": r_bad,
                "output": _object(
                    out_key, c.get("output_sha256") or sums.get(str(out_key)), c.get("output_bytes"), cid
                ),
                "rejects": _object(
                    rej_key, c.get("rejects_sha256") or sums.get(str(rej_key)), c.get("rejects_bytes"), cid
                ),
            }
        )
    out_chunks.sort(key=lambda ch: (ch["index"] is None, ch["index"] or 0, ch["chunk_id"]))
    check_conservation("file", total, valid, rejected)  # the file's own rule
    return {
        "manifest_version": MANIFEST_VERSION,
        "file_id": file.get("file_id"),
        "partner": file.get("partner"),
        "created_at": created_at,
        "execution_arn": execution_arn,
        "source": {
            "bucket": file.get("bucket"),
            "key": file.get("original_key") or file.get("key"),
            "version_id": file.get("version_id"),
            "etag": file.get("etag"),
            "size": _opt_int(file.get("size"), "size"),
            "compression": file.get("compression", "none"),
            "processed_key": processed_key,
        },
        "schema": {
            "id": schema.schema_id,
            "version": schema.version,
            "dataset": schema.dataset,
            "reject_threshold": schema.reject_threshold,
            "source_columns": list(schema.source_columns),
            "target_columns": schema.target_columns,
        },
        "counts": {
            "chunks": len(out_chunks),
            "rows_total": total,
            "rows_valid": valid,
            "rows_rejected": rejected,
            "rejected_share": round(rejected / total, 6) if total else 0.0,
        },
        "chunks": out_chunks,
    }


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def manifest_json(d: Mapping[str, Any]) -> bytes:
    """Deterministic UTF-8 JSON: sorted keys, indent 2, trailing newline."""
    text = json.dumps(d, sort_keys=True, indent=2, ensure_ascii=False, default=_default)
    return (text + "\n").encode("utf-8")
