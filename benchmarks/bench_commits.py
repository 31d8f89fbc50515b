#!/usr/bin/env python3
"""SPEC TBL6: the commit-time curve of one table over many loads.

Loads ``--commits`` small files (``--rows`` rows, one transaction date each, partners taking
turns, every ``--correct-every``-th file a new version of an earlier key, so its commit also
deletes) into ``transactions`` through the product's commit path
(``etl.aws.catalog.publish``; Glue and S3 are ``moto.mock_aws`` in this process, as in
bench_layout.py), timing each commit, and prints the median commit time over a window around
commits #10, #100, #500 and #N, what grew (metadata.json bytes, snapshots, manifests in the
current snapshot) and the verdict "Nth within 2x of the 10th".

``--no-merge`` switches manifest merging off (fast-append: one more manifest per commit);
``--expire-every K`` runs the scheduled maintenance's snapshot expiry
(``etl.aws.maintenance.expire_snapshots``, keeping the newest ``--keep`` snapshots) every K
commits, as the daily schedule would over a busy day.

Usage: .venv/bin/python benchmarks/bench_commits.py [--commits 1000] [--no-merge] [--expire-every 100]
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARTNERS = 5


def small_file(
    rows: int, n: int, day: datetime.date, partner: str, key: str, version: str
) -> tuple[str, bytes]:
    """One data file as ProcessChunk writes it: ``rows`` rows of one date, lineage columns set."""
    import numpy as np
    import pyarrow as pa

    from etl.core import dataset

    lineage = dataset.Lineage(file_id=f"f{n:05d}", partner=partner, source_key=key, source_version=version)
    valid = pa.table(
        {
            "transaction_id": pa.array([f"t{n:05d}-{i:04d}" for i in range(rows)]),
            "account_id": pa.array([f"acct{i % 7}" for i in range(rows)]),
            "transaction_date": pa.array([day] * rows, pa.date32()),
            "posted_at": pa.array(
                [datetime.datetime(day.year, day.month, day.day, 12, tzinfo=datetime.UTC)] * rows,
                pa.timestamp("us", tz="UTC"),
            ),
            "amount": pa.array([f"{i}.25" for i in range(rows)]).cast(pa.decimal128(18, 2)),
            "currency": pa.array(["EUR"] * rows),
            "transaction_type": pa.array(["debit"] * rows),
        }
    )
    table = dataset.transactions_table(valid, np.arange(2, rows + 2), lineage)
    ((_, part),) = dataset.split_by_date(table)
    return lineage.file_id, dataset.data_file_bytes(part)


def window_median(times: list[float], at: int, width: int) -> float:
    """Median of the commit times of commits ``at - width/2 .. at + width/2`` (1-based), clipped
    to the run."""
    lo = max(0, at - 1 - width // 2)
    hi = min(len(times), lo + width)
    lo = max(0, hi - width)
    return statistics.median(times[lo:hi])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commits", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--correct-every", type=int, default=20)
    ap.add_argument("--no-merge", action="store_true")
    ap.add_argument("--expire-every", type=int, default=0)
    ap.add_argument("--keep", type=int, default=100)
    args = ap.parse_args()

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM stops the run early and still reports (SIGINT is ignored in background jobs).
    signal.signal(signal.SIGTERM, stop)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        os.environ.pop(name, None)
    import boto3
    from moto import mock_aws

    from etl.aws import catalog, clients, maintenance
    from etl.core import dataset

    bucket, db = "bench-commits", "bench"
    ident = f"{db}.transactions"
    with mock_aws():
        clients.reset_clients()
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=bucket)
        boto3.client("glue").create_database(DatabaseInput={"Name": db})
        cat = catalog.load_catalog(dataset.warehouse(bucket))
        catalog.ensure_tables(db, dataset.warehouse(bucket), cat)
        if args.no_merge:
            cat.load_table(ident).transaction().set_properties(
                {"commit.manifest-merge.enabled": "false"}
            ).commit_transaction()
        first_day = datetime.date(2026, 1, 1)
        times: list[float] = []
        cpu: list[float] = []
        growth: list[tuple[int, int, int, int]] = []
        expired = 0
        try:
            for n in range(1, args.commits + 1):
                partner = f"partner{n % PARTNERS}"
                correction = args.correct_every and n % args.correct_every == 0 and n > PARTNERS
                # A correction re-delivers the key of the same partner's previous file.
                key_n = n - PARTNERS if correction else n
                key = f"incoming/{partner}/file-{key_n:05d}.csv"
                day = first_day + datetime.timedelta(days=n // PARTNERS)
                file_id, body = small_file(args.rows, n, day, partner, key, f"v{n}")
                data_key = dataset.transactions_data_key(file_id, 1, day.isoformat())
                s3.put_object(Bucket=bucket, Key=data_key, Body=body)
                lineage = dataset.Lineage(file_id, partner, key, f"v{n}")
                t0, c0 = time.perf_counter(), time.process_time()
                published = catalog.publish(
                    db, "transactions", bucket, [data_key], lineage, None, f"exec-{n}", cat
                )
                times.append(time.perf_counter() - t0)
                # CPU time of this process (client, pyiceberg and the in-process moto server alike):
                # the curve that does not depend on what else the machine runs.
                cpu.append(time.process_time() - c0)
                if published.added_rows != args.rows:
                    raise SystemExit(f"commit {n}: {published.added_rows} rows added, expected {args.rows}")
                if args.expire_every and n % args.expire_every == 0:
                    expired += maintenance.expire_snapshots(cat, ident, retention_seconds=0, keep=args.keep)[
                        1
                    ]
                if n % 100 == 0:
                    wall, busy = statistics.median(times[-10:]) * 1000, statistics.median(cpu[-10:]) * 1000
                    print(
                        f"... {n} commits, last 10: {wall:.0f} ms wall, {busy:.0f} ms CPU",
                        file=sys.stderr,
                        flush=True,
                    )
                if n in (10, 500) or n % 100 == 0:
                    table = cat.load_table(ident)
                    md_bytes = s3.head_object(
                        Bucket=bucket, Key=table.metadata_location.split(f"{bucket}/", 1)[1]
                    )["ContentLength"]
                    manifests = len(table.current_snapshot().manifests(table.io))
                    growth.append((n, md_bytes, len(table.metadata.snapshots), manifests))
        except KeyboardInterrupt:
            # Stopped early (SIGINT, when the machine is too busy for the whole run): the
            # curve up to the last commit done.
            print(f"... interrupted after {len(times)} commits", file=sys.stderr, flush=True)
        done = len(times)
        if not growth or growth[-1][0] != done:
            table = cat.load_table(ident)
            md_key = table.metadata_location.split(f"{bucket}/", 1)[1]
            md_bytes = s3.head_object(Bucket=bucket, Key=md_key)["ContentLength"]
            growth.append(
                (
                    done,
                    md_bytes,
                    len(table.metadata.snapshots),
                    len(table.current_snapshot().manifests(table.io)),
                )
            )

        print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.1f}")
        print(
            f"{done} commits of {args.rows}-row files, manifest merge "
            f"{'off' if args.no_merge else 'on'}, expiry "
            f"{f'every {args.expire_every} commits keeping {args.keep}' if args.expire_every else 'off'}"
            f" ({expired} snapshots expired); total {sum(times):.0f} s"
        )
        marks = [m for m in (10, 100, 500, done) if m <= done]
        for m in marks:
            print(
                f"commit #{m}: median {window_median(times, m, args.window) * 1000:.0f} ms wall, "
                f"{window_median(cpu, m, args.window) * 1000:.0f} ms CPU (window {args.window})"
            )
        for n, md_bytes, snaps, manifests in growth:
            print(f"after {n}: metadata.json {md_bytes:,} B, {snaps} snapshots, {manifests} manifests")
        for label, series in (("wall", times), ("CPU", cpu)):
            ratio = window_median(series, done, args.window) / window_median(series, 10, args.window)
            verdict = "MET" if ratio <= 2 else "MISSED"
            print(
                f"{label}: #{done} / #10 = {ratio:.2f}: {verdict} "
                f"(target: the {done}th within 2x of the 10th)"
            )


if __name__ == "__main__":
    main()
