"""The local emulator's state file (``.etl-local/emulator.json``): port, pid, deployed outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATE_DIR = Path(os.environ.get("ETL_LOCAL_DIR", Path.cwd() / ".etl-local"))
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
