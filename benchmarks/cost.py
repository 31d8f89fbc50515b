"""PERF3: cost per GB of input on AWS, from measured durations and the workflow's request counts.

Printed by bench_chunk_function.py from its measurements (the whole chunk function's time, the
objects and bytes it writes); alone: ``python benchmarks/cost.py --process-seconds 1.3
--parquet-share 0.8 --put-share 1.1 --puts-per-chunk 14 --init-seconds 0.58``. Every price
below is a public list price for us-east-1 (N. Virginia), stated with the date it was taken;
check the AWS pricing pages before relying on the result. Free tiers are ignored (a production
account outgrows them).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass

PRICES_AS_OF = "2025-11 (AWS public price pages, us-east-1; free tiers ignored)"


@dataclass(frozen=True)
class Prices:
    lambda_gb_second_x86: float = 0.0000166667  # USD per GB-second, x86, first 6B GB-s/month
    lambda_request: float = 0.20 / 1_000_000  # USD per invocation
    sfn_standard_transition: float = 0.025 / 1000  # USD per state transition (Standard)
    s3_get: float = 0.0004 / 1000  # USD per GET (S3 Standard)
    s3_put_copy: float = 0.005 / 1000  # USD per PUT/COPY/POST/LIST (S3 Standard)
    ddb_write_request: float = 0.625 / 1_000_000  # USD per on-demand write request unit (Nov 2024 price)
    ddb_read_request: float = 0.125 / 1_000_000  # USD per on-demand read request unit
    sqs_fifo_request: float = 0.50 / 1_000_000  # USD per FIFO request (64 KB)
    s3_standard_gb_month: float = 0.023  # USD per GB-month, S3 Standard, first 50 TB
    s3_glacier_gb_month: float = 0.0036  # USD per GB-month, S3 Glacier Flexible Retrieval


@dataclass(frozen=True)
class Workload:
    file_gb: float = 1.0  # input size (GiB)
    chunk_mib: float = 50.0
    memory_mb: int = 3072  # every function: 3 GB (about 2 vCPUs)
    process_seconds_per_chunk: float = 1.0  # measured by bench_process.py
    register_seconds: float = 0.15
    validate_header_seconds: float = 0.2
    plan_seconds_per_gb: float = 4.0  # S3 ranged reads bound the scan (PERF1 scan itself >= 1 GB/s)
    finalize_seconds: float = 0.6
    read_block_mib: float = 8.0  # ranged GET size used by iter_blocks / chunk reads
    # S3 transfer inside each chunk function (GET the chunk, PUT Parquet + rejects), billed as
    # Lambda time: an assumed per-function throughput (not measured here: no AWS account).
    s3_mb_per_s: float = 100.0
    # Bytes the chunk function leaves in S3 Standard per input byte (the chunk's Parquet and
    # rejects, the Iceberg data files), bytes it PUTs per input byte (those + the scratch id
    # list), and objects it PUTs per chunk: measured by bench_chunk_function.py.
    parquet_share: float = 0.35
    put_share: float = 0.0  # 0: same as parquet_share
    puts_per_chunk: int = 2  # Parquet + rejects (bench_chunk_function.py measures the real count)
    # Cold starts: AWS bills the INIT phase since 2025-08-01. The Map runs up to map_concurrency
    # chunk functions at once, each cold on a file's first burst; the 4 other functions too.
    init_seconds: float = 0.4  # measured by benchmarks/bench_init.py (PERF4 target)
    map_concurrency: int = 10
    cold_share: float = 1.0  # share of those functions that start cold (1 = a daily file)
    # Storage a file leaves behind (infra/storage.py): the input is archived under processed/
    # (S3 Standard for 30 days, then Glacier), the move leaves the incoming/ object as a
    # noncurrent version for 30 days; the Parquet outputs stay in S3 Standard (Iceberg data).
    archive_standard_days: int = 30
    noncurrent_days: int = 30


def estimate(w: Workload, p: Prices | None = None) -> dict:
    """Cost breakdown (USD) for one file of ``w.file_gb`` GiB, and per GiB."""
    p = p or Prices()
    size_mib = w.file_gb * 1024
    n = max(1, math.ceil(size_mib / w.chunk_mib))
    gb_mem = w.memory_mb / 1024
    chunk_mb = size_mib * 1.048576 / n  # MB (10^6) per chunk
    transfer_per_chunk = chunk_mb * (1 + (w.put_share or w.parquet_share)) / w.s3_mb_per_s
    cold_starts = w.cold_share * (min(n, w.map_concurrency) + 4)
    init_total = cold_starts * w.init_seconds
    seconds = (
        w.register_seconds
        + w.validate_header_seconds
        + w.plan_seconds_per_gb * w.file_gb
        + n * (w.process_seconds_per_chunk + transfer_per_chunk)
        + w.finalize_seconds
        + init_total
    )
    invocations = n + 4  # RegisterFile, ValidateHeader, PlanChunks, N x ProcessChunk, Finalize
    # Standard workflow transitions on the success path: RegisterFile, IsDuplicate, ValidateHeader,
    # PlanChunks, ProcessChunks (Map), N x ProcessChunk, Finalize, NotifyResult, FileSucceeded.
    transitions = 8 + n
    gets_per_chunk = math.ceil(w.chunk_mib / w.read_block_mib)
    s3_gets = 1 + math.ceil(size_mib / w.read_block_mib) + n * gets_per_chunk  # header, plan scan, chunks
    # Per chunk: its objects (bench_chunk_function.py); per file: manifest, COPY to processed/,
    # and Finalize's Iceberg commit of the two tables (metadata JSON, manifest list, manifest).
    s3_puts = n * w.puts_per_chunk + 2 + 2 * 3
    # Status table: register (1), file status updates (~5), chunk items put (N), start (N), complete (N).
    ddb_writes = 6 + 3 * n
    ddb_reads = 4 + math.ceil(n * 0.5 / 4)  # get_file calls + list_chunks (~0.5 KB per item)
    parts = {
        "lambda_compute": seconds * gb_mem * p.lambda_gb_second_x86,
        "lambda_requests": invocations * p.lambda_request,
        "step_functions": transitions * p.sfn_standard_transition,
        "s3_get": s3_gets * p.s3_get,
        "s3_put_copy": s3_puts * p.s3_put_copy,
        "dynamodb_writes": ddb_writes * p.ddb_write_request,
        "dynamodb_reads": ddb_reads * p.ddb_read_request,
        "sqs_fifo": 1 * p.sqs_fifo_request,
    }
    total = sum(parts.values())
    gb = w.file_gb * 1.073741824  # GiB -> GB (S3 bills GB-months)
    month = 30.0
    first_month = (
        gb * min(w.archive_standard_days, month) / month * p.s3_standard_gb_month
        + gb * max(month - w.archive_standard_days, 0) / month * p.s3_glacier_gb_month
        + gb * min(w.noncurrent_days, month) / month * p.s3_standard_gb_month
        + gb * w.parquet_share * p.s3_standard_gb_month
    )
    later_month = gb * p.s3_glacier_gb_month + gb * w.parquet_share * p.s3_standard_gb_month
    return {
        "transfer_seconds_per_chunk": transfer_per_chunk,
        "cold_starts": cold_starts,
        "init_seconds_total": init_total,
        "storage_first_month_usd": first_month,
        "storage_later_month_usd": later_month,
        "workload": asdict(w),
        "prices": asdict(p),
        "prices_as_of": PRICES_AS_OF,
        "chunks": n,
        "lambda_seconds": seconds,
        "lambda_gb_seconds": seconds * gb_mem,
        "invocations": invocations,
        "state_transitions": transitions,
        "s3_gets": s3_gets,
        "s3_puts_copies": s3_puts,
        "dynamodb_writes": ddb_writes,
        "dynamodb_reads": ddb_reads,
        "cost_usd": parts,
        "total_usd": total,
        "usd_per_gib": total / w.file_gb,
    }


def format_report(e: dict) -> str:
    w = e["workload"]
    lines = [
        f"PERF3 cost estimate: one {w['file_gb']:g} GiB file, {e['chunks']} chunks of "
        f"{w['chunk_mib']:g} MiB, Lambda {w['memory_mb']} MB x86",
        f"  prices: {e['prices_as_of']}",
        "    Lambda $0.0000166667/GB-s, $0.20/M requests; Step Functions Standard $0.025/1000 transitions;",
        "    S3 GET $0.0004/1000, PUT/COPY $0.005/1000; DynamoDB on-demand $0.625/M writes, $0.125/M reads;",
        "    SQS FIFO $0.50/M; S3 Standard $0.023/GB-month, Glacier Flexible Retrieval $0.0036/GB-month",
        f"  measured chunk processing: {w['process_seconds_per_chunk']:.3f} s per chunk",
        f"  Lambda: {e['lambda_seconds']:.1f} s total = {e['lambda_gb_seconds']:.1f} GB-s, "
        f"{e['invocations']} invocations",
        f"  Step Functions: {e['state_transitions']} transitions; S3: {e['s3_gets']} GET, "
        f"{e['s3_puts_copies']} PUT/COPY; DynamoDB: {e['dynamodb_writes']} writes, "
        f"{e['dynamodb_reads']} reads",
    ]
    lines.insert(
        -2,
        f"  inside each chunk function: {w['process_seconds_per_chunk']:.3f} s processing + "
        f"{e['transfer_seconds_per_chunk']:.3f} s S3 transfer (GET chunk, PUT "
        f"{w['puts_per_chunk']} objects at "
        f"{w['s3_mb_per_s']:g} MB/s, assumed); {e['cold_starts']:.0f} cold starts x "
        f"{w['init_seconds']:.3f} s init (billed since 2025-08) = {e['init_seconds_total']:.1f} s",
    )
    for k, v in e["cost_usd"].items():
        lines.append(f"    {k:16s} ${v:.6f}")
    lines.append(
        f"  total ${e['total_usd']:.5f} per file = ${e['usd_per_gib']:.5f} per GiB of input (processing)"
    )
    lines.append(
        f"  storage the file leaves behind: ${e['storage_first_month_usd']:.5f} in its first month "
        f"(archive + noncurrent copy in Standard, outputs {w['parquet_share']:.2f}x the input), then "
        f"${e['storage_later_month_usd']:.5f} per month (archive in Glacier, outputs in Standard)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--process-seconds", type=float, required=True, help="measured seconds per chunk")
    ap.add_argument("--file-gb", type=float, default=1.0)
    ap.add_argument("--chunk-mib", type=float, default=50.0)
    ap.add_argument(
        "--init-seconds", type=float, default=Workload.init_seconds, help="measured init (bench_init)"
    )
    ap.add_argument("--parquet-share", type=float, default=Workload.parquet_share)
    ap.add_argument("--put-share", type=float, default=Workload.put_share, help="bytes PUT / input bytes")
    ap.add_argument("--puts-per-chunk", type=int, default=Workload.puts_per_chunk)
    ap.add_argument("--s3-mb-per-s", type=float, default=Workload.s3_mb_per_s)
    a = ap.parse_args(argv)
    w = Workload(
        file_gb=a.file_gb,
        chunk_mib=a.chunk_mib,
        process_seconds_per_chunk=a.process_seconds,
        init_seconds=a.init_seconds,
        parquet_share=a.parquet_share,
        put_share=a.put_share,
        puts_per_chunk=a.puts_per_chunk,
        s3_mb_per_s=a.s3_mb_per_s,
    )
    print(format_report(estimate(w)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
