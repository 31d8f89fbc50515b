"""Seeded randomized schedules against the local stack (SPEC TBL4; `make chaos`).

A schedule, all drawn from one seed: a few fault points armed (each fires once per file), then
phase 1, new files uploaded together (clean ones, noisy ones the reject threshold fails, one
with a header the schema refuses, byte-identical copies); phase 2, corrections of phase-1 keys
uploaded together with forced reprocesses of DUPLICATE_CONTENT files and reprocesses of FAILED
ones; sometimes two corrections of one key race (TBL5: the later registration is the live
version; the earlier one, if it finishes last, must not replace it). After each phase every file
must be terminal and the invariants (tests/e2e/invariants.py) must hold.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.core.identity import file_id_for
from etl_local import faults
from etl_local.datagen import generate_csv

from .invariants import checker_for

POINTS = sorted(faults.ALL_POINTS)


@dataclass
class Outcome:
    seed: int
    armed: list[str]
    files: int = 0
    faults_fired: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def line(self) -> str:
        status = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        return (
            f"seed {self.seed}: {self.files} files ({status}), faults armed {self.armed or 'none'}, "
            f"fired {self.faults_fired}, violations {len(self.violations)}"
        )


def _parallel(jobs: list[Callable[[], Any]]) -> list[Any]:
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = jobs[i]()
        except BaseException as exc:  # surfaced below, with every other job finished
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def run_schedule(stack: Any, tmp: Path, seed: int, timeout: float = 300.0) -> Outcome:
    rng = random.Random(seed)
    armed = sorted(rng.sample(POINTS, rng.randint(1, 3)))
    faults.arm(armed)
    out = Outcome(seed, armed)
    checker = checker_for(stack)
    n = 0

    def make(kind: str) -> Path:
        nonlocal n
        n += 1
        path = tmp / f"s{seed}-{n}.csv"
        bad = {"clean": 0.002, "noisy": 0.05}.get(kind, 0.002)
        generate_csv(path, rows=rng.randint(300, 1200), seed=rng.randint(0, 10**6), bad_row_share=bad)
        if kind == "header":
            path.write_bytes(path.read_bytes().replace(b"currency", b"ccy", 1))
        return path

    def upload_and_wait(path: Path, name: str) -> Any:
        # The version id from the PUT itself: two racing uploads of one key each know theirs.
        key = f"incoming/default/{name}"
        put = stack.s3.put_object(Bucket=stack.outputs.bucket, Key=key, Body=path.read_bytes())
        version = put.get("VersionId")
        file_id = file_id_for(key, None if version in (None, "null") else version, put.get("ETag"))
        return stack.wait(file_id, timeout=timeout)

    # Phase 1: new keys together.
    kinds = ["clean"] * rng.randint(2, 4) + ["noisy"] * rng.randint(0, 1) + ["header"] * rng.randint(0, 1)
    files = [(make(k), f"s{seed}-key{i}.csv", k) for i, k in enumerate(kinds)]
    copies = [(files[0][0], f"s{seed}-copy.csv", "copy")] if rng.random() < 0.5 else []
    first = _parallel([lambda p=p, name=name: upload_and_wait(p, name) for p, name, _ in files + copies])
    out.violations += [f"phase 1: {v}" for v in checker.check()]

    # Phase 2: corrections of some keys, reprocesses, forced loads of copies, together.
    jobs: list[Callable[[], Any]] = []
    for (_, name, kind), rep in zip(files, first[: len(files)], strict=True):
        if kind == "clean" and rng.random() < 0.6:
            jobs.append(lambda name=name: upload_and_wait(make("clean"), name))
            if rng.random() < 0.3:  # a second correction of the same key, racing the first
                jobs.append(lambda name=name: upload_and_wait(make("clean"), name))
        elif rep.status == "FAILED" and rng.random() < 0.5:
            jobs.append(lambda rep=rep: _reprocess(stack, str(rep.file_id), False, timeout))
    for rep in first[len(files) :]:
        if rep.status == "DUPLICATE_CONTENT":
            jobs.append(lambda rep=rep: _reprocess(stack, str(rep.file_id), True, timeout))
    _parallel(jobs)
    out.violations += [f"phase 2: {v}" for v in checker.check()]
    items = checker.files()
    out.files = len(items)
    for item in items:
        out.statuses[str(item.get("status"))] = out.statuses.get(str(item.get("status")), 0) + 1
    out.faults_fired = faults.STATE.fired_count()
    faults.arm([])
    return out


def _reprocess(stack: Any, file_id: str, force: bool, timeout: float) -> Any:
    arn = stack.pipeline.reprocess(file_id, force=force)
    return stack.pipeline.wait_for_file(file_id, execution_arn=arn, timeout=timeout, poll=0.1)
