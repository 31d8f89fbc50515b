"""The local emulator's state directory: ``emulator.json`` (port, pid, deployed outputs),
``server.log``, demo files and run results.

One absolute directory whatever the working directory (SPEC UX7), so ``etl --local ...`` finds
the emulator from any folder: ``$ETL_LOCAL_DIR`` if set, else ``$XDG_STATE_HOME/etl-local``
(``~/.local/state/etl-local``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def state_dir() -> Path:
    """Where the local emulator keeps its state (absolute)."""
    configured = os.environ.get("ETL_LOCAL_DIR")
    if configured:
        return Path(configured).expanduser().resolve()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser().resolve() / "etl-local"


STATE_DIR = state_dir()
STATE_FILE = STATE_DIR / "emulator.json"


def read() -> dict[str, Any] | None:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None


def write(state: dict[str, Any]) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, default=str))
    tmp.replace(STATE_FILE)


def update(**changes: Any) -> dict[str, Any]:
    state = read() or {}
    state.update(changes)
    write(state)
    return state


def clear() -> None:
    STATE_FILE.unlink(missing_ok=True)
