"""The shapes that travel between the steps, typed once (SPEC DX1).

docs/contracts.md describes them in prose; these are the same shapes for mypy (``mypy --strict
etl`` in ``make lint``): the workflow state (``$.file``, ``$.header``, ``$.plan`` and its chunk
entries, ``$.result``, ``$.failure``), each handler's event, and the status-table items the
handlers, the manifest and the CLI read. A key renamed here is an error at every use.

Keys a payload may lack are in a ``total=False`` base class (``NotRequired`` is Python 3.11;
this module ships to Lambda and runs on 3.9). Status items are ``total=False`` throughout:
DynamoDB returns whatever attributes the item has.

:func:`new_file` is the one builder of a file's identity attributes from an S3 object
(RegisterFile, and MarkFailed/reconcile when RegisterFile never completed).

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

from typing import TypedDict

from etl.core.identity import file_id_for, partner_from_key


class FileAttrs(TypedDict):
    """A file's identity: the attributes every file item starts with."""

    file_id: str
    bucket: str
    key: str  # the source's current location (incoming/, then processed/ or failed/)
    original_key: str
    version_id: str | None
    size: int
    etag: str | None
    partner: str
    compression: str  # "gzip" | "none"


class FileRef(FileAttrs):
    """``$.file`` (RegisterFile's result)."""

    duplicate: bool
    force: bool
    rollback: bool  # TBL5: this (older) version may replace the live version's rows


class HeaderInfo(TypedDict):
    """``$.header`` (ValidateHeader's result)."""

    schema_id: str
    schema_version: str
    header_bytes: int
    columns: list[str]


class ChunkEntry(TypedDict):
    """One entry of ``$.plan.chunks``: the Map's item and the chunk item's plan."""

    chunk_id: str
    index: int
    key: str
    start: int
    end: int  # exclusive
    first_line: int


class _PlanBase(TypedDict):
    chunk_count: int
    chunks: list[ChunkEntry]


class Plan(_PlanBase, total=False):
    """``$.plan`` (PlanChunks' result)."""

    chunk_size_bytes: int
    chunk_size_grown_from: int  # only when the state-size bound grew the chunk size (OPS6)
    content_digest: str
    duplicate_content: bool
    duplicate_of: str


class ChunkCounts(TypedDict):
    """ProcessChunk's result (the Map discards it; Finalize reads the chunk items)."""

    chunk_id: str
    rows_in: int
    rows_valid: int
    rows_rejected: int


class _ResultBase(TypedDict):
    status: str  # SUCCEEDED | DUPLICATE_CONTENT
    file_id: str
    partner: str
    rows_total: int
    rows_valid: int
    rows_rejected: int
    processed_key: str
    message_group_id: str
    dedup_id: str


class FileResult(_ResultBase, total=False):
    """``$.result`` (Finalize's result), the message NotifyResult sends. SUCCEEDED carries the
    publication keys; DUPLICATE_CONTENT ``duplicate_of`` and ``content_digest``."""

    chunks: int
    manifest_key: str
    output_prefix: str
    rejected_prefix: str
    snapshot_id: int | None
    published_rows: int
    table: str
    duplicate_of: str
    content_digest: str
    # DR2/DR3, on Finalize's output only (not in the stored ``result``): whether NotifyResult
    # sends it now, and the region's role when Finalize decided.
    announce: bool
    region_role: str


class AlertAttributes(TypedDict):
    file_id: str | None
    partner: str | None
    status: str
    error_type: str


class Alert(TypedDict):
    """What AlertFailure publishes (etl/core/alerts.py shapes it)."""

    subject: str
    message: str
    attributes: AlertAttributes


class FailureResult(TypedDict):
    """``$.failure`` (MarkFailed's result)."""

    file_id: str | None
    status: str
    reason: str
    failed_key: str | None
    failed_step: str
    file_status: str | None
    subject: str
    message: str
    attributes: AlertAttributes
    alert: bool  # DR2: false in a standby region (ShouldAlert skips AlertFailure)
    region_role: str


class ValidateHeaderEvent(TypedDict):
    file: FileRef


class PlanChunksEvent(TypedDict):
    file: FileRef
    header: HeaderInfo


class ProcessChunkEvent(TypedDict):
    """The Map's ItemSelector."""

    file: FileRef
    header: HeaderInfo
    chunk: ChunkEntry


class _FinalizeBase(TypedDict):
    file: FileRef
    header: HeaderInfo
    plan: Plan


class FinalizeEvent(_FinalizeBase, total=False):
    execution_arn: str


class FileItem(TypedDict, total=False):
    """The status table's file item (``chunk_id = "FILE"``), as StatusRepository returns it:
    numbers are int/float, never Decimal. docs/contracts.md "Status table" explains each."""

    file_id: str
    chunk_id: str
    status: str
    bucket: str
    key: str
    original_key: str
    version_id: str | None
    size: int
    etag: str | None
    partner: str
    compression: str
    content_digest: str
    duplicate_of: str | None
    schema_id: str
    schema_version: str
    execution_arn: str | None
    attempts: int
    created_at: str
    updated_at: str
    finished_at: str | None
    chunk_count: int
    rows_total: int
    rows_valid: int
    rows_rejected: int
    manifest_key: str
    processed_key: str
    failed_key: str | None
    error: str | None
    error_type: str | None
    snapshot_id: int | None
    published_rows: int
    rejects_snapshot_id: int | None
    published_rejects: int
    open_state: str
    open_since: str
    result: FileResult  # the result message, for re-sends (OPS4)
    notified: bool
    notified_at: str
    notify_dedup_id: str
    notify_attempts: int
    notify_error: str | None


class ChunkItem(TypedDict, total=False):
    """A chunk item (``chunk_id = "CHUNK#00001"``)."""

    file_id: str
    chunk_id: str
    status: str
    index: int
    key: str
    start: int
    end: int
    first_line: int
    attempts: int
    rows_in: int
    rows_valid: int
    rows_rejected: int
    output_key: str | None
    rejects_key: str | None
    output_sha256: str
    output_bytes: int
    rejects_sha256: str | None
    rejects_bytes: int | None
    bytes_in: int
    data_keys: list[str]
    rejects_data_key: str | None
    ids_key: str
    duplicates_rejected: int
    error: str | None
    started_at: str
    finished_at: str
    updated_at: str


class ManifestObject(TypedDict):
    key: str
    sha256: str | None
    bytes: int | None


class ManifestChunk(TypedDict):
    chunk_id: str
    index: int | None
    start: int | None
    end: int | None
    first_line: int | None
    rows_in: int
    rows_valid: int
    rows_rejected: int
    output: ManifestObject | None
    rejects: ManifestObject | None


class ManifestSource(TypedDict):
    bucket: str | None
    key: str | None
    version_id: str | None
    etag: str | None
    size: int | None
    compression: str
    processed_key: str | None


class ManifestSchema(TypedDict):
    id: str
    version: str
    dataset: str
    reject_threshold: float
    source_columns: list[str]
    target_columns: list[str]


class ManifestCounts(TypedDict):
    chunks: int
    rows_total: int
    rows_valid: int
    rows_rejected: int
    rejected_share: float


class Manifest(TypedDict):
    """``manifests/<partner>/<file_id>.json`` (etl/core/manifest.py builds it)."""

    manifest_version: int
    file_id: str | None
    partner: str | None
    created_at: str
    execution_arn: str | None
    source: ManifestSource
    schema: ManifestSchema
    counts: ManifestCounts
    chunks: list[ManifestChunk]


def compression_of(key: str) -> str:
    """``gzip`` for a ``.gz`` key (any case), else ``none``."""
    return "gzip" if key.lower().endswith(".gz") else "none"


def new_file(bucket: str, key: str, version_id: str | None, etag: str | None, size: int) -> FileAttrs:
    """The identity attributes of the file at ``s3://bucket/key`` (that version): the one
    builder of a new file item, used by RegisterFile and by the failure handling that adopts a
    file RegisterFile never registered."""
    return {
        "file_id": file_id_for(key, version_id, etag),
        "bucket": bucket,
        "key": key,
        "original_key": key,
        "version_id": version_id,
        "size": int(size),
        "etag": etag,
        "partner": partner_from_key(key),
        "compression": compression_of(key),
    }


def file_ref(
    item: FileAttrs | FileItem, duplicate: bool, force: bool = False, rollback: bool = False
) -> FileRef:
    """``$.file`` from a file item (or new-file attributes): only the documented keys."""
    key = str(item["key"])
    return {
        "file_id": str(item["file_id"]),
        "bucket": str(item["bucket"]),
        "key": key,
        "original_key": str(item.get("original_key") or key),
        "version_id": item.get("version_id"),
        "size": int(item.get("size") or 0),
        "etag": item.get("etag"),
        "partner": str(item["partner"]),
        "compression": item.get("compression") or compression_of(key),
        "duplicate": duplicate,
        "force": force,
        "rollback": rollback,
    }
