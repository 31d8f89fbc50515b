#!/usr/bin/env python3
"""DATA3 measurement: how much of the ``transactions`` table a one-partner, one-day query plans.

Builds the table through the real code path (``process_chunk`` -> ``write_data_files`` ->
``etl.aws.catalog.publish``; Glue and S3 are ``moto.mock_aws`` in this process), from
``--days`` daily files for each of ``--partners`` partners. Each daily file has realistic
dates: most rows on the previous business day, ``--late-share`` of them 2-6 business days
earlier (late rows). Then pyiceberg's scan planning for ``partner = P AND transaction_date = D``
reports data files planned / total and the rows in the planned files / total rows; and the
same for a partner-only and a day-only query.

Usage: .venv/bin/python benchmarks/bench_layout.py [--days 30] [--partners 3] [--rows 20000]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def business_days_before(day: datetime.date, n: int) -> datetime.date:
    d = day
    while n:
        d -= datetime.timedelta(days=1)
        if d.weekday() < 5:
            n -= 1
    return d


def daily_csv(rows: int, seed: int, delivery: datetime.date, late_share: float) -> bytes:
    """A generated file (etl_local.datagen) with its dates set like a real daily export."""
    from etl_local.datagen import generate_csv

    buf = io.BytesIO()
    generate_csv(buf, rows=rows, seed=seed, bad_row_share=0.0)
    rng = random.Random(seed)
    reader = csv.reader(io.StringIO(buf.getvalue().decode(), newline=""))
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    header = next(reader)
    w.writerow(header)
    col = header.index("transaction_date")
    main = business_days_before(delivery, 1)
    for rec in reader:
        late = rng.random() < late_share
        rec[col] = (business_days_before(delivery, rng.randint(2, 6)) if late else main).isoformat()
        w.writerow(rec)
    return out.getvalue().encode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--partners", type=int, default=3)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--late-share", type=float, default=0.02)
    args = ap.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        os.environ.pop(name, None)
    import boto3
    from moto import mock_aws
    from pyiceberg.expressions import And

    from etl.aws import catalog, clients
    from etl.core import dataset
    from etl.core.process import process_chunk
    from etl.core.schema import load_schema
    from etl.handlers.process_chunk import write_data_files

    bucket, db = "bench-layout", "bench"
    schema = load_schema("default")
    with mock_aws():
        clients.reset_clients()
        boto3.client("s3").create_bucket(Bucket=bucket)
        boto3.client("glue").create_database(DatabaseInput={"Name": db})
        catalog.ensure_tables(db, dataset.warehouse(bucket))
        first = datetime.date(2026, 10, 1)
        deliveries: list[datetime.date] = []
        d = first
        while len(deliveries) < args.days:
            if d.weekday() < 5:
                deliveries.append(d)
            d += datetime.timedelta(days=1)
        t0 = time.monotonic()
        n_files = 0
        for p in range(args.partners):
            partner = f"partner{p}"
            for i, day in enumerate(deliveries):
                data = daily_csv(args.rows, seed=1000 * p + i, delivery=day, late_share=args.late_share)
                result = process_chunk(data, schema, 2)
                key = f"incoming/{partner}/{day.isoformat()}.csv"
                file = {
                    "file_id": f"{partner}-{day.isoformat()}",
                    "partner": partner,
                    "key": key,
                    "original_key": key,
                }
                keys, _ = write_data_files(bucket, file, 1, result)
                catalog.publish(db, "transactions", bucket, keys, dataset.lineage_of(file), None, None)
                n_files += 1
        build_s = time.monotonic() - t0
        table = catalog.load_catalog().load_table(f"{db}.transactions")
        all_tasks = list(table.scan().plan_files())
        total_files = len(all_tasks)
        total_rows = sum(t.file.record_count for t in all_tasks)
        sizes = sorted(t.file.file_size_in_bytes for t in all_tasks)
        target_day = business_days_before(deliveries[len(deliveries) // 2], 1)

        def plan(expr: object) -> tuple[int, int, float]:
            t = time.monotonic()
            tasks = list(table.scan(row_filter=expr).plan_files())
            return len(tasks), sum(x.file.record_count for x in tasks), time.monotonic() - t

        queries = {
            f"partner = 'partner0' AND transaction_date = '{target_day}'": And(
                dataset.equal_to("partner", "partner0"),
                dataset.equal_to("transaction_date", target_day.isoformat()),
            ),
            "partner = 'partner0'": dataset.equal_to("partner", "partner0"),
            f"transaction_date = '{target_day}'": dataset.equal_to(
                "transaction_date", target_day.isoformat()
            ),
        }
        print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.1f}")
        print(
            f"{n_files} daily files ({args.partners} partners x {args.days} business days, {args.rows} rows, "
            f"{args.late_share:.0%} late) -> {total_files} data files, {total_rows} rows; "
            f"built in {build_s:.0f} s"
        )
        print(f"data file size: median {sizes[len(sizes) // 2]:,} B, min {sizes[0]:,} B, max {sizes[-1]:,} B")
        for text, expr in queries.items():
            files, rows, secs = plan(expr)
            print(
                f"{text}: {files}/{total_files} files ({files / total_files:.1%}), "
                f"{rows}/{total_rows} rows ({rows / total_rows:.1%}), planned in {secs * 1000:.0f} ms"
            )


if __name__ == "__main__":
    main()
