"""PERF2 (chunk processing vs pandas) and PERF3 (cost per GB) benchmark.

    .venv/bin/python benchmarks/bench_process.py [--size-mb 50] [--seed 42] [--bad-share 0.005] [--repeat 3]

1. Generates one seeded chunk with etl_local.datagen (header + records, 0.5% bad rows) into
   benchmarks/data/ (reused when present).
2. Runs etl.core.process.process_chunk and benchmarks/pandas_baseline.py each in a FRESH
   subprocess on the same bytes, one after the other (never concurrently: 2 cores). Each
   worker reports the first (cold) run and the following (warm) runs, the process's peak RSS
   (``ru_maxrss``), its RSS after the imports (before reading the chunk), and the peak of
   ``pyarrow.total_allocated_bytes()`` sampled every 2 ms on a thread (tracemalloc cannot see
   Arrow's allocator).
3. Checks both agree on rows in / valid / rejected, prints MiB/s, the speed ratio, peak memory
   as a multiple of the chunk size, and the PERF3 cost estimate from the measured time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]

from etl.contracts import RUNTIME_ENV  # noqa: E402  (after the path set-up above)


def _rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def worker(impl: str, path: str, repeat: int) -> dict:
    """Runs inside the fresh subprocess."""
    import pyarrow as pa

    from etl.core.schema import load_schema

    run: Callable[[bytes, Any, int], Any]
    if impl == "arrow":
        from etl.core.process import process_chunk as run
    else:
        from pandas_baseline import process_chunk_pandas as run
    schema = load_schema("default")
    rss_imports = _rss_kib() * 1024
    with open(path, "rb") as fh:
        data = fh.read()
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], pa.total_allocated_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    times = []
    counts = (0, 0, 0)
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = run(data, schema, 2)
        times.append(time.perf_counter() - t0)
        counts = (result.rows_in, result.rows_valid, result.rows_rejected)
        del result  # like a Lambda between invocations: the previous result is gone
    stop.set()
    sampler.join()
    return {
        "impl": impl,
        "bytes": len(data),
        "times": times,
        "rows_in": counts[0],
        "rows_valid": counts[1],
        "rows_rejected": counts[2],
        "rss_imports": rss_imports,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "arrow_peak": peak[0],
    }


def run_worker(impl: str, path: str, repeat: int) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            impl,
            "--data",
            path,
            "--repeat",
            str(repeat),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        # The same process settings as the Lambda functions (allocator choice), for both sides.
        env={**os.environ, **RUNTIME_ENV},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="PERF2/PERF3 benchmark")
    ap.add_argument("--size-mb", type=float, default=50.0, help="chunk size in MiB")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--bad-share", type=float, default=0.005)
    ap.add_argument("--repeat", type=int, default=3, help="runs per worker (first = cold)")
    ap.add_argument("--worker", choices=["arrow", "pandas"], help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.worker, a.data, a.repeat)))
        return 0

    from etl_local.datagen import generate_csv

    os.makedirs(os.path.join(HERE, "data"), exist_ok=True)
    path = os.path.join(HERE, "data", f"chunk-{a.size_mb:g}mib-seed{a.seed}-bad{a.bad_share:g}.csv")
    if not os.path.exists(path):
        t0 = time.perf_counter()
        stats = generate_csv(
            path, size_bytes=int(a.size_mb * 1024 * 1024), seed=a.seed, bad_row_share=a.bad_share
        )
        print(f"generated {path}: {stats.rows} rows, {stats.bad_rows} bad, {time.perf_counter() - t0:.1f} s")
    size = os.path.getsize(path)
    mib = size / 2**20
    print(f"chunk: {path} ({mib:.1f} MiB); {a.repeat} runs per implementation, each in a fresh process")
    res = {impl: run_worker(impl, path, a.repeat) for impl in ("arrow", "pandas")}
    counts = {k: (v["rows_in"], v["rows_valid"], v["rows_rejected"]) for k, v in res.items()}
    agree = counts["arrow"] == counts["pandas"]
    print(f"rows in/valid/rejected: arrow {counts['arrow']}, pandas {counts['pandas']} -> agree: {agree}")
    print(
        f"{'impl':8s} {'cold s':>8s} {'warm s':>8s} {'cold MiB/s':>11s} {'warm MiB/s':>11s} "
        f"{'peak RSS':>10s} {'x chunk':>8s} {'RSS-imports':>12s} {'x chunk':>8s} {'arrow peak':>11s}"
    )
    for k, v in res.items():
        cold = v["times"][0]
        warm = statistics.median(v["times"][1:]) if len(v["times"]) > 1 else cold
        v["cold"], v["warm"] = cold, warm
        inc = v["peak_rss"] - v["rss_imports"]
        print(
            f"{k:8s} {cold:8.3f} {warm:8.3f} {mib / cold:11.1f} {mib / warm:11.1f} "
            f"{v['peak_rss'] / 2**20:9.0f}M {v['peak_rss'] / size:8.2f} "
            f"{inc / 2**20:11.0f}M {inc / size:8.2f} "
            f"{v['arrow_peak'] / 2**20:10.0f}M"
        )
    cold_ratio = res["pandas"]["cold"] / res["arrow"]["cold"]
    warm_ratio = res["pandas"]["warm"] / res["arrow"]["warm"]
    arrow = res["arrow"]
    inc_x = (arrow["peak_rss"] - arrow["rss_imports"]) / size
    print(f"speed-up vs pandas: cold {cold_ratio:.1f}x, warm {warm_ratio:.1f}x (PERF2 target >= 3x)")
    print(
        f"arrow peak memory: {arrow['peak_rss'] / size:.2f}x chunk (whole process RSS), "
        f"{inc_x:.2f}x chunk above the imported interpreter (PERF2 target <= 8x)"
    )
    # Judged on the stricter figure: the whole process, interpreter and imports included.
    ok = agree and min(cold_ratio, warm_ratio) >= 3 and arrow["peak_rss"] / size <= 8
    print(f"PERF2: {'PASS' if ok else 'FAIL'}")
    # PERF3's cost estimate needs the whole chunk function's work: bench_chunk_function.py.
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
