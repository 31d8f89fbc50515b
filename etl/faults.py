"""Named fault points (SPEC TBL2): the places where local mode injects a crash.

The commit protocol is proven by killing the functions exactly where a real failure would
hurt (docs/local-mode.md "Fault points"). Each handler names its dangerous moments with
:func:`point`; on AWS nothing is installed and a point costs one global read. Local mode
(``etl_local.faults``) installs an injector that raises at a configured point, once per file.

The service-level points (``glue.update_table.response_lost``, ``s3.slow_down``) are not here:
local mode injects them as botocore hooks on the handlers' clients (``etl.aws.clients``).

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

from typing import Callable

# Every point a handler names, and what dying there exercises (docs/local-mode.md).
POINTS = {
    "finalize.before_commit": "Finalize dies after its checks and manifest, before the commit",
    "finalize.after_commit": "the transactions commit landed; Finalize dies before recording it",
    "process_chunk.after_data_files": "ProcessChunk wrote its data files, dies before the chunk item",
    "mark_failed.crash": "MarkFailed dies before it records anything",
}

Injector = Callable[[str, str], None]
_injector: Injector | None = None


def install(injector: Injector | None) -> None:
    """Set (or with None remove) the process's injector. Local mode only."""
    global _injector
    _injector = injector


def point(name: str, file_id: str) -> None:
    """A named fault point for ``file_id``: the injector may raise here."""
    if name not in POINTS:  # a typo must not make a fault silently never fire
        raise ValueError(f"unknown fault point {name!r}")
    injector = _injector
    if injector is not None:
        injector(name, file_id)
