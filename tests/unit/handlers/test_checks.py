"""RUN4/RUN5: the reject threshold at its boundary, the partner's own threshold, and every
row-count conservation check fed an inconsistent count (each test kills a mutation that the
rest of the suite let survive; see tools/mutate.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from etl.core import process
from etl.core.schema import load_schema
from etl.errors import ConservationViolation, TooManyRejects
from etl.handlers.finalize import check_chunks, check_threshold

ACME_HEADER = "TxnRef;AccountNo;BookingDate;PostedTimestamp;Amount;Ccy;Kind;Counterparty;MCC;Memo;BranchCode"


def acme_csv(n: int, bad: tuple[int, ...]) -> bytes:
    """``n`` acme_bank records (semicolons, the partner's column names); records in ``bad``
    carry an impossible booking date."""
    lines = [ACME_HEADER]
    for i in range(1, n + 1):
        date = "2024-02-30" if i in bad else "2024-03-15"
        lines.append(
            f"A{i:06d};ACC{i % 50:04d};{date};2024-03-15T10:{i % 60:02d}:00Z;{i % 97}.{i % 100:02d};"
            f"EUR;DEBIT;Shop {i};5411;memo {i};BR{i % 9}"
        )
    return ("\n".join(lines) + "\n").encode()


# --- threshold -------------------------------------------------------------------------------


def test_RUN5_share_exactly_at_the_threshold_passes() -> None:
    # 1 of 100 = 1% is not above a 1% threshold (kills `>` -> `>=`).
    check_threshold(100, 1, 0.01)
    check_threshold(1000, 20, 0.02)
    check_threshold(0, 0, 0.0)


def test_RUN5_share_just_above_the_threshold_fails() -> None:
    # 11 of 1000 = 1.1% > 1% (kills a threshold loosened by any factor >= 1.1, e.g. x1.4).
    with pytest.raises(TooManyRejects, match=r"11 of 1000 rows rejected \(1\.10%\) > 1\.00% threshold"):
        check_threshold(1000, 11, 0.01)
    with pytest.raises(TooManyRejects):
        check_threshold(10_000, 201, 0.02)


def test_RUN5_default_file_exactly_at_one_percent_succeeds(chain, etl_aws) -> None:
    # 2 of 200 rows rejected = exactly the default schema's 1%: the file succeeds.
    run = chain.upload_and_run("incoming/default/tx.csv", chain.make_csv(200, bad=(5, 150)))
    assert run.error is None, run.failure
    assert (run.state["result"]["rows_total"], run.state["result"]["rows_rejected"]) == (200, 2)


def test_RUN5_finalize_applies_the_partners_own_threshold(chain, etl_aws) -> None:
    assert load_schema("acme_bank").reject_threshold == 0.02
    # 3 of 200 = 1.5%: above the default 1%, within acme_bank's 2% -> SUCCEEDED.
    ok = chain.upload_and_run("incoming/acme_bank/tx-1.csv", acme_csv(200, bad=(3, 90, 170)))
    assert ok.error is None, ok.failure
    assert ok.state["result"]["status"] == "SUCCEEDED" and ok.state["result"]["rows_rejected"] == 3
    # 5 of 200 = 2.5% > 2% -> TooManyRejects naming the partner's threshold.
    bad = chain.upload_and_run("incoming/acme_bank/tx-2.csv", acme_csv(200, bad=(3, 40, 90, 130, 170)))
    assert isinstance(bad.error, TooManyRejects)
    assert str(bad.error) == "5 of 200 rows rejected (2.50%) > 2.00% threshold"


# --- conservation ----------------------------------------------------------------------------


def _chunk(i: int, rows_in: int, valid: int, rejected: int) -> dict[str, Any]:
    return {
        "chunk_id": f"CHUNK#{i:05d}",
        "status": "SUCCEEDED",
        "rows_in": rows_in,
        "rows_valid": valid,
        "rows_rejected": rejected,
    }


def test_RUN4_finalize_check_chunks_refuses_a_chunk_that_loses_rows() -> None:
    good = _chunk(1, 10, 9, 1)
    assert check_chunks("f", 1, [good]) == (10, 9, 1)
    with pytest.raises(
        ConservationViolation, match=r"CHUNK#00002: rows_in 10 != rows_valid 8 \+ rows_rejected 1"
    ):
        check_chunks("f", 2, [good, _chunk(2, 10, 8, 1)])
    with pytest.raises(ConservationViolation, match="CHUNK#00002"):
        check_chunks("f", 2, [good, _chunk(2, 10, 10, 1)])  # a row counted twice


def test_RUN4_process_finish_refuses_inconsistent_counts() -> None:
    schema = load_schema("default")
    table = pa.table({"x": [1, 2]})
    with pytest.raises(
        ConservationViolation, match=r"chunk at line 2: rows_in 4 != rows_valid 2 \+ rows_rejected 1"
    ):
        process._finish(b"", schema, 2, 4, table, [(3, "amount", "type", "r", "x", None)], np.array([1, 2]))


def test_RUN4_chunk_handler_refuses_an_inconsistent_result(chain, etl_aws, monkeypatch) -> None:
    from etl.handlers import process_chunk as handler_module

    real = handler_module.process_chunk

    def lossy(data: bytes, schema: Any, first_line: int) -> process.ChunkResult:
        result = real(data, schema, first_line)
        result.rows_in += 1  # one record counted in but neither valid nor rejected
        return result

    monkeypatch.setattr(handler_module, "process_chunk", lossy)
    monkeypatch.setenv("CHUNK_SIZE_BYTES", str(64 * 1024))  # one chunk (the line cap allows 682 lines)
    run = chain.upload_and_run("incoming/default/tx.csv", chain.make_csv(20))
    assert isinstance(run.error, ConservationViolation), run.error
    assert "CHUNK#00001: rows_in 21 != rows_valid 20 + rows_rejected 0" in str(run.error)
    fid = run.state["file"]["file_id"]
    chunks = etl_aws.repo.list_chunks(fid)
    assert [c["status"] for c in chunks] == ["FAILED"]
    assert etl_aws.keys("output/") == []  # nothing written for the inconsistent chunk
    assert etl_aws.repo.get_file(fid)["status"] == "FAILED"
