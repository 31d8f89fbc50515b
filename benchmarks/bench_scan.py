#!/usr/bin/env python3
"""PERF1 benchmark: quote-aware boundary scan (``plan_chunks``) throughput on local input.

Generates (seeded, once) a realistic transaction CSV of ``--size-gb`` GB under
``benchmarks/data/`` (gitignored) -- ~10% of rows carry a quoted description with commas,
doubled quotes and embedded newlines -- then:

1. reads the whole file into RAM as 8 MiB ``bytes`` blocks (untimed), so neither the disk nor
   the page cache is measured, and times ``plan_chunks`` over those blocks with a 50 MiB chunk
   size (best and median of ``--repeat`` runs);
2. times the same scan fed straight from the file with ``readinto`` (page cache; informational);
3. times a naive baseline in the same run: Python's ``csv`` module parsing the first
   ``--baseline-mb`` MB (in RAM), reported as MB/s and as the ratio to the scan.

The scan is timed twice per round, interleaved (plain, then with the DATA4 content digest
hashed on worker threads beside it, as PlanChunks runs it), so machine load hits both alike;
the cost of the digest is reported as the ratio of the medians.

It also checks the plan it measured: every cut follows an LF and the chunks tile the data.

Usage: .venv/bin/python benchmarks/bench_scan.py [--size-gb 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from etl.core.boundaries import plan_chunks  # noqa: E402
from etl.core.content import ContentHasher, hashing  # noqa: E402

MIB = 1024 * 1024
HEADER = (
    "transaction_id,account_id,transaction_date,posted_at,amount,currency,transaction_type,"
    "merchant_name,merchant_category_code,description\n"
)
MERCHANTS = [
    "ACME Corp",
    "Blue Bottle Coffee",
    '"Smith, Jones & Co"',
    "Northwind Traders",
    '"Café ""Le Petit"""',
    "Globex",
    "Initech",
    '"Wayne Enterprises, Inc."',
    "Umbrella",
    "Stark Industries",
]
CURRENCIES = ["USD", "EUR", "GBP", "CHF", "JPY", "CAD"]
TYPES = ["DEBIT", "CREDIT", "FEE", "REFUND"]
WORDS = ["card", "payment", "online", "transfer", "monthly", "fee", "refund", "grocery", "fuel", "travel"]


def make_rows(rng: random.Random, target_bytes: int) -> bytes:
    """Rows of realistic data, ending with a newline, about ``target_bytes`` long."""
    out: list[str] = []
    size = 0
    n = rng.randrange(10**9)
    while size < target_bytes:
        n += 1
        month, day = rng.randint(1, 12), rng.randint(1, 28)
        words = " ".join(rng.choices(WORDS, k=rng.randint(2, 6)))
        r = rng.random()
        if r < 0.04:
            desc = f'"{words}, ref {n}\nsecond line: ""{rng.choice(WORDS)}"""'
        elif r < 0.07:
            desc = f'"{words}, {rng.choice(WORDS)}, {rng.choice(WORDS)}"'
        elif r < 0.10:
            desc = f'"note:\r\n{words}\r\n""quoted"" end"'
        else:
            desc = words
        row = (
            f"TXN{n:012d},ACC{rng.randrange(10**10):010d},2024-{month:02d}-{day:02d},"
            f"2024-{month:02d}-{day:02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z,"
            f"{'-' if rng.random() < 0.3 else ''}{rng.randint(0, 99999)}.{rng.randint(0, 99):02d},"
            f"{rng.choice(CURRENCIES)},{rng.choice(TYPES)},{rng.choice(MERCHANTS)},"
            f"{rng.randint(1000, 9999)},{desc}\n"
        )
        out.append(row)
        size += len(row)
    return "".join(out).encode("utf-8")


def record_prefix(piece: bytes, limit: int) -> bytes:
    """The longest prefix of whole records not longer than ``limit`` (piece starts at a record)."""
    cut = piece.rfind(b"\n", 0, limit)
    while cut >= 0 and piece.count(b'"', 0, cut) % 2:  # LF inside quotes: not a record end
        cut = piece.rfind(b"\n", 0, cut)
    return piece[: cut + 1]


def generate(path: Path, size: int, seed: int) -> None:
    """Write about ``size`` bytes: 4 distinct 16 MiB pieces of rows in a seeded random order."""
    rng = random.Random(seed)
    t0 = time.perf_counter()
    pieces = [make_rows(random.Random(seed * 100 + i), 16 * MIB) for i in range(4)]
    tmp = path.with_suffix(".tmp")
    written = 0
    with open(tmp, "wb") as f:
        f.write(HEADER.encode())
        written += len(HEADER)
        while written < size:
            piece = pieces[rng.randrange(len(pieces))]
            if written + len(piece) > size:
                piece = record_prefix(piece, size - written)
                if not piece:
                    break
            f.write(piece)
            written += len(piece)
    os.replace(tmp, path)
    print(f"generated {path} ({written / 1e9:.3f} GB) in {time.perf_counter() - t0:.1f} s")


def preload(path: Path, block: int) -> list[bytes]:
    blocks = []
    with open(path, "rb") as f:
        while chunk := f.read(block):
            blocks.append(chunk)
    return blocks


def read_blocks(path: Path, block: int):
    buf = bytearray(block)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            yield bytes(view[:n])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=2.0, help="input size in GB (10^9 bytes), default 2")
    ap.add_argument("--chunk-mb", type=float, default=50, help="chunk size in MiB, default 50")
    ap.add_argument("--block-mb", type=float, default=8, help="read block size in MiB, default 8")
    ap.add_argument("--max-record-mb", type=float, default=16, help="max record size in MiB, default 16")
    ap.add_argument(
        "--baseline-mb", type=float, default=200, help="csv-module baseline prefix, default 200 MB"
    )
    ap.add_argument("--repeat", type=int, default=3, help="timed scans, default 3")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "benchmarks" / "data")
    ap.add_argument("--regenerate", action="store_true", help="rewrite the input file")
    args = ap.parse_args()

    size = int(args.size_gb * 1e9)
    chunk, block = int(args.chunk_mb * MIB), int(args.block_mb * MIB)
    max_record = int(args.max_record_mb * MIB)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    path = args.data_dir / f"transactions_{args.size_gb:g}gb_seed{args.seed}.csv"
    # The file is trimmed to whole records, so it is up to one row shorter than asked for.
    if args.regenerate or not path.exists() or path.stat().st_size < size - MIB:
        generate(path, size, args.seed)
    else:
        print(f"reusing {path}")
    total = path.stat().st_size
    data_start = len(HEADER)

    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    print(f"input {total / 1e9:.3f} GB, blocks {block / MIB:g} MiB, chunk {chunk / MIB:g} MiB")

    t0 = time.perf_counter()
    blocks = preload(path, block)
    print(f"preloaded {len(blocks)} blocks into RAM in {time.perf_counter() - t0:.1f} s (not timed)")

    times: list[float] = []
    dtimes: list[float] = []
    plan = []
    digest = ""
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        plan = plan_chunks(iter(blocks), data_start, total, chunk, max_record)
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        hasher = ContentHasher()
        dplan = plan_chunks(hashing(iter(blocks), hasher), data_start, total, chunk, max_record)
        digest = hasher.hexdigest()
        dtimes.append(time.perf_counter() - t0)
        assert dplan == plan
    best, median = min(times), statistics.median(times)
    dmedian = statistics.median(dtimes)
    t0 = time.perf_counter()
    h1 = ContentHasher(workers=0)
    for b in blocks:
        h1.update(b)
    assert h1.hexdigest() == digest
    digest_alone = time.perf_counter() - t0

    # Check what was measured: exact tiling, and every cut right after an LF.
    assert plan[0].start == data_start and plan[-1].end == total
    assert all(a.end == b.start for a, b in itertools.pairwise(plan))
    offset, k = 0, 0
    for c in plan[1:]:
        while offset + len(blocks[k]) < c.start:
            offset += len(blocks[k])
            k += 1
        assert blocks[k][c.start - 1 - offset] == 0x0A
    sizes = [c.end - c.start for c in plan]
    del blocks

    t0 = time.perf_counter()
    plan2 = plan_chunks(read_blocks(path, block), data_start, total, chunk, max_record)
    with_reads = time.perf_counter() - t0
    assert plan2 == plan

    base_bytes = min(total, int(args.baseline_mb * 1e6))
    with open(path, "rb") as f:
        prefix = f.read(base_bytes)
    prefix = prefix[: prefix.rfind(b"\n") + 1]
    t0 = time.perf_counter()
    rows = sum(1 for _ in csv.reader(io.StringIO(prefix.decode("utf-8"), newline="")))
    base_t = time.perf_counter() - t0
    base_rate = len(prefix) / base_t

    print()
    print("PERF1 boundary scan (plan_chunks, input preloaded in RAM):")
    print(f"  runs: {', '.join(f'{t:.3f}' for t in times)} s")
    print(f"  best   {total / best / 1e9:6.2f} GB/s   ({best:.3f} s for {total / 1e9:.3f} GB)")
    print(f"  median {total / median / 1e9:6.2f} GB/s")
    print(
        f"  plan: {len(plan)} chunks, {min(sizes) / MIB:.1f}..{max(sizes) / MIB:.1f} MiB, "
        f"first_line of last chunk {plan[-1].first_line}"
    )
    print("PERF1 scan + DATA4 content digest (same runs, interleaved with the plain scan):")
    print(f"  runs: {', '.join(f'{t:.3f}' for t in dtimes)} s")
    print(f"  median {total / dmedian / 1e9:6.2f} GB/s   cost: x{dmedian / median:.2f} the plain scan's time")
    print(f"  (digest alone on one thread: {total / digest_alone / 1e9:.2f} GB/s; {digest[:16]}...)")
    print(f"Scan fed from the file (readinto, page cache): {total / with_reads / 1e9:.2f} GB/s")
    print(
        f"Baseline csv.reader over first {len(prefix) / 1e6:.0f} MB ({rows} records, decode included): "
        f"{base_rate / 1e6:.1f} MB/s -> scan is {total / median / base_rate:.0f}x faster (median)"
    )
    verdict = "PASS" if total / dmedian >= 1e9 else "FAIL"
    print(
        f"PERF1 target >= 1 GB/s: {verdict} (median {total / median / 1e9:.2f} GB/s plain, "
        f"{total / dmedian / 1e9:.2f} GB/s with the content digest, as PlanChunks runs)"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
