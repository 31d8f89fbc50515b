"""SEC2 on the real state machine and handlers: a file under a partner that has no schema and
is not declared to use the default one ends FAILED (UnknownPartner, naming the known partners)
in failed/; a declared partner's file (tests/e2e/conftest.py E2E_PARTNERS) succeeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl import contracts
from etl.core.identity import file_id_for
from etl_local.datagen import generate_csv

from .conftest import Stack

pytestmark = pytest.mark.e2e


def test_SEC2_unknown_partner_fails_with_its_reason_and_a_declared_one_succeeds(
    stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "tx.csv"
    generate_csv(path, rows=200, seed=3, bad_row_share=0.0)
    # Not through `etl upload` (which refuses it): a key an operator or a misrouted tool wrote.
    key = f"{contracts.INCOMING_PREFIX}initech/tx.csv"
    put = stack.s3.put_object(Bucket=stack.outputs.bucket, Key=key, Body=path.read_bytes())
    rep = stack.wait(file_id_for(key, put.get("VersionId"), put["ETag"]))
    assert rep.status == "FAILED"
    assert (rep.error or "").startswith("UnknownPartner: partner 'initech' has no schema"), rep.error
    assert "known partners: acme, acme2, acme_bank, default, globex" in (rep.error or "")
    assert stack.calls("PlanChunks") == []
    assert stack.keys(f"{contracts.FAILED_PREFIX}initech/")
    declared = stack.upload(path, "globex")
    assert stack.wait(declared["file_id"]).status == "SUCCEEDED"
