"""PERF2 peer benchmark: the project's chunk processing against DuckDB, Polars and pandas.

    .venv/bin/python benchmarks/bench_peers.py [--size-mb 50] [--rounds 5] [--threads 1,2]

One seeded chunk from ``etl_local.datagen`` (0.5 % bad rows of every kind, 0.1 % repeated
transaction ids) is processed by every implementation with the same rules (benchmarks/peers.py
takes them from the schema), each run in a FRESH process: ``project`` (etl.core.process),
``duckdb``, ``polars``, ``pandas-arrow`` (a competent pandas: pyarrow engine, Arrow-backed
columns) and ``pandas-old`` (benchmarks/pandas_baseline.py, the first version one would write).
Timed inside the worker: reading the chunk file, parsing, validating every row, writing the
valid rows as snappy Parquet and the rejects as CSV (imports excluded; PERF4 measures them).

Runs are interleaved: every round runs each implementation once, in an order rotated per
round, at 1 thread (the worker is pinned to one CPU and each library told to use one thread)
and at 2 threads (a 3 GB Lambda's vCPUs). The machine load (``os.getloadavg``) is recorded at
each round. Reported per implementation: median and spread (min-max) of the times, peak RSS of
the whole worker process; and the project's speed-up against each peer as the median of the
per-round ratios (load hits both sides of a round alike), with the PERF2 targets.

Agreement: every implementation must report the same rows in / valid / rejected, and its
Parquet file must hold the same set of transaction ids with the same amounts (checked by
reading them back after the run), else the benchmark fails.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench_memory import hwm_bytes

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
IMPLS = ("project", "duckdb", "polars", "pandas-arrow", "pandas-old")
PEERS_JUDGED = ("duckdb", "polars")
# PERF2 targets (SPEC): speed-up of the project over DuckDB and Polars per thread count, over a
# competent pandas, and the whole-process peak as a multiple of the chunk.
TARGET_PEER = {1: 1.2, 2: 1.5}
TARGET_PANDAS = 2.0
TARGET_PEAK_X = 7.0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def worker(impl: str, path: str, threads: int, out_dir: str, rules_path: str) -> dict[str, Any]:
    """Runs in the fresh subprocess; thread limits are set before any library is imported."""
    t_start = time.perf_counter()
    if threads == 1:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with open(rules_path) as fh:
        rules = json.load(fh)
    counts: tuple[int, int, int]
    if impl in ("project", "pandas-old"):
        # Same harness for both: the chunk path under test is the only difference.
        sys.path[:0] = [ROOT, HERE]
        import pyarrow as pa

        from etl.core.schema import load_schema

        run_chunk: Any
        if impl == "project":
            from etl.core.process import process_chunk as run_chunk
        else:
            from pandas_baseline import process_chunk_pandas as run_chunk

        pa.set_cpu_count(threads)
        schema = load_schema(rules["schema"])
        t_imports = time.perf_counter() - t_start
        t0, c0 = time.perf_counter(), _cpu()
        with open(path, "rb") as fh:
            data = fh.read()
        res = run_chunk(data, schema, 2)
        with open(os.path.join(out_dir, "valid.parquet"), "wb") as fh:
            fh.write(res.parquet)
        with open(os.path.join(out_dir, "rejects.csv"), "wb") as fh:
            fh.write(res.rejects_csv)
        counts = (res.rows_in, res.rows_valid, res.rows_rejected)
    else:
        sys.path.insert(0, HERE)
        if impl == "pandas-arrow":
            import pandas  # noqa: F401  (imports outside the timing, as for the others)
            import pyarrow as pa

            pa.set_cpu_count(threads)
            pa.set_io_thread_count(threads)
        elif impl == "polars":
            import polars  # noqa: F401
        else:
            import duckdb  # noqa: F401
        from peers import PEERS

        t_imports = time.perf_counter() - t_start
        t0, c0 = time.perf_counter(), _cpu()
        counts = PEERS[impl](path, rules, threads, out_dir)
    seconds = time.perf_counter() - t0
    cpu_seconds = _cpu() - c0
    return {
        "cpu_seconds": cpu_seconds,
        "impl": impl,
        "threads": threads,
        "seconds": seconds,
        "imports_s": t_imports,
        "rows_in": counts[0],
        "rows_valid": counts[1],
        "rows_rejected": counts[2],
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec, so every worker would
        # report at least this script's own RSS at the time it started the worker.
        "peak_rss": hwm_bytes(),
    }


def run_worker(impl: str, path: str, threads: int, rules_path: str) -> dict[str, Any]:
    from etl.contracts import RUNTIME_ENV

    env = {**os.environ, **RUNTIME_ENV}
    # Every library's own thread setting, before it is imported.
    for var in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    with tempfile.TemporaryDirectory(prefix=f"peer-{impl}-") as out_dir:
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--worker", impl, "--data", path,
             "--threads", str(threads), "--out", out_dir, "--rules", rules_path],
            capture_output=True, text=True, cwd=ROOT, env=env,
        )  # fmt: skip
        if proc.returncode:
            raise RuntimeError(f"{impl} worker failed:\n{proc.stderr[-3000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["digest"] = _output_digest(os.path.join(out_dir, "valid.parquet"))
        res["parquet_bytes"] = os.path.getsize(os.path.join(out_dir, "valid.parquet"))
    return res


def _output_digest(parquet_path: str) -> str:
    """Digest of the valid rows' (transaction_id, amount, transaction_date, posted_at) sorted by
    id: equal digests = the same rows with the same typed values, whatever the row order or the
    writer's chunking (each column is made one canonical array and its buffers hashed)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(parquet_path, columns=["transaction_id", "amount", "transaction_date", "posted_at"])
    t = t.take(pc.sort_indices(t, sort_keys=[("transaction_id", "ascending")]))  # type: ignore[attr-defined]
    canonical = {
        "transaction_id": pa.string(),
        "amount": pa.string(),  # decimal -> its exact text
        "transaction_date": pa.int32(),
        "posted_at": pa.int64(),  # microseconds since the epoch, UTC
    }
    h = hashlib.sha256()
    for name, typ in canonical.items():
        col = t.column(name)
        if name == "posted_at":
            col = col.cast(pa.timestamp("us", tz="UTC"))
        arr = col.cast(typ).combine_chunks()
        arr = pc.fill_null(arr, "" if typ == pa.string() else -1)  # type: ignore[attr-defined]
        h.update(name.encode())
        for buf in arr.buffers()[1:]:
            if buf is not None:
                h.update(buf)
    return h.hexdigest()[:16]


def chunk_file(
    size_mb: float = 50.0, seed: int = 42, bad_share: float = 0.005, dup_share: float = 0.001
) -> str:
    """The benchmark chunk (generated, seeded, on first use): the same file for every script."""
    sys.path[:0] = [ROOT, HERE]
    from etl_local.datagen import generate_csv

    os.makedirs(os.path.join(HERE, "data"), exist_ok=True)
    path = os.path.join(
        HERE, "data", f"chunk-{size_mb:g}mib-seed{seed}-bad{bad_share:g}-dup{dup_share:g}.csv"
    )
    if not os.path.exists(path):
        # Written aside and renamed: a concurrent run never reads a half-written chunk.
        tmp = f"{path}.{os.getpid()}.tmp"
        st = generate_csv(
            tmp,
            size_bytes=int(size_mb * 2**20),
            seed=seed,
            bad_row_share=bad_share,
            duplicate_id_share=dup_share,
        )
        os.replace(tmp, path)
        print(f"generated {path}: {st.rows} rows, {st.bad_rows} bad, {st.duplicate_ids} repeated ids")
    return path


def _fmt_pair(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="PERF2 peer benchmark")
    ap.add_argument("--size-mb", type=float, default=50.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--bad-share", type=float, default=0.005)
    ap.add_argument("--dup-share", type=float, default=0.001)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--rules", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.worker, a.data, int(a.threads), a.out, a.rules)))
        return 0

    sys.path[:0] = [ROOT, HERE]
    from peers import rules_of

    from etl.core.schema import load_schema

    path = chunk_file(a.size_mb, a.seed, a.bad_share, a.dup_share)
    size = os.path.getsize(path)
    impls = [i for i in a.impls.split(",") if i]
    thread_counts = [int(t) for t in a.threads.split(",")]
    rules = {**rules_of(load_schema("default")), "schema": "default"}
    started = datetime.datetime.now(datetime.UTC)
    print(
        f"PERF2 peers: {path} ({size / 2**20:.1f} MiB); {a.rounds} rounds x {impls} x threads "
        f"{thread_counts}, each run a fresh process; {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs"
    )
    results: list[dict[str, Any]] = []
    loads: list[float] = []
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(rules, fh)
        rules_path = fh.name
    try:
        for r in range(a.rounds):
            for threads in thread_counts:
                order = impls[r % len(impls) :] + impls[: r % len(impls)]
                loads.append(os.getloadavg()[0])
                for impl in order:
                    res = run_worker(impl, path, threads, rules_path)
                    res["round"] = r
                    results.append(res)
            print(f"  round {r + 1}/{a.rounds} done, load average {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        os.unlink(rules_path)
    loads.append(os.getloadavg()[0])

    # Agreement, row for row.
    keys = {(x["rows_in"], x["rows_valid"], x["rows_rejected"], x["digest"]) for x in results}
    agree = len(keys) == 1
    for impl in impls:
        outcomes = {
            (x["rows_in"], x["rows_valid"], x["rows_rejected"], x["digest"])
            for x in results
            if x["impl"] == impl
        }
        print(f"  {impl:13s} rows in/valid/rejected, digest of valid rows: {sorted(outcomes)}")
    print(f"all agree row for row: {agree}; load average during the run {min(loads):.1f}-{max(loads):.1f}")

    ok = agree
    mib = size / 2**20
    for threads in thread_counts:
        print(f"\n{threads} thread(s):")
        print(
            f"  {'impl':13s} {'median s':>9s} {'min-max s':>13s} {'MiB/s':>7s} {'peak RSS':>9s} "
            f"{'x chunk':>8s} {'CPU s':>6s}  "
            "project's speed-up (median of per-round ratios, min-max)"
        )
        rows = [x for x in results if x["threads"] == threads]
        proj = {x["round"]: x["seconds"] for x in rows if x["impl"] == "project"}
        for impl in impls:
            mine = [x for x in rows if x["impl"] == impl]
            times = [x["seconds"] for x in mine]
            med = statistics.median(times)
            peak = max(x["peak_rss"] for x in mine)
            ratio = ""
            if impl != "project" and proj:
                ratio = _fmt_pair([x["seconds"] / proj[x["round"]] for x in mine if x["round"] in proj])
            print(
                f"  {impl:13s} {med:9.3f} {min(times):6.3f}-{max(times):6.3f} {mib / med:7.1f} "
                f"{peak / 2**20:8.0f}M {peak / size:8.2f} "
                f"{statistics.median(x['cpu_seconds'] for x in mine):6.2f}  {ratio}"
            )
        if not proj:
            continue
        for impl in impls:
            target = (
                TARGET_PEER[min(threads, 2)]
                if impl in PEERS_JUDGED
                else TARGET_PANDAS
                if impl == "pandas-arrow"
                else None
            )
            if target is None:
                continue
            ratios = [
                x["seconds"] / proj[x["round"]] for x in rows if x["impl"] == impl and x["round"] in proj
            ]
            held = statistics.median(ratios) >= target
            ok &= held
            print(
                f"  target >= {target:.1f}x {impl}: {'HOLDS' if held else 'NOT MET'} "
                f"({statistics.median(ratios):.2f}x)"
            )
        peak_x = max(x["peak_rss"] for x in rows if x["impl"] == "project") / size
        held = peak_x <= TARGET_PEAK_X
        ok &= held
        print(
            f"  target project peak <= {TARGET_PEAK_X:.0f}x chunk: "
            f"{'HOLDS' if held else 'NOT MET'} ({peak_x:.2f}x)"
        )
    print(f"\nPERF2 peers: {'PASS' if ok else 'FAIL'}")
    # PERF3 needs the whole chunk function's work (the Iceberg data files too), not only what
    # the peers are compared on: benchmarks/bench_chunk_function.py prints the cost estimate.
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(
                {
                    "started": started.isoformat(),
                    "path": path,
                    "size": size,
                    "loads": loads,
                    "results": results,
                },
                fh,
                indent=1,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
