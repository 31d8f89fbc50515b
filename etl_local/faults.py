"""Named fault points in local mode (SPEC TBL2; docs/local-mode.md "Fault points").

``ETL_LOCAL_FAULTS=POINT,POINT`` (or ``etl local run/up --fault POINT``) arms faults; each armed
point fires once per file. Two kinds:

- **Handler points** (:data:`etl.faults.POINTS`): the function dies there as on a Lambda
  timeout. Step Functions sees ``Sandbox.Timedout``, the error AWS reports for a function that
  ran out of time, so the workflow's own Retry/Catch decide what happens next.
- **Service points**, botocore hooks on the handlers' clients:
  ``glue.update_table.response_lost``: Glue ``UpdateTable`` lands, then its response is lost
  (the caller sees a read timeout; botocore would replay it); ``s3.slow_down``: the next
  :data:`SLOW_DOWN_CALLS` S3 calls of one function answer ``503 SlowDown``
  (``s3.slow_down@Finalize`` picks the function; default: the first to call S3 for the file).

Which file a call belongs to comes from the invocation (:func:`invocation`, set by
etl_local/lambda_runtime.py for the thread running the handler).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError
from botocore.httpsession import URLLib3Session

from etl import faults as points
from etl.aws import clients

ENV = "ETL_LOCAL_FAULTS"
GLUE_RESPONSE_LOST = "glue.update_table.response_lost"
S3_SLOW_DOWN = "s3.slow_down"
SERVICE_POINTS = {
    GLUE_RESPONSE_LOST: "Glue UpdateTable lands; its response is lost once (a read timeout)",
    S3_SLOW_DOWN: "the next S3 calls of one function answer 503 SlowDown",
}
ALL_POINTS = {**points.POINTS, **SERVICE_POINTS}
# Fewer than botocore's attempts (AWS_MAX_ATTEMPTS, 5): the client's own backoff absorbs them,
# as it does on AWS; the point proves every S3 call goes through a retrying client.
SLOW_DOWN_CALLS = 3


class SimulatedTimeout(Exception):
    """The function dies as on a timeout; lambda_runtime reports ``lambda_error_type``."""

    lambda_error_type = "Sandbox.Timedout"


@dataclass(frozen=True)
class Invocation:
    step: str
    file_id: str | None


_current: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar(
    "etl_local_invocation", default=None
)


@contextlib.contextmanager
def invocation(step: str, file_id: str | None) -> Iterator[None]:
    """Attribute the calls made in this context to ``step`` working on ``file_id``."""
    token = _current.set(Invocation(step, file_id))
    try:
        yield
    finally:
        _current.reset(token)


def parse(spec: str | list[str] | None) -> list[str]:
    """``"a,b"`` or ``["a", "b,c"]`` -> the armed points; unknown names raise ValueError."""
    items = spec if isinstance(spec, list) else [spec or ""]
    out: list[str] = []
    for item in items:
        for raw in str(item).split(","):
            name = raw.strip()
            if not name:
                continue
            base = name.split("@", 1)[0]
            if base not in ALL_POINTS:
                known = ", ".join(sorted(ALL_POINTS))
                raise ValueError(f"unknown fault point {name!r}; known: {known}")
            if "@" in name and base != S3_SLOW_DOWN:
                raise ValueError(f"{base} takes no @STEP qualifier")
            out.append(name)
    return out


@dataclass
class FaultState:
    armed: list[str] = field(default_factory=list)
    fired: list[tuple[str, str, str]] = field(default_factory=list)  # (point, file_id, step)
    # s3.slow_down: (file_id, step) -> [step, calls left]
    slow: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _take(self, point: str, file_id: str, step: str) -> bool:
        """True (once per file) when ``point`` is armed for this call."""
        with self.lock:
            for name in self.armed:
                base, _, only = name.partition("@")
                if base != point or (only and only != step):
                    continue
                if any(p == name and f == file_id for p, f, _ in self.fired):
                    return False
                self.fired.append((name, file_id, step))
                return True
        return False

    def fired_count(self) -> int:
        with self.lock:
            return len(self.fired)


STATE = FaultState()


def arm(names: list[str]) -> None:
    """Arm ``names`` (replacing what was armed) and forget what fired."""
    with STATE.lock:
        STATE.armed = list(names)
        STATE.fired.clear()
        STATE.slow.clear()


def arm_from_env() -> list[str]:
    names = parse(os.environ.get(ENV, ""))
    if names:
        arm(names)
    return names


def _handler_point(name: str, file_id: str) -> None:
    current = _current.get()
    if STATE._take(name, file_id, current.step if current else "?"):
        raise SimulatedTimeout(f"Task timed out (injected fault {name} for file {file_id})")


def _lose_update_table_response(request: Any, **_: Any) -> None:
    current = _current.get()
    if current is None or current.file_id is None:
        return
    if not STATE._take(GLUE_RESPONSE_LOST, current.file_id, current.step):
        return
    # The request reaches Glue and lands; the answer never comes back.
    URLLib3Session().send(request)
    raise ReadTimeoutError(endpoint_url=request.url)


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate. (injected)</Message></Error>"
)


def _slow_down(request: Any, **_: Any) -> AWSResponse | None:
    current = _current.get()
    if current is None or current.file_id is None:
        return None
    key = (current.file_id, current.step)
    with STATE.lock:
        entry = STATE.slow.get(key)
    if entry is None:
        if not STATE._take(S3_SLOW_DOWN, current.file_id, current.step):
            return None
        entry = [current.step, SLOW_DOWN_CALLS]
        with STATE.lock:
            STATE.slow[key] = entry
    with STATE.lock:
        if entry[0] != current.step or entry[1] <= 0:
            return None
        entry[1] -= 1
    return AWSResponse(request.url, 503, {"Content-Type": "application/xml"}, _Body(_SLOW_DOWN))


def _client_hook(service: str, client: Any) -> None:
    if service == "glue":
        client.meta.events.register("before-send.glue.UpdateTable", _lose_update_table_response)
    elif service == "s3":
        client.meta.events.register("before-send.s3.*", _slow_down)


_installed = {"done": False}


def install() -> None:
    """Hook the handler points and the handlers' clients (idempotent). Nothing fires until
    points are armed (:func:`arm`)."""
    if _installed["done"]:
        return
    points.install(_handler_point)
    clients.add_client_hook(_client_hook)
    _installed["done"] = True
