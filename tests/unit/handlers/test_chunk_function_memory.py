"""RUN12 for the whole chunk function, not only process_chunk: ProcessChunk's own output code
(``write_outputs``: the chunk's Parquet and rejects, the id list, the Iceberg data files) peaks
within 8x the chunk, on a 50 MiB chunk of ordinary data and on one whose every row is rejected.
Asserted by the benchmark that measures it, in fresh processes (memory, unlike time, does not
move with the machine's load)."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_RUN12_the_whole_chunk_function_peaks_within_8x_the_chunk() -> None:
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "bench_chunk_function.py"),
            "--rounds",
            "1",
            "--no-cost",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "RUN12 for the whole function" in out.stdout and "(met," in out.stdout
