"""Make the waits of the state machine's ``Retry`` injectable.

moto's Step Functions interpreter waits between attempts with ``time.sleep(interval)`` in
``moto.stepfunctions.parser.asl.component.common.retry.retrier_decl`` (after BackoffRate,
MaxDelaySeconds and JitterStrategy were applied). We replace the ``time`` that module sees with
a clock whose ``sleep`` records the interval and calls an injectable function (default: really
sleep, as on AWS). Tests pass ``sleep=lambda s: None`` and assert on the recorded intervals.

With ``JitterStrategy: FULL`` the interval is ``uniform(0, backoff)``; ``jitter="max"`` makes the
jitter module return the upper bound so intervals are deterministic (2, 4, 8 ...).
"""

from __future__ import annotations

import importlib
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

RETRIER_MODULE = "moto.stepfunctions.parser.asl.component.common.retry.retrier_decl"
JITTER_MODULE = "moto.stepfunctions.parser.asl.component.common.retry.jitter_strategy_decl"


class RetryClock:
    """Stands in for the ``time`` module inside moto's retrier."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._sleep = sleep
        self._lock = threading.Lock()
        self.intervals: list[float] = []

    def set_sleep(self, sleep: Callable[[float], None]) -> None:
        self._sleep = sleep

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.intervals.append(float(seconds))
        self._sleep(seconds)

    def clear(self) -> None:
        with self._lock:
            self.intervals.clear()

    def __getattr__(self, name: str):  # anything else the module might use from `time`
        return getattr(time, name)


class _MaxJitter:
    """``random`` for the jitter module: uniform(a, b) -> b (deterministic upper bound)."""

    @staticmethod
    def uniform(a: float, b: float) -> float:
        return b

    def __getattr__(self, name: str):
        return getattr(random, name)


CLOCK = RetryClock()


def install(sleep: Callable[[float], None] | None = None, jitter: str = "random") -> RetryClock:
    retrier = importlib.import_module(RETRIER_MODULE)
    if not hasattr(retrier, "time") or retrier.time not in (time, CLOCK):
        raise RuntimeError(f"{RETRIER_MODULE} no longer sleeps through `time`; update etl_local.retry_clock")
    if "time.sleep(interval_seconds)" not in Path(str(retrier.__file__)).read_text(encoding="utf-8"):
        raise RuntimeError(f"{RETRIER_MODULE} no longer calls time.sleep(interval_seconds)")
    retrier.time = CLOCK  # type: ignore[attr-defined]
    if sleep is not None:
        CLOCK.set_sleep(sleep)
    jitter_mod = importlib.import_module(JITTER_MODULE)
    jitter_mod.random = _MaxJitter() if jitter == "max" else random  # type: ignore[attr-defined]
    return CLOCK
