"""Logs, metrics and traces for the handlers (RUN7), set up once per process.

- ``logger``: Powertools JSON logger; service from ``POWERTOOLS_SERVICE_NAME``.
- ``metrics``: Powertools EMF metrics, namespace ``POWERTOOLS_METRICS_NAMESPACE``
  (``TransactionEtl``), dimension ``service``. Handlers call :func:`add_metric`.
- ``tracer``: Powertools X-Ray tracer; a no-op when ``POWERTOOLS_TRACE_DISABLED=true`` or when
  not running on Lambda, so no X-Ray daemon is ever needed locally. It patches botocore only
  (:data:`TRACED_MODULES`): every AWS call of the handlers (boto3, pyiceberg's Glue catalog and
  our S3 FileIO) goes through botocore and gets its X-Ray subsegment. Powertools' default,
  the X-Ray SDK's ``patch_all``, would also import and patch ``requests``, ``sqlite3`` and try
  ``aiobotocore`` etc., which no handler uses: ~20-30 ms of every cold start (SPEC PERF4,
  docs/benchmarks.md).

:func:`lambda_handler` wraps each handler: it binds ``step``/``file_id``/``chunk_id`` and the
Lambda request id to every log line, logs the outcome with the error type, records the cold
start, traces the invocation, and flushes the invocation's metrics even when it fails. It is
safe under the local harness, which runs Map iterations concurrently on threads of one
process: log keys are thread-local (``thread_safe_append_keys``) and each invocation collects
its metrics in its own ``EphemeralMetrics`` instead of Powertools' process-wide metric set.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from typing import Any, Callable, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from etl import contracts
from etl.errors import PermanentError, TransientError

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", contracts.SERVICE_NAME)
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", contracts.METRICS_NAMESPACE)

# Custom metric names (the dashboard in infra/ reads the same constants).
ROWS_PROCESSED = contracts.METRIC_ROWS_PROCESSED
ROWS_REJECTED = contracts.METRIC_ROWS_REJECTED
BYTES_PROCESSED = contracts.METRIC_BYTES_PROCESSED
CHUNK_DURATION_MS = contracts.METRIC_CHUNK_DURATION_MS
FILES_SUCCEEDED = contracts.METRIC_FILES_SUCCEEDED
FILES_FAILED = contracts.METRIC_FILES_FAILED

# What the tracer patches for X-Ray subsegments: the handlers talk to AWS only through botocore.
TRACED_MODULES = ("botocore",)

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE, patch_modules=TRACED_MODULES)

_local = threading.local()
_cold_start_lock = threading.Lock()
_cold_start = True

F = TypeVar("F", bound=Callable[..., Any])


class LocalContext:
    """Stand-in for the Lambda context when a handler is called without one (tests, scripts)."""

    def __init__(self, name: str) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{name}"
        self.memory_limit_in_mb = 3072
        self.aws_request_id = "local"
        self.log_group_name = "local"
        self.log_stream_name = "local"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        """Lambda's 15-minute maximum, so callers that budget time behave as on Lambda."""
        return 15 * 60 * 1000


def _take_cold_start() -> bool:
    global _cold_start
    with _cold_start_lock:
        cold, _cold_start = _cold_start, False
    return cold


def _ids_from_event(event: Any) -> dict[str, Any]:
    """``file_id``/``chunk_id`` wherever the documented event shapes carry them."""
    ids: dict[str, Any] = {}
    if not isinstance(event, dict):
        return ids
    file = event.get("file")
    if isinstance(file, dict) and file.get("file_id"):
        ids["file_id"] = file["file_id"]
    chunk = event.get("chunk")
    if isinstance(chunk, dict) and chunk.get("chunk_id"):
        ids["chunk_id"] = chunk["chunk_id"]
    inner = event.get("event")
    if isinstance(inner, dict) and isinstance(inner.get("reprocess"), dict):
        ids["file_id"] = inner["reprocess"].get("file_id")
    return {k: v for k, v in ids.items() if v}


def _annotate(keys: dict[str, Any]) -> None:
    """X-Ray annotations; only valid inside a subsegment (Lambda's own segment is read-only)."""
    if tracer.disabled:
        return
    for name, value in keys.items():
        try:
            tracer.put_annotation(key=name, value=str(value))
        except Exception:  # tracing must never fail the work
            logger.debug("could not annotate the trace with %s", name)


def bind(**keys: Any) -> None:
    """Add keys (e.g. ``file_id`` once RegisterFile has computed it) to this invocation's logs
    and, when tracing, as X-Ray annotations. Call it from inside a handler."""
    keys = {k: v for k, v in keys.items() if v is not None}
    logger.thread_safe_append_keys(**keys)
    _annotate(keys)


def add_metric(name: str, value: float, unit: MetricUnit | str = MetricUnit.Count) -> None:
    """Record a metric for the current invocation (flushed when the handler returns)."""
    current: Any | None = getattr(_local, "metrics", None)
    (current if current is not None else metrics).add_metric(name=name, unit=unit, value=value)


def lambda_handler(step: str) -> Callable[[F], F]:
    """Decorator for ``handler(event, context)``: logging keys, outcome log, cold start,
    tracing and metrics flushing. Exceptions propagate unchanged (Step Functions routes on the
    class name)."""

    def decorate(fn: F) -> F:
        def annotated(event: Any, context: Any) -> Any:
            # Runs inside the handler subsegment that capture_lambda_handler opens.
            _annotate(_ids_from_event(event))
            return fn(event, context)

        traced = tracer.capture_lambda_handler(annotated, capture_response=False)

        @functools.wraps(fn)
        def wrapper(event: Any, context: Any = None) -> Any:
            ctx = context if hasattr(context, "function_name") else LocalContext(step)
            cold = _take_cold_start()
            invocation_metrics = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
            _local.metrics = invocation_metrics
            logger.thread_safe_clear_keys()
            keys = {
                "step": step,
                "cold_start": cold,
                "function_name": getattr(ctx, "function_name", step),
                "function_request_id": getattr(ctx, "aws_request_id", None),
                **_ids_from_event(event),
            }
            logger.thread_safe_append_keys(**{k: v for k, v in keys.items() if v is not None})
            started = time.monotonic()
            try:
                result = traced(event, ctx)
            except Exception as exc:
                log, how = _failure_log(exc)
                log(
                    "%s %s: %s",
                    step,
                    how,
                    exc,
                    extra={"error_type": type(exc).__name__, "duration_ms": _ms(started)},
                )
                raise
            else:
                logger.info("%s succeeded", step, extra={"duration_ms": _ms(started)})
                return result
            finally:
                _local.metrics = None
                if cold:
                    invocation_metrics.add_cold_start_metric(context=ctx)  # type: ignore[arg-type]
                # Flush only when something was recorded: Powertools warns on an empty set.
                if invocation_metrics.metric_set:
                    invocation_metrics.flush_metrics()
                logger.thread_safe_clear_keys()

        return wrapper  # type: ignore[return-value]

    return decorate


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _failure_log(exc: BaseException) -> tuple[Callable[..., Any], str]:
    """How loudly to log a failure: a transient one is retried by the state machine, a
    permanent one is the input's fault, anything else is a bug (logged with its traceback)."""
    if isinstance(exc, TransientError):
        return logger.warning, "failed transiently (the state machine retries)"
    if isinstance(exc, PermanentError):
        return logger.error, "failed"
    return logger.exception, "failed unexpectedly"
