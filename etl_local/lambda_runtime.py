"""Run the real Lambda handlers in-process inside the moto server.

moto cannot run Lambda code without Docker. The smallest patch point is
``moto.awslambda.models.LambdaFunction._invoke_lambda(self, event) -> (result, errored, logs)``:
``LambdaFunction.invoke`` turns ``errored`` into the ``x-amz-function-error`` header, and the
Step Functions parser reads the payload's ``errorType`` as the state's error name, so a handler
raising ``TransientError`` is routed by the real ``Retry``/``Catch`` exactly as on AWS.

The patch lives in the process that serves moto (Step Functions invokes Lambda inside it).
``check_patch_target()`` fails loudly if moto moves or reshapes the patched method; the e2e
suite calls it, and ``install()`` refuses to patch anything else.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from etl import contracts
from etl_local import faults, iam

PATCH_MODULE = "moto.awslambda.models"
PATCH_CLASS = "LambdaFunction"
PATCH_METHOD = "_invoke_lambda"
# The exact signature we replace; moto 5.2.x. A change here must be looked at by a human.
EXPECTED_SIGNATURE = "(self, event: 'str | None' = None) -> 'tuple[str, bool, str]'"

# Process-wide settings every local function gets on top of its own configuration (contracts.md).
LOCAL_ENV = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "false"}


class PatchTargetChanged(RuntimeError):
    """moto's Lambda invocation point is not what this harness was written against."""


def _target() -> tuple[type, Callable[..., Any]]:
    module = importlib.import_module(PATCH_MODULE)
    cls = getattr(module, PATCH_CLASS, None)
    if cls is None:
        raise PatchTargetChanged(f"{PATCH_MODULE}.{PATCH_CLASS} no longer exists")
    method = cls.__dict__.get(PATCH_METHOD)
    if method is None:
        raise PatchTargetChanged(f"{PATCH_MODULE}.{PATCH_CLASS}.{PATCH_METHOD} no longer exists")
    return cls, method


def check_patch_target() -> None:
    """Raise :class:`PatchTargetChanged` unless moto's method is the one we replace."""
    cls, method = _target()
    if getattr(method, "_etl_local_patch", False):
        method = method._etl_local_original  # type: ignore[attr-defined]
    sig = str(inspect.signature(method))
    if sig != EXPECTED_SIGNATURE:
        raise PatchTargetChanged(
            f"{PATCH_CLASS}.{PATCH_METHOD} signature is {sig}, expected {EXPECTED_SIGNATURE}"
        )
    caller = inspect.getsource(cls.invoke)  # type: ignore[attr-defined]
    if "res, errored, logs = self._invoke_lambda(event=body)" not in caller:
        raise PatchTargetChanged(f"{PATCH_CLASS}.invoke no longer unpacks _invoke_lambda the same way")
    if 'response_headers["x-amz-function-error"]' not in caller:
        raise PatchTargetChanged(f"{PATCH_CLASS}.invoke no longer reports errors via x-amz-function-error")


# ---------------------------------------------------------------------------------------------
# Fault injection (tests) and an invocation log (tests, progress)


@dataclass
class Fault:
    """Make matching invocations fail ``times`` times, before the handler runs.

    ``kind="throttle"``: the Lambda *service* answers 429 TooManyRequestsException (the state
    sees ``Lambda.TooManyRequestsException``). ``kind="raise"``: the function raises
    ``exception()`` (the state sees its class name). ``kind="delay"``: the handler runs
    normally after ``seconds`` (a slow invocation, e.g. to stop an execution mid-chunk).
    """

    function_suffix: str
    when: Callable[[Any], bool] = lambda event: True
    times: int = 1
    kind: str = "raise"
    exception: Callable[[], BaseException] | None = None
    seconds: float = 0.0
    fired: int = 0


@dataclass
class Invocation:
    function_name: str
    handler: str
    event: Any
    started: float
    finished: float = 0.0
    error_type: str | None = None
    injected: bool = False


@dataclass
class RuntimeState:
    faults: list[Fault] = field(default_factory=list)
    invocations: list[Invocation] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    extra_env: dict[str, str] = field(default_factory=dict)

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.invocations.clear()

    def add_fault(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def calls(self, function_suffix: str) -> list[Invocation]:
        with self.lock:
            return [i for i in self.invocations if i.function_name.endswith(function_suffix)]


STATE = RuntimeState()


# ---------------------------------------------------------------------------------------------
# Environment: os.environ is process-global and Map iterations run on threads. Functions of one
# stack share their settings, so invocations hold a shared lease on their variables; an
# invocation whose values differ from a running one's waits until that one finishes.
# Variables are never removed while the emulator runs: removing a key while another thread
# iterates os.environ (botocore does, creating a client; moto's Step Functions executor creates
# one per Lambda call) raises KeyError there. The process's own values come back when the
# emulator is reset or stopped (:func:`restore_environment`).


class _EnvLeases:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: dict[str, tuple[str, int]] = {}
        self._saved: dict[str, str | None] = {}
        self._parked: set[str] = set()  # set by a finished invocation, restored when all are

    def acquire(self, env: dict[str, str]) -> None:
        with self._cond:
            while any(k in self._held and self._held[k][0] != v for k, v in env.items()):
                self._cond.wait(timeout=1.0)
            for k, v in env.items():
                value, count = self._held.get(k, (v, 0))
                if count == 0 and k not in self._parked:
                    self._saved[k] = os.environ.get(k)
                self._parked.discard(k)
                self._held[k] = (value, count + 1)
                if os.environ.get(k) != v:
                    os.environ[k] = v

    def release(self, env: dict[str, str]) -> None:
        with self._cond:
            for k in env:
                value, count = self._held[k]
                if count <= 1:
                    del self._held[k]
                    self._parked.add(k)
                else:
                    self._held[k] = (value, count - 1)
            self._cond.notify_all()

    def restore(self) -> None:
        """Put the process's own values back for every variable no invocation holds (tests
        share this process)."""
        with self._cond:
            for k in self._parked:
                previous = self._saved.pop(k, None)
                if previous is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = previous
            self._parked.clear()


_ENV = _EnvLeases()


def restore_environment() -> None:
    """The process's own environment again (the emulator calls it on reset and stop)."""
    _ENV.restore()


class LambdaContext:
    """The attributes of the Lambda context object the handlers (and Powertools) read."""

    def __init__(self, fn: Any) -> None:
        self.function_name = fn.function_name
        self.function_version = getattr(fn, "version", "$LATEST")
        self.invoked_function_arn = fn.function_arn
        self.memory_limit_in_mb = int(fn.memory_size or 128)
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{fn.function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + float(fn.timeout or 3)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _resolve_handler(handler: str) -> Callable[[Any, Any], Any]:
    module_name, _, func_name = handler.rpartition(".")
    if not module_name:
        raise ImportError(f"bad handler string {handler!r}")
    module = importlib.import_module(module_name)
    return getattr(module, func_name)


def _error_payload(exc: BaseException) -> str:
    return json.dumps(
        {
            # A simulated timeout (etl_local.faults) reports what Lambda reports for one.
            "errorType": getattr(exc, "lambda_error_type", type(exc).__name__),
            "errorMessage": str(exc),
            "stackTrace": traceback.format_exception(type(exc), exc, exc.__traceback__)[-5:],
        }
    )


_STEPS = {handler: step for step, (_, handler) in contracts.ALL_FUNCTIONS.items()}


def _step_of(handler: str) -> str:
    return _STEPS.get(handler, handler)


def _file_id_of(event: Any) -> str | None:
    """The file an invocation works on (``$.file.file_id`` in the workflow's state), if any."""
    if isinstance(event, dict):
        file = event.get("file")
        if isinstance(file, dict) and file.get("file_id"):
            return str(file["file_id"])
    return None


def _throttled(fn: Any) -> BaseException:
    from moto.awslambda.exceptions import LambdaClientError

    err = LambdaClientError("TooManyRequestsException", f"Rate exceeded (injected) for {fn.function_name}")
    err.code = 429
    return err


def _invoke_in_process(self: Any, event: Any = None) -> tuple[str, bool, str]:
    """Replacement for ``LambdaFunction._invoke_lambda``: run ``self.handler`` here."""
    if event is None:
        event = {}
    if isinstance(event, (str, bytes)):
        with contextlib.suppress(ValueError):
            event = json.loads(event)
    record = Invocation(self.function_name, self.handler, event, time.time())
    fault = None
    with STATE.lock:
        STATE.invocations.append(record)
        for candidate in STATE.faults:
            if (
                candidate.fired < candidate.times
                and self.function_name.endswith(candidate.function_suffix)
                and candidate.when(event)
            ):
                candidate.fired += 1
                fault = candidate
                break
    if fault is not None and fault.kind == "delay":
        time.sleep(fault.seconds)
        fault = None
    if fault is not None:
        record.injected = True
        record.finished = time.time()
        if fault.kind == "throttle":
            record.error_type = "TooManyRequestsException"
            raise _throttled(self)
        exc = fault.exception() if fault.exception else RuntimeError("injected failure")
        record.error_type = type(exc).__name__
        return _error_payload(exc), True, ""

    # Lambda sets AWS_REGION: the local emulator runs both regions' functions (DR4) in one
    # process, and the handlers' clients follow it (etl/aws/clients.py).
    region = {"AWS_REGION": str(self.region), "AWS_DEFAULT_REGION": str(self.region)}
    env = {
        **LOCAL_ENV,
        **STATE.extra_env,
        **region,
        **{k: str(v) for k, v in (self.environment_vars or {}).items()},
    }
    _ENV.acquire(env)
    try:
        handler = _resolve_handler(self.handler)
        # Every AWS call the handler makes (on this thread and on the pool threads it submits
        # to) is authorized against this function's role (etl_local/iam.py); fault points
        # know which step and file they are in (etl_local/faults.py).
        with (
            iam.acting_as(iam.Principal(str(self.role), str(self.function_name))),
            faults.invocation(_step_of(self.handler), _file_id_of(event)),
        ):
            result = handler(event, LambdaContext(self))
        return json.dumps(result), False, ""
    except Exception as exc:  # the function's error, reported as Lambda reports it
        record.error_type = getattr(exc, "lambda_error_type", type(exc).__name__)
        return _error_payload(exc), True, ""
    finally:
        _ENV.release(env)
        record.finished = time.time()


_invoke_in_process._etl_local_patch = True  # type: ignore[attr-defined]


def install() -> None:
    """Patch moto (idempotent). Raises :class:`PatchTargetChanged` if moto changed."""
    check_patch_target()
    cls, method = _target()
    if getattr(method, "_etl_local_patch", False):
        return
    _invoke_in_process._etl_local_original = method  # type: ignore[attr-defined]
    setattr(cls, PATCH_METHOD, _invoke_in_process)


def uninstall() -> None:
    cls, method = _target()
    original = getattr(method, "_etl_local_original", None)
    if getattr(method, "_etl_local_patch", False) and original is not None:
        setattr(cls, PATCH_METHOD, original)


def installed() -> bool:
    return bool(getattr(_target()[1], "_etl_local_patch", False))
