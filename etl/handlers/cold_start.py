"""A handler module's imports without garbage collection (SPEC PERF4).

A cold chunk function allocates a few hundred thousand long-lived objects while it imports
numpy, pyarrow, boto3 and Powertools; CPython's cyclic collector runs ~150 times meanwhile and
finds almost nothing to free: ~40-50 ms of every cold start (benchmarks/bench_init.py,
docs/benchmarks.md). :func:`imports_without_gc` pauses the collector for the imports and then
*freezes* what they created (``gc.freeze``: moved to the permanent generation, never scanned
again) before enabling it again. Without the freeze the first collection after the imports
would scan all of them, i.e. the same work moved into the first invocation. Garbage cycles the
imports leave stay allocated (measured: peak RSS unchanged).

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def imports_without_gc() -> Iterator[None]:
    """``with imports_without_gc(): import ...``: collector paused, then frozen and restored."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
