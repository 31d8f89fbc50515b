"""The chunk path's worker threads (SPEC PERF2): one small pool shared by the record scan,
the parser and the validation, sized by the CPUs this process may run on.

pyarrow's CSV reader and compute kernels and numpy's byte comparisons release the GIL, so
threads give real parallelism on a Lambda's 2 vCPUs (3 GB). ``cpus()`` honours the process's
CPU affinity (``taskset``; a 1-vCPU function or a pinned benchmark then takes the serial path).

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

MAX_WORKERS = 4
_POOL: ThreadPoolExecutor | None = None
_LOCK = threading.Lock()


def cpus() -> int:
    """CPUs this process may use (affinity-aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def parallel() -> bool:
    """True when more than one CPU is available to this process."""
    return cpus() > 1


def pool() -> ThreadPoolExecutor:
    """The shared pool (created on first use, never shut down: a Lambda container reuses it)."""
    global _POOL
    with _LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, cpus()), thread_name_prefix="etl-chunk")
        return _POOL
