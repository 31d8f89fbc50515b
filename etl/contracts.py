"""Names shared by the state machine (infra/workflow.py), the handlers and the local harness.

See docs/contracts.md for the event shapes. Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

FILE_ITEM = "FILE"
CHUNK_PREFIX = "CHUNK#"

# S3 prefixes (see docs/contracts.md "S3 layout")
INCOMING_PREFIX = "incoming/"
PROCESSED_PREFIX = "processed/"
FAILED_PREFIX = "failed/"
OUTPUT_PREFIX = "output/"
REJECTED_PREFIX = "rejected/"
MANIFEST_PREFIX = "manifests/"
SCRATCH_PREFIX = "scratch/"
# The Iceberg warehouse (SPEC DATA1): every table lives under s3://<bucket>/tables/<table>/.
TABLES_PREFIX = "tables/"
# Athena query results (the workgroup's output location; expired by a lifecycle rule).
ATHENA_RESULTS_PREFIX = "athena-results/"

# The published dataset (SPEC DATA1): two Iceberg tables in one Glue database per environment.
TRANSACTIONS_TABLE = "transactions"
REJECTS_TABLE = "transaction_rejects"
DATASET_TABLES = (TRANSACTIONS_TABLE, REJECTS_TABLE)


def glue_database(environment_suffix: str) -> str:
    """``transaction_etl_<suffix>``: Glue/Athena names allow lowercase letters, digits and
    underscores only, so the suffix's hyphens become underscores."""
    return "transaction_etl_" + environment_suffix.replace("-", "_")


DEFAULT_PARTNER = "default"
DEFAULT_CHUNK_SIZE_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024

# Process settings every function gets (and the benchmarks reproduce). Arrow's system allocator
# returns freed buffers to the OS promptly: measured on a 50 MiB chunk, peak RSS 7.3x the chunk
# against 8.0-8.2x with jemalloc, at the same speed (docs/benchmarks.md, PERF2).
RUNTIME_ENV = {"ARROW_DEFAULT_MEMORY_POOL": "system"}

# Observability names: the handlers emit them (etl/observability.py) and the dashboard and
# alarms read them (infra/monitoring.py, infra/functions.py's environment). One definition, so a
# rename cannot leave the dashboard silently empty.
SERVICE_NAME = "transaction-etl"
METRICS_NAMESPACE = "TransactionEtl"
METRIC_ROWS_PROCESSED = "RowsProcessed"
METRIC_ROWS_REJECTED = "RowsRejected"
METRIC_BYTES_PROCESSED = "BytesProcessed"
METRIC_CHUNK_DURATION_MS = "ChunkDurationMs"
METRIC_FILES_SUCCEEDED = "FilesSucceeded"
METRIC_FILES_FAILED = "FilesFailed"
CUSTOM_METRICS = (
    METRIC_ROWS_PROCESSED,
    METRIC_ROWS_REJECTED,
    METRIC_BYTES_PROCESSED,
    METRIC_CHUNK_DURATION_MS,
    METRIC_FILES_SUCCEEDED,
    METRIC_FILES_FAILED,
)

# Step names (state names in the ASL) and the handler each runs.
HANDLERS = {
    "RegisterFile": ("register", "etl.handlers.register.handler"),
    "ValidateHeader": ("validate-header", "etl.handlers.validate_header.handler"),
    "PlanChunks": ("plan-chunks", "etl.handlers.plan_chunks.handler"),
    "ProcessChunk": ("process-chunk", "etl.handlers.process_chunk.handler"),
    "Finalize": ("finalize", "etl.handlers.finalize.handler"),
    "MarkFailed": ("mark-failed", "etl.handlers.mark_failed.handler"),
}

# Functions that are not states of the workflow, keyed like HANDLERS (name -> short name,
# handler). StartFiles is admission control (SPEC OPS2): it starts queued files' executions
# while fewer than maxFilesInFlight are running.
SERVICE_HANDLERS = {
    "StartFiles": ("start-files", "etl.handlers.start_files.handler"),
}
ALL_FUNCTIONS = {**HANDLERS, **SERVICE_HANDLERS}
# How long a buffered S3 event stays hidden after StartFiles received it (the buffer queue's
# visibility timeout): a StartFiles that crashed before starting it sees it again after this.
BUFFER_VISIBILITY_SECONDS = 300


def chunk_id(index: int) -> str:
    """``CHUNK#00001`` style sort key; zero-padded so the table sorts chunks in order."""
    return f"{CHUNK_PREFIX}{index:05d}"
