"""PERF3 input: the whole work of one ProcessChunk invocation, not only ``process_chunk``.

    .venv/bin/python benchmarks/bench_chunk_function.py [--rounds 5] [--threads 2]

``bench_peers.py`` times ``process_chunk`` (parse, validate, the chunk's Parquet and rejects),
which is what DuckDB and Polars can be compared on. The chunk function does more: the chunk's
``(transaction_id, line)`` list for Finalize's duplicate check, and the unpublished Iceberg data
files (rows sorted by date, account and id, one Parquet file per transaction date, the rejects
table's file). This script runs the handler's own code for all of it
(``etl.handlers.process_chunk.write_outputs``) on the same 50 MiB chunk, with the S3 adapter's
``put_bytes`` replaced by a recorder of object sizes (no AWS here; S3 transfer time is added by
the cost model at an assumed throughput). Each run is a fresh process; the two variants
(``process_chunk`` alone, the whole function) alternate round by round. Reported: median and
spread of wall and CPU time, objects and bytes written per chunk by prefix, and the PERF3 cost
estimate from these measurements (``benchmarks/cost.py``). RUN12: the whole function is also
run once on the worst content for memory (a chunk of 120-byte rows, every one rejected); the
script exits 1 when either peak RSS is above ``--limit`` x the chunk (default 8).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]

from bench_memory import hwm_bytes  # noqa: E402  (after the path set-up above)

VARIANTS = ("process_chunk", "function")


def worker(path: str, variant: str) -> dict[str, Any]:
    """One fresh-process run (imports outside the timing, as in bench_peers)."""
    import resource
    import time

    from etl.aws import s3
    from etl.core.process import process_chunk
    from etl.core.schema import load_schema
    from etl.handlers import process_chunk as handler_module

    written: dict[str, int] = {}

    def record(
        bucket: str,
        key: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> dict[str, str | None]:
        written[key] = len(data)
        return {"version_id": None, "etag": None}

    s3.put_bytes = record  # the benchmark's S3: object sizes only
    schema = load_schema("default")
    file = {
        "bucket": "bench",
        "key": "incoming/default/bench.csv",
        "partner": "default",
        "file_id": "f" * 32,
        "version_id": "v1",
    }

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    t0, c0 = time.perf_counter(), cpu()
    with open(path, "rb") as fh:
        data = fh.read()
    result = process_chunk(data, schema, 2)
    del data
    if variant == "function":
        handler_module.write_outputs(file, schema, 0, "c0", result, None)
    return {
        "variant": variant,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": cpu() - c0,
        "peak_rss": hwm_bytes(),
        "written": written,
        "rows_in": result.rows_in,
    }


def _run_worker(variant: str, path: str, cpus: str) -> str:
    """One fresh process (pinned to ``cpus``, the functions' process settings); its stdout."""
    from etl.contracts import RUNTIME_ENV

    cmd = [
        "taskset",
        "-c",
        cpus,
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        variant,
        "--data",
        path,
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **RUNTIME_ENV}, check=True
    )
    return out.stdout


def _all_rejected_chunk() -> str:
    """50 MiB of 120-byte rows with one field each, after the default header (generated once)."""
    from etl.core.schema import load_schema

    path = os.path.join(HERE, "data", "chunk-50mib-ragged-120b.csv")
    if not os.path.exists(path):
        header = (",".join(load_schema("default").source_columns) + "\n").encode()
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(header + (b"x" * 120 + b"\n") * (50 * 2**20 // 121))
        os.replace(tmp, path)
    return path


def _prefix(key: str) -> str:
    parts = key.split("/")
    return "/".join(parts[:2]) + "/" if parts[0] == "tables" else parts[0] + "/"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="PERF3: the whole chunk function's work")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="CPUs the worker may use (affinity)")
    ap.add_argument("--init-seconds", type=float, default=0.58, help="for the cost estimate (bench_init)")
    ap.add_argument("--limit", type=float, default=8.0, help="RUN12: allowed peak, multiple of the chunk")
    ap.add_argument("--no-cost", action="store_true", help="skip the cost estimate")
    ap.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.data, a.worker)))
        return 0

    from bench_peers import chunk_file

    path = chunk_file()
    size = os.path.getsize(path)
    cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[: a.threads])
    started = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 (runs on 3.9 in the tests)
    print(f"chunk function work: {path} ({size / 2**20:.1f} MiB), {a.rounds} rounds, CPUs {cpus}")
    print(f"{started:%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}")
    runs: list[dict[str, Any]] = []
    for r in range(a.rounds):
        for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
            runs.append(json.loads(_run_worker(variant, path, cpus).strip().splitlines()[-1]))
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    med: dict[str, float] = {}
    for variant in VARIANTS:
        mine = [x for x in runs if x["variant"] == variant]
        secs = [x["seconds"] for x in mine]
        cpu_s = [x["cpu_seconds"] for x in mine]
        med[variant] = statistics.median(secs)
        print(
            f"  {variant:14s} wall median {med[variant]:.3f} s ({min(secs):.3f}-{max(secs):.3f}), "
            f"CPU median {statistics.median(cpu_s):.3f} s, "
            f"peak RSS {max(x['peak_rss'] for x in mine) / 2**20:.0f} MiB"
        )
    written = next(x["written"] for x in runs if x["variant"] == "function")
    by_prefix: dict[str, list[int]] = {}
    for key, n in written.items():
        by_prefix.setdefault(_prefix(key), []).append(n)
    print("  objects written per chunk (function):")
    for prefix, sizes in sorted(by_prefix.items()):
        print(
            f"    {prefix:32s} {len(sizes):3d} objects, {sum(sizes) / 2**20:7.2f} MiB "
            f"({sum(sizes) / size:.2f}x the chunk)"
        )
    print(
        f"  the function's work beyond process_chunk: x{med['function'] / med['process_chunk']:.2f} its time"
    )
    peak_x = max(x["peak_rss"] for x in runs if x["variant"] == "function") / size
    # The worst content for memory (bench_memory.py): a 50 MiB chunk of 120-byte rows, every one
    # rejected for its field count; one run of the whole function on it.
    ragged = _all_rejected_chunk()
    worst = json.loads(_run_worker("function", ragged, cpus).strip().splitlines()[-1])
    worst_x = worst["peak_rss"] / os.path.getsize(ragged)
    held = max(peak_x, worst_x) <= a.limit
    verdict = "met" if held else "NOT MET"
    print(
        f"  RUN12 for the whole function: peak {peak_x:.2f}x the chunk, {worst_x:.2f}x for a chunk of "
        f"rejected 120-byte rows ({verdict}, limit {a.limit:g}x)"
    )

    from cost import Workload, estimate, format_report

    kept = sum(n for k, n in written.items() if not k.startswith("scratch/"))
    w = Workload(
        process_seconds_per_chunk=med["function"],
        parquet_share=kept / size,
        put_share=sum(written.values()) / size,
        puts_per_chunk=len(written),
        init_seconds=a.init_seconds,
    )
    if not a.no_cost:
        print()
        print(format_report(estimate(w)))
    return 0 if held else 1


if __name__ == "__main__":
    raise SystemExit(main())
