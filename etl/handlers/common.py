"""What the six handlers share: configuration from the environment, event parsing helpers,
and the deterministic S3 key layout of docs/contracts.md.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Mapping
from typing import Any

from etl.contracts import (
    DEFAULT_CHUNK_SIZE_BYTES,
    DEFAULT_MAX_RECORD_BYTES,
    FAILED_PREFIX,
    MANIFEST_PREFIX,
    OUTPUT_PREFIX,
    PROCESSED_PREFIX,
    REJECTED_PREFIX,
    SCRATCH_PREFIX,
    STALE_AFTER_SECONDS,
)
from etl.errors import InvalidEvent

# How much of the object ValidateHeader reads: the header line must end within it.
HEAD_BYTES = 64 * 1024

# S3 keys are at most 1,024 bytes of UTF-8 (SPEC OPS6). Keys derived from an incoming key
# (processed/, failed/, output/, rejected/, manifests/) shorten their partner and name segments
# deterministically when they would not fit; see shorten_segment.
MAX_KEY_BYTES = 1024
MAX_PARTNER_BYTES = 255
_HASH_CHARS = 16
_MAX_EXTENSION_BYTES = 16


def shorten_segment(segment: str, max_bytes: int) -> str:
    """``segment`` if it fits in ``max_bytes`` of UTF-8, else its beginning (cut on a character
    boundary), ``~``, the first 16 hex digits of its SHA-256 and its extension (``.csv.gz``).

    Deterministic (a retry writes the same key), unique (two names differ in their hash) and
    traceable (the name starts as the partner's did; the full original key stays in the status
    table and the manifest)."""
    raw = segment.encode("utf-8")
    if len(raw) <= max_bytes:
        return segment
    base = posixpath.basename(segment)
    dot = base.find(".", 1)
    extension = base[dot:] if dot > 0 and len(base[dot:].encode("utf-8")) <= _MAX_EXTENSION_BYTES else ""
    marker = "~" + hashlib.sha256(raw).hexdigest()[:_HASH_CHARS] + extension
    budget = max_bytes - len(marker.encode("utf-8"))
    if budget < 1:
        raise ValueError(f"cannot shorten a key segment to {max_bytes} bytes")
    stem = raw[: len(raw) - len(extension.encode("utf-8"))][:budget].decode("utf-8", "ignore")
    return stem + marker


def _partner(partner: str) -> str:
    return shorten_segment(str(partner), MAX_PARTNER_BYTES)


def _with_name(directory: str, name: str) -> str:
    """``directory + name`` within MAX_KEY_BYTES, shortening the name if needed."""
    return directory + shorten_segment(name, MAX_KEY_BYTES - len(directory.encode("utf-8")))


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = int(raw)
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}")
    return value


def chunk_size_bytes() -> int:
    """Target chunk size (``CHUNK_SIZE_BYTES``, default 50 MiB)."""
    return _int_env("CHUNK_SIZE_BYTES", DEFAULT_CHUNK_SIZE_BYTES)


def max_record_bytes() -> int:
    """Largest accepted record (``MAX_RECORD_BYTES``, default 16 MiB)."""
    return _int_env("MAX_RECORD_BYTES", DEFAULT_MAX_RECORD_BYTES)


def stale_after_seconds() -> int:
    """OPS1: how long an in-flight file whose execution has ended may stay non-terminal before
    the sweep reconciles it (``STALE_AFTER_SECONDS``, set from ``-c staleAfterMinutes``;
    default two sweep periods)."""
    return _int_env("STALE_AFTER_SECONDS", STALE_AFTER_SECONDS)


def table_name() -> str:
    """The status table (``TABLE_NAME``); read per call because the local harness sets the
    environment per invocation."""
    return os.environ["TABLE_NAME"]


def require(event: Any, name: str) -> dict[str, Any]:
    """``event[name]`` as a dict, or :class:`InvalidEvent` naming what is missing."""
    value = event.get(name) if isinstance(event, Mapping) else None
    if not isinstance(value, Mapping):
        raise InvalidEvent(f"the handler input has no {name!r} object (see docs/contracts.md)")
    return dict(value)


def source_version(file: Mapping[str, Any]) -> str | None:
    """The version to read: the registered version while the source is still at its original
    key; after a move (reprocess from ``failed/``) the copy has a new version, so read the
    current one."""
    if file.get("key") == file.get("original_key"):
        return file.get("version_id") or None
    return None


def source_name(file: Mapping[str, Any]) -> str:
    """The object's file name (last key segment) as the partner sent it."""
    return posixpath.basename(str(file.get("original_key") or file.get("key") or "")) or "source"


def processed_key(file: Mapping[str, Any]) -> str:
    """``processed/<partner>/<file_id>/<name>`` (at most 1,024 bytes, see shorten_segment)."""
    return _with_name(f"{PROCESSED_PREFIX}{_partner(file['partner'])}/{file['file_id']}/", source_name(file))


def failed_key(file: Mapping[str, Any]) -> str:
    """``failed/<partner>/<file_id>/<name>`` (at most 1,024 bytes, see shorten_segment)."""
    return _with_name(f"{FAILED_PREFIX}{_partner(file['partner'])}/{file['file_id']}/", source_name(file))


def output_prefix(dataset: str, partner: str, file_id: str) -> str:
    """``output/<dataset>/partner=<partner>/file_id=<file_id>/`` (Hive-style partitions)."""
    return f"{OUTPUT_PREFIX}{dataset}/partner={_partner(partner)}/file_id={file_id}/"


def rejected_prefix(partner: str, file_id: str) -> str:
    """``rejected/partner=<partner>/file_id=<file_id>/``."""
    return f"{REJECTED_PREFIX}partner={_partner(partner)}/file_id={file_id}/"


def output_key(dataset: str, partner: str, file_id: str, index: int) -> str:
    """The Parquet object of chunk ``index``: ``.../part-00001.parquet``."""
    return f"{output_prefix(dataset, partner, file_id)}part-{index:05d}.parquet"


def rejects_key(partner: str, file_id: str, index: int) -> str:
    """The rejects CSV of chunk ``index``: ``.../part-00001.csv``."""
    return f"{rejected_prefix(partner, file_id)}part-{index:05d}.csv"


def manifest_key(partner: str, file_id: str) -> str:
    """``manifests/<partner>/<file_id>.json``."""
    return f"{MANIFEST_PREFIX}{_partner(partner)}/{file_id}.json"


def scratch_prefix(file_id: str) -> str:
    """``scratch/<file_id>/`` (gzip chunk bodies; expire by lifecycle)."""
    return f"{SCRATCH_PREFIX}{file_id}/"


def scratch_key(file_id: str, index: int) -> str:
    """``scratch/<file_id>/chunk-00001.csv``."""
    return f"{scratch_prefix(file_id)}chunk-{index:05d}.csv"
