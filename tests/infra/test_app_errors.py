"""OPS6(c): an invalid context value stops `cdk synth` (app.py) with one line, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("key", "value", "names"),
    [("maxFilesInFlight", "500", "maxFilesInFlight"), ("chunkSizeMb", "abc", "chunkSizeMb")],
)
def test_OPS6_invalid_context_stops_synth_with_one_line(
    tmp_path: Path, key: str, value: str, names: str
) -> None:
    # What the CDK CLI does for `cdk synth -c key=value`: context in CDK_CONTEXT_JSON, app.py run.
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps({key: value}),
        "CDK_OUTDIR": str(tmp_path),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "1",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1",
    }
    proc = subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("b'!!")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert names in lines[0] and lines[0].startswith("error: ")
