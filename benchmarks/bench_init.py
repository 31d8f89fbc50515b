"""PERF4 benchmark: a chunk function's cold start on this machine.

    .venv/bin/python benchmarks/bench_init.py [--rounds 7]

Each run is a fresh interpreter that does what a cold ProcessChunk does before and during its
first invocation: import the handler module (``etl.handlers.process_chunk``, with boto3,
Powertools, numpy, pyarrow), load the schema (init ends here), then create the S3 and DynamoDB
clients the handler creates on its first invocation and process a small first chunk (2,000
rows; no AWS call). Variants, interleaved round by round:

* ``now``: the code as it is (pandas kept off the chunk path, etl.core.arrow_init);
* ``pandas``: the same with ``import pandas`` first, i.e. what pyarrow did implicitly on its
  first conversion inside the schema load before PERF4 (the Lambda layer ships pandas);
* ``core``: only the chunk path (etl.core.process + the schema), without the handler module's
  boto3 / Powertools / X-Ray SDK imports;
* ``base`` (with ``--baseline DIR``): ``now`` run from another checkout of the repository (e.g.
  ``git archive main | tar -x -C /tmp/base``), for a before/after in one interleaved run.

The workers run in the environment of the deployed ProcessChunk function (:data:`LAMBDA_ENV`,
not the caller's): the variables infra/functions.py gives every function (Powertools service,
namespace and log level, ``ARROW_DEFAULT_MEMORY_POOL`` ...) plus those the Lambda runtime sets
(``LAMBDA_TASK_ROOT``, ``AWS_LAMBDA_FUNCTION_NAME``, ``AWS_REGION``, the X-Ray daemon address).
It matters: without ``LAMBDA_TASK_ROOT`` Powertools disables its tracer (no patching), and the
X-Ray SDK, not on Lambda, builds a ``DefaultSampler`` whose connector creates two botocore
``xray`` clients at import (~150 ms that no Lambda pays: there it uses the ``LocalSampler``);
a ``POWERTOOLS_TRACE_DISABLED`` left in a developer's shell would hide the tracer's cost too.
``_X_AMZN_TRACE_ID`` is absent, as during a Lambda init (the runtime sets it per invocation).
tests/infra/test_stack.py checks that the function variables match the synthesized template.

Bytecode matters as much (``--bytecode``, :data:`BYTECODE_MODES`): Lambda's code and layer
directories are read-only, so a module shipped without its ``.pyc`` is compiled from source at
every cold start. Our asset excludes ``__pycache__`` and the AWS SDK for pandas layer deletes
every ``.pyc`` (its building/lambda/build-lambda-layer.sh), so the default ``lambda`` mode
compiles etl/, numpy, pyarrow and pandas in every run and reads the rest from a private
PYTHONPYCACHEPREFIX tree filled by one untimed run beforehand (never from the venv's own
``__pycache__``, whose state depends on who ran what: a venv installed without bytecode and a
shell with PYTHONDONTWRITEBYTECODE=1 compile everything, which is what the first PERF4
measurement did without saying so). ``cached`` and ``none`` bound it from both sides.

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
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGET_S = 0.400

# The deployed ProcessChunk function's environment (tests/infra/test_stack.py compares the keys and
# the literal values with the synthesized template); the resource names are placeholders.
FUNCTION_ENV = {
    "BUCKET_NAME": "etl-data-bench",
    "TABLE_NAME": "etl-status-bench",
    "CHUNK_SIZE_BYTES": "52428800",
    "MAX_RECORD_BYTES": "16777216",
    "POWERTOOLS_SERVICE_NAME": "transaction-etl",
    "POWERTOOLS_METRICS_NAMESPACE": "TransactionEtl",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "ARROW_DEFAULT_MEMORY_POOL": "system",
    "GLUE_DATABASE": "transaction_etl_bench",
    "REGION_ROLE_PARAMETER": "/transaction-etl/bench/region-role",
    "DEFAULT_REGION_ROLE": "active",
}
# What the Lambda runtime adds (a function with active tracing, 3072 MB; docs: "Defined runtime
# environment variables"), with placeholder credentials (Lambda passes the role's in the
# environment; creating a client resolves them but the benchmark makes no AWS call).
RUNTIME_VARIABLES = {
    "LAMBDA_TASK_ROOT": "/var/task",
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
    "AWS_LAMBDA_FUNCTION_NAME": "etl-process-chunk-bench",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3072",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
    "_AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129",
    "_AWS_XRAY_DAEMON_PORT": "2000",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_SESSION_TOKEN": "bench",
}
LAMBDA_ENV = {**FUNCTION_ENV, **RUNTIME_VARIABLES}

# Which modules have bytecode (.pyc) at a cold start. /var/task and /opt are read-only on Lambda,
# so a module without shipped bytecode is compiled from source at every cold start.
BYTECODE_MODES = {
    "lambda": "no .pyc for etl/ (the function asset excludes __pycache__, infra/functions.py) nor "
    "for numpy, pyarrow, pandas (the AWS SDK for pandas layer's build deletes every .pyc); the "
    "rest (runtime boto3, Powertools layer, stdlib) assumed compiled",
    "lambda-etl-pyc": "as lambda, but with .pyc for etl/ (what shipping compiled etl/ in the "
    "function asset would give)",
    "cached": "every module compiled beforehand (a lower bound)",
    "none": "nothing outside the standard library compiled (an upper bound)",
}
LAYER_WITHOUT_BYTECODE = ("numpy", "pyarrow", "pandas")

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
if {handler!r}:
    from etl.aws import clients
    clients.s3(), clients.dynamodb()  # what the handler's first invocation creates
data = open({path!r}, "rb").read()
res = process_chunk(data, schema, 2)
t2, c2 = time.perf_counter(), cpu()
import hashlib, json
print(json.dumps({{"init": t1 - t0, "init_cpu": c1 - c0, "first": t2 - t0, "first_cpu": c2 - c0,
    "pandas": "pandas" in sys.modules, "digest": hashlib.sha256(res.parquet).hexdigest()[:16],
    "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}}))
"""


def worker_env(pycache: str | None = None, write: bool = False) -> dict[str, str]:
    """:data:`LAMBDA_ENV` plus only what the interpreter needs from the caller's environment;
    bytecode is read from (and, when ``write``, written to) the ``pycache`` mirror tree only."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env = {**keep, **LAMBDA_ENV}
    if pycache:
        env["PYTHONPYCACHEPREFIX"] = pycache
    if not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(
    variant: str, path: str, baseline: str | None = None, pycache: str | None = None, write: bool = False
) -> dict[str, Any]:
    code = WORKER.format(pandas=variant == "pandas", handler=variant != "core", path=path)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=baseline if variant == "base" and baseline else ROOT,
        env=worker_env(pycache, write),
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def prepare_bytecode(mode: str, pycache: str, variants: tuple[str, ...], path: str, roots: list[str]) -> None:
    """Fill the ``pycache`` mirror tree (PYTHONPYCACHEPREFIX) for ``mode``: one untimed run of
    every variant compiles everything they import, then the bytecode Lambda would not have is
    removed (see :data:`BYTECODE_MODES`). The venv's own ``__pycache__`` dirs are never read."""
    for v in variants:
        run(v, path, roots[1] if len(roots) > 1 else None, pycache, write=True)
    if mode == "cached":
        return
    import importlib.util

    def mirror(directory: str) -> str:
        return os.path.join(pycache, os.path.abspath(directory).lstrip(os.sep))

    drop = [] if mode == "lambda-etl-pyc" else [mirror(os.path.join(r, "etl")) for r in roots]
    if mode in ("lambda", "lambda-etl-pyc"):
        for name in LAYER_WITHOUT_BYTECODE:
            spec = importlib.util.find_spec(name)
            if spec and spec.submodule_search_locations:
                drop.extend(mirror(d) for d in spec.submodule_search_locations)
    else:  # none: no bytecode for anything outside the standard library
        import sysconfig

        drop.append(mirror(sysconfig.get_paths()["purelib"]))
        drop.append(mirror(sysconfig.get_paths()["platlib"]))
    for d in drop:
        shutil.rmtree(d, ignore_errors=True)


def _stat(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:6.0f} ms ({min(xs) * 1000:.0f}-{max(xs) * 1000:.0f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="PERF4 cold-start benchmark")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--baseline", metavar="DIR", help="also run the handler from this checkout (as base)")
    ap.add_argument("--bytecode", choices=tuple(BYTECODE_MODES), default="lambda", help="which .pyc exist")
    a = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    from etl_local.datagen import generate_bytes

    path = os.path.join(HERE, "data", "first-chunk-2000rows-seed3.csv")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data, _ = generate_bytes(rows=2000, seed=3)
        with open(path, "wb") as fh:
            fh.write(data)
    variants: tuple[str, ...] = ("now", "pandas", "core") + (("base",) if a.baseline else ())
    roots = [ROOT] + ([os.path.abspath(a.baseline)] if a.baseline else [])
    res: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="bench-init-pycache-") as pycache:
        prepare_bytecode(a.bytecode, pycache, variants, path, roots)
        now = datetime.datetime.now(datetime.UTC)
        load0 = os.getloadavg()[0]
        for r in range(a.rounds):
            k = r % len(variants)
            for v in variants[k:] + variants[:k]:
                res[v].append(run(v, path, a.baseline, pycache))
        load1 = os.getloadavg()[0]
    print(
        f"PERF4 cold start: {a.rounds} fresh interpreters per variant, interleaved; "
        f"{now:%Y-%m-%d %H:%M} UTC, load average {load0:.1f} -> {load1:.1f}"
    )
    print(f"  bytecode {a.bytecode}: {BYTECODE_MODES[a.bytecode]}")
    print(
        f"  {'variant':8s} {'init wall':>22s} {'init CPU':>22s} {'init+1st chunk wall':>22s} "
        f"{'init+1st chunk CPU':>22s} {'peak RSS':>9s}  pandas  parquet digest"
    )
    for v in variants:
        rows = res[v]
        print(
            f"  {v:8s} {_stat([x['init'] for x in rows]):>22s} {_stat([x['init_cpu'] for x in rows]):>22s} "
            f"{_stat([x['first'] for x in rows]):>22s} {_stat([x['first_cpu'] for x in rows]):>22s} "
            f"{max(x['peak_rss'] for x in rows) / 2**20:8.0f}M  "
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
    if a.baseline:
        print(
            f"  now vs base: {(med['base'] - med['now']) * 1000:.0f} ms wall, "
            f"{(med_cpu['base'] - med_cpu['now']) * 1000:.0f} ms CPU less init"
        )
    ok = same and not any(x["pandas"] for x in res["now"]) and med["now"] <= TARGET_S
    print(
        f"PERF4 init <= {TARGET_S * 1000:.0f} ms: {'HOLDS' if med['now'] <= TARGET_S else 'NOT MET'} "
        f"(median {med['now'] * 1000:.0f} ms wall, {med_cpu['now'] * 1000:.0f} ms CPU)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
