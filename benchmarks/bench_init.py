"""PERF4 benchmark: a chunk function's cold start on this machine.

    .venv/bin/python benchmarks/bench_init.py [--rounds 7]

Each run is a fresh interpreter that does what a cold ProcessChunk does before and during its
first invocation: import the handler module (``etl.handlers.process_chunk``, with boto3,
Powertools, numpy, pyarrow), load the schema, and process a small first chunk (2,000 rows).
Two variants, interleaved round by round:

* ``now``: the code as it is (pandas kept off the chunk path, etl.core.arrow_init);
* ``pandas``: the same with ``import pandas`` first, i.e. what pyarrow did implicitly on its
  first conversion inside the schema load before PERF4 (the Lambda layer ships pandas);
* ``core``: only the chunk path (etl.core.process + the schema), without the handler module's
  boto3 / Powertools / X-Ray SDK imports (the X-Ray SDK builds two botocore clients at import).

Reported per variant: median and spread of wall time and of CPU time (user + sys, less
sensitive to other jobs on the machine) of init (imports + schema) and of init + first chunk,
peak RSS, whether pandas got imported, and the digest of the chunk's Parquet bytes (must be
equal: keeping pandas out changes no output byte). The interpreter's own start-up (~20 ms) is
not included. PERF4 target: init <= 400 ms.
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
TARGET_S = 0.400

WORKER = r"""
import os, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t0, c0 = time.perf_counter(), cpu()
if {pandas!r}:
    import pandas
if {handler!r}:
    import etl.handlers.process_chunk
from etl.core.process import process_chunk
from etl.core.schema import load_schema
schema = load_schema("default")
t1, c1 = time.perf_counter(), cpu()
data = open({path!r}, "rb").read()
res = process_chunk(data, schema, 2)
t2, c2 = time.perf_counter(), cpu()
import hashlib, json
print(json.dumps({{"init": t1 - t0, "init_cpu": c1 - c0, "first": t2 - t0, "first_cpu": c2 - c0,
    "pandas": "pandas" in sys.modules, "digest": hashlib.sha256(res.parquet).hexdigest()[:16],
    "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}}))
"""


def run(variant: str, path: str) -> dict[str, Any]:
    sys.path.insert(0, ROOT)
    from etl.contracts import RUNTIME_ENV

    code = WORKER.format(pandas=variant == "pandas", handler=variant != "core", path=path)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **RUNTIME_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _stat(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:6.0f} ms ({min(xs) * 1000:.0f}-{max(xs) * 1000:.0f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="PERF4 cold-start benchmark")
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    from etl_local.datagen import generate_bytes

    path = os.path.join(HERE, "data", "first-chunk-2000rows-seed3.csv")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data, _ = generate_bytes(rows=2000, seed=3)
        with open(path, "wb") as fh:
            fh.write(data)
    now = datetime.datetime.now(datetime.UTC)
    load0 = os.getloadavg()[0]
    variants = ("now", "pandas", "core")
    res: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for r in range(a.rounds):
        for v in variants[r % 3 :] + variants[: r % 3]:
            res[v].append(run(v, path))
    load1 = os.getloadavg()[0]
    print(
        f"PERF4 cold start: {a.rounds} fresh interpreters per variant, interleaved; "
        f"{now:%Y-%m-%d %H:%M} UTC, load average {load0:.1f} -> {load1:.1f}"
    )
    print(
        f"  {'variant':8s} {'init wall':>22s} {'init CPU':>22s} {'init+1st chunk wall':>22s} "
        f"{'peak RSS':>9s}  pandas  parquet digest"
    )
    for v in variants:
        rows = res[v]
        print(
            f"  {v:8s} {_stat([x['init'] for x in rows]):>22s} {_stat([x['init_cpu'] for x in rows]):>22s} "
            f"{_stat([x['first'] for x in rows]):>22s} {max(x['peak_rss'] for x in rows) / 2**20:8.0f}M  "
            f"{sorted({x['pandas'] for x in rows})}  {sorted({x['digest'] for x in rows})}"
        )
    med = {v: statistics.median([x["init"] for x in res[v]]) for v in variants}
    med_cpu = {v: statistics.median([x["init_cpu"] for x in res[v]]) for v in variants}
    same = len({x["digest"] for v in variants for x in res[v]}) == 1
    print(
        f"  pandas kept out saves {(med['pandas'] - med['now']) * 1000:.0f} ms wall, "
        f"{(med_cpu['pandas'] - med_cpu['now']) * 1000:.0f} ms CPU of init; same Parquet bytes: {same}"
    )
    print(
        f"  of which the handler's AWS libraries (boto3, Powertools, X-Ray SDK): "
        f"{(med['now'] - med['core']) * 1000:.0f} ms wall, "
        f"{(med_cpu['now'] - med_cpu['core']) * 1000:.0f} ms CPU"
    )
    ok = same and not any(x["pandas"] for x in res["now"]) and med["now"] <= TARGET_S
    print(
        f"PERF4 init <= {TARGET_S * 1000:.0f} ms: {'HOLDS' if med['now'] <= TARGET_S else 'NOT MET'} "
        f"(median {med['now'] * 1000:.0f} ms wall, {med_cpu['now'] * 1000:.0f} ms CPU)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
