"""RUN12 memory benchmark: peak memory <= 8x the chunk size for any content.

    .venv/bin/python benchmarks/bench_memory.py [--chunk-mb 50] [--limit 8] [--only NAME ...]

For each input below the file is planned with the real planner (``plan_chunks`` with the line
cap PlanChunks uses, ``line_cap(chunk)``), and its largest chunk (most lines, then most bytes)
is processed by ``process_chunk`` in a FRESH subprocess with the Lambda functions' process
settings (``RUNTIME_ENV``). The whole process's peak RSS (``VmHWM``: interpreter, imports,
the chunk's bytes and everything processing allocates) is compared with ``limit x chunk``; the
script exits 1 if any input is over, so the bound is asserted here, not in a timed test.

Inputs (issue 9): a blank-line flood (32 MiB of ``\\n``, the 32 KB-gzip case), 4 M tiny ragged
rows (``a\\n``), 4 M short ragged rows (``a,b,c\\n``), ragged rows of 120 bytes filling the chunk
(every row a reject: the most Python objects per byte), and the generated transactions file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]

from etl.contracts import RUNTIME_ENV  # noqa: E402  (after the path set-up above)

MIB = 1024 * 1024


def inputs(header: bytes, chunk: int) -> dict[str, bytes]:
    from etl_local.datagen import generate_bytes

    rows, _ = generate_bytes(size_bytes=chunk, seed=42, bad_row_share=0.005)
    return {
        "blank-flood-32MiB": header + b"\n" * (32 * MIB) + b"T1,A,2024-01-01,,1.00,EUR,DEBIT,,,\n",
        "tiny-ragged-4M": header + b"a\n" * 4_000_000,
        "short-ragged-4M": header + b"a,b,c\n" * 4_000_000,
        "ragged-120B-rows": header + (b"x" * 120 + b"\n") * (chunk // 121),
        "transactions": rows,
    }


def worker(path: str, first_line: int) -> dict[str, object]:
    from etl.core.process import process_chunk
    from etl.core.schema import load_schema

    schema = load_schema("default")
    with open(path, "rb") as fh:
        data = fh.read()
    t0 = time.perf_counter()
    r = process_chunk(data, schema, first_line)
    return {
        "seconds": time.perf_counter() - t0,
        "rows_in": r.rows_in,
        "rows_rejected": r.rows_rejected,
        # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so a child would report
        # its parent's peak (this script holds the inputs); VmHWM belongs to the new process.
        "peak_rss": hwm_bytes(),
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def hwm_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="RUN12 memory benchmark")
    ap.add_argument("--chunk-mb", type=float, default=50.0)
    ap.add_argument("--limit", type=float, default=8.0, help="allowed peak RSS, multiple of the chunk")
    ap.add_argument("--only", nargs="*", help="input names to run")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--first-line", type=int, default=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.worker, a.first_line)))
        return 0

    from etl.core.boundaries import line_cap, plan_chunks
    from etl.core.schema import load_schema

    schema = load_schema("default")
    header = (",".join(schema.source_columns) + "\n").encode()
    chunk = int(a.chunk_mb * MIB)
    cap, limit_mib = line_cap(chunk), a.limit * a.chunk_mb
    print(f"chunk {a.chunk_mb:g} MiB, line cap {cap:,} lines, limit {a.limit:g}x = {limit_mib:g} MiB")
    cols = ("input", "file MiB", "chunks", "largest", "lines", "rows", "rejects", "s", "peak MiB", "x chunk")
    widths = (20, 9, 7, 9, 9, 9, 9, 6, 9, 8)
    # No zip(strict=): the RUN12 test runs this script on Python 3.9 too.
    print(" ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cols)))
    over = []
    for name, data in inputs(header, chunk).items():
        if a.only and name not in a.only:
            continue
        plan = plan_chunks([data], len(header), len(data), chunk, 16 * MIB, max_lines=line_cap(chunk))
        big = max(plan, key=lambda c: (data.count(b"\n", c.start, c.end), c.end - c.start))
        with tempfile.NamedTemporaryFile(dir=HERE, suffix=".csv", delete=False) as fh:
            fh.write(header + data[big.start : big.end])
            path = fh.name
        try:
            out = subprocess.run(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--worker",
                    path,
                    "--first-line",
                    str(big.first_line),
                ],
                check=True,
                capture_output=True,
                text=True,
                cwd=ROOT,
                env={**os.environ, **RUNTIME_ENV},
            )
        finally:
            os.unlink(path)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        ratio = res["peak_rss"] / chunk
        lines = data.count(b"\n", big.start, big.end)
        print(
            f"{name:<20} {len(data) / MIB:>9.1f} {len(plan):>7} {(big.end - big.start) / MIB:>8.2f}M "
            f"{lines:>9,} {res['rows_in']:>9,} {res['rows_rejected']:>9,} {res['seconds']:>6.2f} "
            f"{res['peak_rss'] / MIB:>9.0f} {ratio:>8.2f}"
        )
        if ratio > a.limit:
            over.append(name)
    if over:
        print(f"RUN12 NOT MET: peak above {a.limit:g}x chunk for {', '.join(over)}")
        return 1
    print(f"RUN12 met: every input's peak is within {a.limit:g}x chunk")
    return 0


if __name__ == "__main__":
    sys.exit(main())
