"""Mutation check: apply each mutation below to a temporary copy of the repository, run the tests
that should catch it, and report which mutations were killed and which survived.

    make mutate                      # every mutation (~10 min on 2 cores)
    .venv/bin/python tools/mutate.py --list
    .venv/bin/python tools/mutate.py threshold-gte grant-finalize-tags

A mutation is (file, original snippet, mutated snippet, tests). The original snippet must occur
exactly once in the file: when the code it names is rewritten, the tool stops with an error
instead of silently testing nothing, and the entry must be updated with the code. Exit status:
0 when every mutation was killed, 1 when any survived, 2 on a stale or broken entry.

Add an entry whenever a test is written to guard a specific line (a boundary, a grant, a check):
it is how the next change proves the test still guards it. Not part of `make test` (too slow).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "node_modules",
    "cdk.out*",
    ".etl-local",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "benchmarks/data",
)

CHECKS = "tests/unit/handlers/test_checks.py"
IAM = "tests/unit/handlers/test_iam_coverage.py"
GRANTS = "tests/infra/test_grants.py"


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    original: str
    mutated: str
    tests: tuple[str, ...]


MUTATIONS: tuple[Mutation, ...] = (
    # RUN5: the reject threshold.
    Mutation(
        "threshold-gte",
        "etl/handlers/finalize.py",
        "if share > threshold:",
        "if share >= threshold:",
        (CHECKS + "::test_RUN5_share_exactly_at_the_threshold_passes",),
    ),
    Mutation(
        "threshold-x1.4",
        "etl/handlers/finalize.py",
        "if share > threshold:",
        "if share > threshold * 1.4:",
        (CHECKS + "::test_RUN5_share_just_above_the_threshold_fails",),
    ),
    Mutation(
        "finalize-ignores-schema-threshold",
        "etl/handlers/finalize.py",
        "check_threshold(rows_total, rows_rejected, schema.reject_threshold)",
        "check_threshold(rows_total, rows_rejected, 0.01)",
        (CHECKS + "::test_RUN5_finalize_applies_the_partners_own_threshold",),
    ),
    # RUN4: conservation (rows in = valid + rejected), at each place it is checked.
    Mutation(
        "conservation-process-finish",
        "etl/core/process.py",
        'check_conservation(f"chunk at line {first_line}", n_records, rows_valid, len(rejects))',
        "pass",
        (CHECKS + "::test_RUN4_process_finish_refuses_inconsistent_counts",),
    ),
    Mutation(
        "conservation-chunk-handler",
        "etl/handlers/process_chunk.py",
        "check_conservation(cid, result.rows_in, result.rows_valid, result.rows_rejected)",
        "pass",
        (CHECKS + "::test_RUN4_chunk_handler_refuses_an_inconsistent_result",),
    ),
    Mutation(
        "conservation-finalize-check-chunks",
        "etl/handlers/finalize.py",
        'check_conservation(str(c["chunk_id"]), r_in, r_ok, r_bad)',
        "pass",
        (CHECKS + "::test_RUN4_finalize_check_chunks_refuses_a_chunk_that_loses_rows",),
    ),
    Mutation(
        "conservation-shared-check",
        "etl/core/counts.py",
        "if rows_in != rows_valid + rows_rejected:",
        "if False:",
        ("tests/unit/test_counts.py",),
    ),
    # DX1/DX2: the one file-item builder and the typed $.file.
    Mutation(
        "file-builder-compression",
        "etl/payloads.py",
        '"compression": compression_of(key),',
        '"compression": "none",',
        ("tests/unit/test_payloads.py",),
    ),
    Mutation(
        "file-ref-drops-force",
        "etl/payloads.py",
        '"force": force,',
        "",
        ("tests/unit/handlers/test_payload_shapes.py",),
    ),
    # INF5/RUN8: what the state machine retries.
    Mutation(
        "5xx-not-transient",
        "etl/aws/errors.py",
        "return error_code(exc) in THROTTLING_CODES or http_status(exc) >= 500",
        "return error_code(exc) in THROTTLING_CODES",
        ("tests/unit/test_aws_errors.py",),
    ),
    # RUN3/RUN9: the dense (numpy cumsum) backward window of the boundary scanner.
    Mutation(
        "dense-window-forgets-parity",
        "etl/core/boundaries.py",
        "even = np.flatnonzero(((par + total - quotes[lfs]) & 1) == 0)",
        "even = np.flatnonzero(((total - quotes[lfs]) & 1) == 0)",
        ("tests/unit/test_boundaries.py::test_dense_backward_window_keeps_quote_parity",),
    ),
    Mutation(
        "dense-window-drops-carried-parity",
        "etl/core/boundaries.py",
        "par = (par + total) & 1",
        "par = total & 1",
        ("tests/unit/test_boundaries.py::test_dense_backward_window_keeps_quote_parity",),
    ),
    # INF6/INF8: grants.
    Mutation(
        "grant-finalize-tags",
        "infra/functions.py",
        "            (GET_CURRENT + PUT + WRITE_TAGS, (PROC,)),\n",
        "            (GET_CURRENT + PUT, (PROC,)),\n",
        (IAM,),
    ),
    Mutation(
        "grant-register-listbucket",
        "infra/functions.py",
        'table=("dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"),\n'
        "        list_prefixes=(INC, FAIL, PROC),\n    ),\n    # GetItem",
        'table=("dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"),\n    ),\n    # GetItem',
        (IAM,),
    ),
    Mutation(
        "grant-finalize-dedupe-rewrite",
        "infra/functions.py",
        "            (GET_CURRENT + PUT, (REJ,)),\n",
        "            (DELETE, (REJ,)),\n",
        (IAM,),
    ),
    Mutation(
        "grant-state-machine-alert-key",
        "infra/workflow.py",
        'alert_key.grant(self.state_machine, "kms:Decrypt", "kms:GenerateDataKey*")',
        "None  # mutated: no KMS grant on the alert key",
        (GRANTS,),
    ),
    Mutation(
        "grant-log-group-writes",
        "infra/functions.py",
        "log_group.grant_write(role)",
        "None  # mutated: no log-group writes",
        (GRANTS,),
    ),
    Mutation(
        "parse-pieces-ignore-quote-placement",
        "etl/core/parse.py",
        "if k < 2 or not quotes_follow_rfc4180(text, base, schema.delimiter, recs.quotes):",
        "if k < 2:",
        ("tests/unit/test_parallel_chunk.py::test_PERF2_misplaced_quote_is_parsed_whole",),
    ),
    Mutation(
        "schema-load-lets-pandas-in",
        "etl/core/schema.py",
        "    prime()  # before the first pa.array",
        "    pass  # before the first pa.array",
        ("tests/unit/test_pandas_free.py::test_PERF4_processing_a_chunk_never_imports_pandas",),
    ),
    # RUN12: single rejects and whole-record batches end in line order.
    Mutation(
        "rejects-unsorted-merge",
        "etl/core/rejects.py",
        "        if not bool(np.all(lines[1:] > lines[:-1])):",
        "        if False:",
        ("tests/unit/test_rejects_columnar.py",),
    ),
    # PERF2: the data files' row order is Arrow's multi-key sort, computed from integer ranks.
    Mutation(
        "row-order-unsorted-account-ranks",
        "etl/core/dataset.py",
        "    out: np.ndarray = _sort_rank(enc.dictionary)[_np(enc.indices)]\n",
        "    out: np.ndarray = _np(enc.indices).astype(np.int64)  # first-appearance codes\n",
        ("tests/unit/test_dataset.py",),
    ),
    # RUN12 for the whole chunk function: the data files' step must not hold the rows twice.
    Mutation(
        "chunk-function-holds-rows-twice",
        "etl/handlers/process_chunk.py",
        "    result.valid_table = result.valid_table.schema.empty_table()\n"
        "    parts = dataset.split_by_date(rows)\n"
        "    # The unsorted columns' pages back to the OS before the Parquet writers allocate (they were\n"
        "    # allocated by other threads, whose malloc arenas the writers would not reuse).\n"
        "    pa.default_memory_pool().release_unused()\n",
        "    parts = dataset.split_by_date(rows)\n",
        ("tests/unit/handlers/test_chunk_function_memory.py",),
    ),
    # RUN12: the parallel filter must apply the valid mask (not keep every row).
    Mutation(
        "parallel-filter-keeps-rejects",
        "etl/core/process.py",
        "    return pc.filter(typed.pop(name), mask)",
        "    return typed.pop(name)",
        ("tests/unit/test_parallel_chunk.py",),
    ),
)


def copy_repo(dest: Path) -> Path:
    work = dest / "repo"
    shutil.copytree(ROOT, work, ignore=COPY_IGNORE, symlinks=True)
    if (ROOT / "node_modules").exists():
        (work / "node_modules").symlink_to(ROOT / "node_modules")
    return work


def run_tests(work: Path, tests: tuple[str, ...]) -> tuple[int, str]:
    """(pytest's exit status, tail of its output) for ``tests`` inside the copy: 0 all passed,
    1 some failed; anything else (collection error, no tests) is no verdict."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
    return proc.returncode, tail


def check_copy_is_imported(work: Path) -> None:
    """`python -m pytest` in the copy must import the copy's packages, not the worktree's."""
    probe = "import etl, infra; print(etl.__file__); print(infra.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=work, capture_output=True, text=True, check=True
    ).stdout.split()
    if not all(Path(p).resolve().is_relative_to(work.resolve()) for p in out):
        raise SystemExit(f"the copy does not shadow the worktree's packages: {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTATIONS}
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:40} {m.path:32} {' '.join(m.tests)}")
        return 0
    unknown = [n for n in args.names if n not in known]
    if unknown:
        print(f"unknown mutation(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    selected = [known[n] for n in args.names] if args.names else list(MUTATIONS)

    with tempfile.TemporaryDirectory(prefix="etl-mutate-") as tmp:
        work = copy_repo(Path(tmp))
        check_copy_is_imported(work)
        # Baseline: the tests must pass on the unmutated copy, else a "kill" proves nothing.
        baseline = tuple(dict.fromkeys(t for m in selected for t in m.tests))
        status, tail = run_tests(work, baseline)
        if status != 0:
            print(f"the tests fail without any mutation:\n{tail}", file=sys.stderr)
            return 2
        survived: list[str] = []
        broken: list[str] = []
        for m in selected:
            target = work / m.path
            text = target.read_text(encoding="utf-8")
            count = text.count(m.original)
            if count != 1:
                print(
                    f"STALE     {m.name}: the original snippet occurs {count} times in {m.path}", flush=True
                )
                broken.append(m.name)
                continue
            target.write_text(text.replace(m.original, m.mutated), encoding="utf-8")
            started = time.monotonic()
            try:
                status, tail = run_tests(work, m.tests)
            finally:
                target.write_text(text, encoding="utf-8")
            seconds = time.monotonic() - started
            if status == 0:
                survived.append(m.name)
                print(f"SURVIVED  {m.name} ({seconds:.0f} s): {' '.join(m.tests)} still pass", flush=True)
            elif status == 1:
                print(f"killed    {m.name} ({seconds:.0f} s) by {' '.join(m.tests)}", flush=True)
            else:
                broken.append(m.name)
                print(f"BROKEN    {m.name}: pytest exit {status} (not a test failure)\n{tail}", flush=True)
    killed = len(selected) - len(survived) - len(broken)
    print(f"\n{killed} killed, {len(survived)} survived, {len(broken)} stale/broken of {len(selected)}")
    if broken:
        return 2
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
