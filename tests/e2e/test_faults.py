"""SPEC TBL2/TBL4: every named fault point on the real state machine and handlers; after each,
the file is in a named terminal status and the table's invariants (tests/e2e/invariants.py,
read through pyiceberg's own IO) hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from etl.errors import InvalidFileState
from etl_local import faults, lambda_runtime
from etl_local.datagen import generate_csv

from .conftest import Stack
from .invariants import checker_for

pytestmark = pytest.mark.e2e


def make_file(tmp_path: Path, name: str, rows: int = 1500, seed: int = 11, bad: float = 0.005) -> Path:
    path = tmp_path / name
    generate_csv(path, rows=rows, seed=seed, bad_row_share=bad)
    return path


def run(stack: Stack, path: Path, name: str | None = None, partner: str = "default") -> Any:
    up = stack.upload(path, partner, name=name)
    return stack.wait(up["file_id"])


def assert_holds(stack: Stack, **kwargs: Any) -> None:
    violations = checker_for(stack).check(**kwargs)
    assert violations == [], "\n".join(violations)


def fired(point: str) -> int:
    return sum(1 for p, _, _ in faults.STATE.fired if p.split("@")[0] == point)


@pytest.mark.parametrize(
    ("point", "step"),
    [
        ("finalize.before_commit", "Finalize"),
        ("finalize.after_commit", "Finalize"),
        ("process_chunk.after_data_files", "ProcessChunk"),
    ],
)
def test_tbl4_handler_fault_point_is_survived(stack: Stack, tmp_path: Path, point: str, step: str) -> None:
    """The function dies at the point as on a timeout; the workflow retries it; the file
    SUCCEEDS with its rows exactly once and nothing unreferenced left."""
    faults.arm([point])
    rep = run(stack, make_file(tmp_path, "a.csv"))
    assert fired(point) == 1
    assert rep.status == "SUCCEEDED", rep.error
    errors = [c.error_type for c in stack.calls(step) if c.error_type]
    assert errors == ["Sandbox.Timedout"]
    assert_holds(stack)


def test_tbl4_lost_update_table_response_does_not_brick_the_table(stack: Stack, tmp_path: Path) -> None:
    """UpdateTable lands, its response is lost: the commit is found by its token, not replayed
    (a replay would fail, and pyiceberg would delete the landed commit's manifests)."""
    faults.arm([faults.GLUE_RESPONSE_LOST])
    first = run(stack, make_file(tmp_path, "a.csv"))
    assert fired(faults.GLUE_RESPONSE_LOST) == 1
    assert first.status == "SUCCEEDED", first.error
    # The table is readable and writable afterwards: the next file commits on top of it.
    second = run(stack, make_file(tmp_path, "b.csv", seed=12))
    assert second.status == "SUCCEEDED", second.error
    assert_holds(stack)


def test_tbl4_s3_slow_down_is_absorbed_by_the_clients(stack: Stack, tmp_path: Path) -> None:
    faults.arm([f"{faults.S3_SLOW_DOWN}@ProcessChunk", f"{faults.S3_SLOW_DOWN}@Finalize"])
    rep = run(stack, make_file(tmp_path, "a.csv"))
    assert fired(faults.S3_SLOW_DOWN) == 2
    assert rep.status == "SUCCEEDED", rep.error
    assert_holds(stack)


def test_tbl4_mark_failed_crash_still_ends_failed(stack: Stack, tmp_path: Path) -> None:
    path = make_file(tmp_path, "bad.csv")
    path.write_bytes(path.read_bytes().replace(b"currency", b"ccy", 1))  # a header the schema refuses
    faults.arm(["mark_failed.crash"])
    rep = run(stack, path)
    assert fired("mark_failed.crash") == 1
    assert rep.status == "FAILED"
    assert "SchemaMismatch" in (rep.error or "")
    assert [c.error_type for c in stack.calls("MarkFailed")] == ["Sandbox.Timedout", None]
    assert_holds(stack)


def _finalize_fails_after_its_commit(stack: Stack) -> None:
    """Finalize's commit lands and it dies; every later Finalize attempt fails permanently."""
    faults.arm(["finalize.after_commit"])
    lambda_runtime.STATE.add_fault(
        lambda_runtime.Fault(
            function_suffix=stack.outputs.functions["Finalize"],
            when=lambda event: fired("finalize.after_commit") > 0,
            times=1,
            exception=lambda: InvalidFileState("injected: Finalize cannot finish"),
        )
    )


def test_tbl4_commit_landed_then_file_failed_is_unpublished(stack: Stack, tmp_path: Path) -> None:
    """I1: a FAILED file has no visible rows, even when its commit landed before it failed
    (the failure handling checks the table, not the file item)."""
    _finalize_fails_after_its_commit(stack)
    rep = run(stack, make_file(tmp_path, "a.csv"))
    assert rep.status == "FAILED"
    assert "injected" in (rep.error or "")
    assert_holds(stack)


def test_tbl4_failed_correction_brings_the_earlier_version_back(stack: Stack, tmp_path: Path) -> None:
    """A correction whose commit landed and then failed: its rows go, the earlier version's
    rows are live again (one commit), and the table holds."""
    first = run(stack, make_file(tmp_path, "a.csv"), name="daily.csv")
    assert first.status == "SUCCEEDED", first.error
    _finalize_fails_after_its_commit(stack)
    corrected = run(stack, make_file(tmp_path, "a2.csv", seed=99), name="daily.csv")
    assert corrected.status == "FAILED"
    checker = checker_for(stack)
    assert checker.check() == []
    from etl_cli.dataset import rows_of_file

    rows = rows_of_file(checker.catalog, checker.database, str(first.file_id))
    assert rows.num_rows == first.rows_valid


def _set_chunk_size(stack: Stack, size: int) -> None:
    client = stack.pipeline.client("lambda")
    name = stack.outputs.functions["PlanChunks"]
    env = client.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    client.update_function_configuration(
        FunctionName=name, Environment={"Variables": {**env, "CHUNK_SIZE_BYTES": str(size)}}
    )


def test_tbl4_reprocess_after_failed_commit_rewrites_nothing(stack: Stack, tmp_path: Path) -> None:
    """The issue's corruption: a file FAILED after its commit, reprocessed with other chunks.
    Data files are named by content, so no published object is ever overwritten (I3)."""
    _finalize_fails_after_its_commit(stack)
    path = make_file(tmp_path, "a.csv", rows=3000)
    rep = run(stack, path)
    assert rep.status == "FAILED"
    checker = checker_for(stack)
    assert checker.check() == []  # remembers the ETags of every referenced object
    faults.arm([])
    lambda_runtime.STATE.clear()
    # The re-run plans other chunks (as after a chunk-size change): the same rows in other
    # data files. With per-index names they would overwrite the referenced ones.
    _set_chunk_size(stack, 48 * 1024)
    arn = stack.pipeline.reprocess(str(rep.file_id))
    again = stack.pipeline.wait_for_file(str(rep.file_id), execution_arn=arn, timeout=120, poll=0.1)
    assert again.status == "SUCCEEDED", again.error
    assert checker.check() == []
