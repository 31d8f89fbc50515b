"""SPEC TBL5: the live version of a key. The issue's case: clean.csv loaded (A), the same bytes
again (D, DUPLICATE_CONTENT), a corrected version of the key (C); a forced reprocess of D must
not silently bring the old rows back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl_cli.pipeline import PipelineError
from etl_local.datagen import generate_csv

from .conftest import Stack
from .invariants import checker_for

pytestmark = pytest.mark.e2e


def test_TBL5_forced_reprocess_of_an_older_version_needs_rollback(stack: Stack, tmp_path: Path) -> None:
    clean, corrected = tmp_path / "clean.csv", tmp_path / "corrected.csv"
    generate_csv(clean, rows=400, seed=31, bad_row_share=0.0)
    generate_csv(corrected, rows=450, seed=32, bad_row_share=0.0)
    name = "clean.csv"
    a = stack.wait(stack.upload(clean, name=name)["file_id"])
    d = stack.wait(stack.upload(clean, name=name)["file_id"])
    c = stack.wait(stack.upload(corrected, name=name)["file_id"])
    assert (a.status, d.status, c.status) == ("SUCCEEDED", "DUPLICATE_CONTENT", "SUCCEEDED")
    checker = checker_for(stack)
    assert checker.check() == []
    # C's rows replaced A's: A says so, C is live.
    pipe = stack.pipeline
    assert pipe.report(str(a.file_id)).superseded_by == c.file_id
    assert pipe.report(str(c.file_id)).rows_live == "live"

    # The forced reprocess of D (older than C) is refused: C's rows stay.
    with pytest.raises(PipelineError, match=r"older version .* --rollback"):
        pipe.reprocess(str(d.file_id), force=True)
    # A reprocess started behind the CLI's back is refused by Finalize itself (under the
    # commit lease): D ends FAILED with the reason, C's rows untouched.
    arn = pipe.client("stepfunctions").start_execution(
        stateMachineArn=stack.outputs.state_machine_arn,
        input=json.dumps({"reprocess": {"file_id": d.file_id, "force": True}}),
    )["executionArn"]
    refused = pipe.wait_for_file(str(d.file_id), execution_arn=arn, timeout=120, poll=0.1)
    assert refused.status == "FAILED"
    assert "SupersededVersion" in (refused.error or "")
    assert checker.check() == []

    # On purpose: --rollback makes D (the old rows) live and says C is superseded.
    arn = pipe.reprocess(str(d.file_id), force=True, rollback=True)
    back = pipe.wait_for_file(str(d.file_id), execution_arn=arn, timeout=120, poll=0.1)
    assert back.status == "SUCCEEDED", back.error
    assert back.rows_live == "live" and back.rows_valid == 400
    assert pipe.report(str(c.file_id)).superseded_by == d.file_id
    key = "incoming/default/clean.csv"
    assert checker.check(rollbacks={key: str(d.file_id)}) == []
