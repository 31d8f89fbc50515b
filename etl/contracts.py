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
# The announcement ledger (SPEC DR3): one object per file announced downstream, replicated both
# ways so a newly active region never re-announces what the other one announced.
ANNOUNCED_PREFIX = "announced/"
# The Iceberg warehouse (SPEC DATA1): every table lives under s3://<bucket>/tables/<table>/.
TABLES_PREFIX = "tables/"
# Athena query results (the workgroup's output location; expired by a lifecycle rule).
ATHENA_RESULTS_PREFIX = "athena-results/"

# The published dataset (SPEC DATA1): Iceberg tables in one Glue database per environment. The
# load audit trail is a table of its own (SPEC TBL6: one row per committed file), so expiring
# snapshots of the other two erases nothing.
TRANSACTIONS_TABLE = "transactions"
REJECTS_TABLE = "transaction_rejects"
LOADS_TABLE = "transaction_loads"
DATASET_TABLES = (TRANSACTIONS_TABLE, REJECTS_TABLE, LOADS_TABLE)


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
# SEC2: ValidateHeader's comma-separated list of partners declared (context ``partners``) to use
# the default schema; any other partner without a schema file is refused (UnknownPartner).
DEFAULT_SCHEMA_PARTNERS_ENV = "DEFAULT_SCHEMA_PARTNERS"
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
# Emitted by every reconcile sweep (0 included): files non-terminal past the stale bound (OPS1).
METRIC_STALE_FILES = "StaleFiles"
# Emitted by the sweep: SUCCEEDED files whose result message is still not sent (OPS4).
METRIC_UNNOTIFIED_FILES = "UnnotifiedFiles"
# Emitted by the sweep: objects under incoming/ older than the stale bound with no status item
# (their event never arrived; the sweep re-delivers it, SEC4).
METRIC_UNSEEN_FILES = "UnseenFiles"
CUSTOM_METRICS = (
    METRIC_ROWS_PROCESSED,
    METRIC_ROWS_REJECTED,
    METRIC_BYTES_PROCESSED,
    METRIC_CHUNK_DURATION_MS,
    METRIC_FILES_SUCCEEDED,
    METRIC_FILES_FAILED,
    METRIC_STALE_FILES,
    METRIC_UNNOTIFIED_FILES,
    METRIC_UNSEEN_FILES,
)

# Status-table indexes (OPS1, OPS3). "open-files" is sparse: only file items that are in flight
# (open_state IN_FLIGHT, set at registration, removed at FAILED) or SUCCEEDED but not yet
# notified (NOT_NOTIFIED, removed once the result message is sent) carry open_state, so the
# sweep reads the files that need attention, never the whole table. "partner-created" holds
# file items only (chunk items have no created_at): the latest registration per partner.
OPEN_INDEX = "open-files"
OPEN_STATE = "open_state"
OPEN_SINCE = "open_since"
OPEN_IN_FLIGHT = "IN_FLIGHT"
OPEN_NOT_NOTIFIED = "NOT_NOTIFIED"
PARTNER_INDEX = "partner-created"

# Timeouts (OPS1; arithmetic in docs/infrastructure.md "Timeouts"). A Lambda Task may run one
# function timeout plus invoke overhead; the execution must outlast the slowest legitimate run.
FUNCTION_TIMEOUT_SECONDS = 15 * 60
TASK_TIMEOUT_SECONDS = FUNCTION_TIMEOUT_SECONDS + 60
TASK_MAX_RETRIES = 3
# Worst case of one Task: 4 attempts each timing out + the three backoffs (2 + 4 + 8 s).
TASK_WORST_CASE_SECONDS = (1 + TASK_MAX_RETRIES) * TASK_TIMEOUT_SECONDS + (2 + 4 + 8)
EXECUTION_TIMEOUT_SECONDS = 8 * 60 * 60
# The sweep: a file whose execution is known and not RUNNING is stale after this long (two
# sweep periods: the status-change event had every chance to reconcile it first) ...
SWEEP_PERIOD_MINUTES = 15
STALE_AFTER_SECONDS = 2 * SWEEP_PERIOD_MINUTES * 60
# ... and one whose execution cannot be found only once no execution could still be running.
STALE_UNKNOWN_EXECUTION_SECONDS = EXECUTION_TIMEOUT_SECONDS + STALE_AFTER_SECONDS

# Step names (state names in the ASL) and the handler each runs.
HANDLERS = {
    "RegisterFile": ("register", "etl.handlers.register.handler"),
    "ValidateHeader": ("validate-header", "etl.handlers.validate_header.handler"),
    "PlanChunks": ("plan-chunks", "etl.handlers.plan_chunks.handler"),
    "ProcessChunk": ("process-chunk", "etl.handlers.process_chunk.handler"),
    "Finalize": ("finalize", "etl.handlers.finalize.handler"),
    "MarkFailed": ("mark-failed", "etl.handlers.mark_failed.handler"),
}
# Functions outside the state machine: reconciliation, sweep, freshness, outbox (OPS1/3/4).
RECONCILE_STEP = "Reconcile"
RECONCILE_FUNCTION = ("reconcile", "etl.handlers.reconcile.handler")

# Functions that are not states of the workflow, keyed like HANDLERS (name -> short name,
# handler). StartFiles is admission control (SPEC OPS2): it starts queued files' executions
# while fewer than maxFilesInFlight are running; Reconcile is OPS1/OPS3/OPS4 (its construct is
# infra/reconciliation.py).
# MaintainTables is SPEC TBL6 (its construct is infra/maintenance.py): the scheduled expiry of
# snapshots and removal of orphan files of the dataset tables.
MAINTAIN_STEP = "MaintainTables"
MAINTAIN_FUNCTION = ("maintain-tables", "etl.handlers.maintain_tables.handler")
SERVICE_HANDLERS = {
    "StartFiles": ("start-files", "etl.handlers.start_files.handler"),
    RECONCILE_STEP: RECONCILE_FUNCTION,
    MAINTAIN_STEP: MAINTAIN_FUNCTION,
}
ALL_FUNCTIONS = {**HANDLERS, **SERVICE_HANDLERS}
# How long a buffered S3 event stays hidden after StartFiles received it (the buffer queue's
# visibility timeout): a StartFiles that crashed before starting it sees it again after this.
BUFFER_VISIBILITY_SECONDS = 300


def chunk_id(index: int) -> str:
    """``CHUNK#00001`` style sort key; zero-padded so the table sorts chunks in order."""
    return f"{CHUNK_PREFIX}{index:05d}"
