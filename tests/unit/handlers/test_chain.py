"""The whole chain in-process: register -> validate -> plan -> process each chunk -> finalize."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest

from etl.errors import InvalidFileState, TooManyRejects
from etl.handlers import finalize, register


def _parquet_rows(aws, prefix="output/"):
    rows = []
    for key in aws.keys(prefix):
        rows += pq.read_table(io.BytesIO(aws.get(key))).to_pylist()
    return rows


def _source_rows(data: bytes):
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def _check_success(chain, etl_aws, run, data, n, bad, uploaded=None):
    """``data`` is the CSV; ``uploaded`` the object as uploaded (gzip), when it differs."""
    assert run.error is None, run.failure
    file, result = run.state["file"], run.state["result"]
    fid = file["file_id"]
    chunks = run.state["plan"]["chunks"]
    assert len(chunks) >= 3
    # announce: the ShouldAnnounce decision (DR2/DR3), true in an active region with no ledger marker
    assert result == {
        "announce": True,
        "status": "SUCCEEDED",
        "file_id": fid,
        "partner": file["partner"],
        "rows_total": n,
        "rows_valid": n - len(bad),
        "rows_rejected": len(bad),
        "chunks": len(chunks),
        "manifest_key": f"manifests/{file['partner']}/{fid}.json",
        "output_prefix": f"output/transactions/partner={file['partner']}/file_id={fid}/",
        "rejected_prefix": f"rejected/partner={file['partner']}/file_id={fid}/",
        "processed_key": f"processed/{file['partner']}/{fid}/{file['original_key'].rsplit('/', 1)[-1]}",
        "snapshot_id": result["snapshot_id"],
        "published_rows": n - len(bad),
        "table": "transaction_etl_test.transactions",
        "message_group_id": file["partner"],
        "dedup_id": fid,
    }
    assert isinstance(result["snapshot_id"], int)
    assert etl_aws.repo.get_file(fid)["snapshot_id"] == result["snapshot_id"]
    # Conservation per chunk and in total.
    assert sum(r["rows_in"] for r in run.chunk_results) == n
    assert all(r["rows_in"] == r["rows_valid"] + r["rows_rejected"] for r in run.chunk_results)
    # Parquet holds exactly the valid input rows, in file order, typed.
    rows = _parquet_rows(etl_aws, result["output_prefix"])
    source = [r for i, r in enumerate(_source_rows(data), start=1) if i not in bad]
    assert [r["transaction_id"] for r in rows] == [r["transaction_id"] for r in source]
    assert [str(r["amount"]) for r in rows] == [r["amount"] for r in source]
    assert [r["description"] for r in rows] == [r["description"] for r in source]
    # Rejects name the line (header = line 1, quoted newlines counted) and the reason.
    rejected = []
    for key in etl_aws.keys(result["rejected_prefix"]):
        rejected += list(csv.DictReader(io.StringIO(etl_aws.get(key).decode())))
    assert len(rejected) == len(bad)
    assert all(r["column"] == "transaction_date" and "2024-02-30" in r["reason"] for r in rejected)
    # Manifest
    manifest = json.loads(etl_aws.get(result["manifest_key"]))
    assert manifest["file_id"] == fid
    assert manifest["counts"] == {
        "chunks": len(chunks),
        "rows_total": n,
        "rows_valid": n - len(bad),
        "rows_rejected": len(bad),
        "rejected_share": round(len(bad) / n, 6),
    }
    assert manifest["schema"]["id"] == "transactions_v1" and manifest["schema"]["version"] == "1.0.0"
    assert manifest["execution_arn"] == chain.execution_arn
    assert manifest["source"]["processed_key"] == result["processed_key"]
    import hashlib

    for c in manifest["chunks"]:
        assert c["output"]["sha256"] == hashlib.sha256(etl_aws.get(c["output"]["key"])).hexdigest()
    # Source moved; status items final.
    assert etl_aws.keys("incoming/") == []
    assert file["compression"] == ("gzip" if uploaded is not None else "none")
    assert etl_aws.get(result["processed_key"]) == (data if uploaded is None else uploaded)
    item = etl_aws.repo.get_file(fid)
    assert item["status"] == "SUCCEEDED"
    assert (item["rows_total"], item["rows_valid"], item["rows_rejected"]) == (n, n - len(bad), len(bad))
    assert item["manifest_key"] == result["manifest_key"] and item["key"] == result["processed_key"]
    assert item["finished_at"].endswith("Z")
    assert {c["status"] for c in etl_aws.repo.list_chunks(fid)} == {"SUCCEEDED"}
    return rows


def test_reject_share_over_the_threshold_fails_the_file(chain, etl_aws):
    n, bad = 200, (7, 100, 199)
    data = chain.make_csv(n, bad=bad)
    run = chain.upload_and_run("incoming/default/tx-2024-03-15.csv", data)
    # 3 of 200 = 1.5% > the default 1% threshold: this file must fail...
    assert isinstance(run.error, TooManyRejects)
    assert str(run.error) == "3 of 200 rows rejected (1.50%) > 1.00% threshold"
    assert run.failure["reason"].startswith("TooManyRejects: 3 of 200 rows rejected")
    fid = run.state["file"]["file_id"]
    assert etl_aws.keys("failed/") == [f"failed/default/{fid}/tx-2024-03-15.csv"]
    assert etl_aws.keys("manifests/") == [] and etl_aws.keys("incoming/") == []
    item = etl_aws.repo.get_file(fid)
    assert item["status"] == "FAILED" and item["error_type"] == "TooManyRejects"
    # SPEC RUN13: the counts known at failure stay on the file item (CLI, --json read them).
    assert (item["rows_total"], item["rows_valid"], item["rows_rejected"]) == (200, 197, 3)


def test_multi_chunk_file_succeeds_with_exact_counts(chain, etl_aws):
    n, bad = 400, (7, 300)
    data = chain.make_csv(n, bad=bad)
    run = chain.upload_and_run("incoming/default/tx-2024-03-15.csv", data)
    _check_success(chain, etl_aws, run, data, n, bad)


def test_crlf_bom_file(chain, etl_aws):
    n = 150
    data = b"\xef\xbb\xbf" + chain.make_csv(n, crlf=True)
    run = chain.upload_and_run("incoming/default/tx.csv", data)
    assert run.error is None, run.failure
    assert run.state["result"]["rows_total"] == n
    rows = _parquet_rows(etl_aws)
    assert rows[0]["transaction_id"] == "T000001"  # the BOM is not part of the first name/value


def test_gzip_file_end_to_end(chain, etl_aws, gzip_bytes):
    n, bad = 400, (11,)
    data = chain.make_csv(n, bad=bad)
    run = chain.upload_and_run("incoming/default/tx.csv.gz", gzip_bytes(data))
    _check_success(chain, etl_aws, run, data, n, bad, uploaded=gzip_bytes(data))
    assert etl_aws.keys("scratch/") == []  # scratch chunks removed after success
    assert etl_aws.get(run.state["result"]["processed_key"]) == gzip_bytes(data)


def test_duplicate_event_starts_no_second_processing(chain, etl_aws):
    data = chain.make_csv(300)
    event = chain.upload("incoming/default/tx.csv", data)
    first = chain.run(event)
    assert first.state["result"]["status"] == "SUCCEEDED"
    outputs = {k: etl_aws.get(k) for k in etl_aws.keys("output/")}
    second = chain.run(event, arn=chain.execution_arn + "-dup")
    assert second.state["file"]["duplicate"] is True
    assert "header" not in second.state and second.error is None
    assert {k: etl_aws.get(k) for k in etl_aws.keys("output/")} == outputs
    assert etl_aws.repo.get_file(first.state["file"]["file_id"])["status"] == "SUCCEEDED"


def test_finalize_is_idempotent(chain, etl_aws):
    data = chain.make_csv(300)
    run = chain.upload_and_run("incoming/default/tx.csv", data)
    manifest = etl_aws.get(run.state["result"]["manifest_key"])
    event = {k: run.state[k] for k in ("file", "header", "plan")}
    again = finalize.handler({**event, "execution_arn": chain.execution_arn}, None)
    assert again == run.state["result"]
    assert etl_aws.get(run.state["result"]["manifest_key"]) == manifest  # byte-identical


def test_finalize_requires_every_chunk_succeeded(chain, etl_aws):
    event = chain.upload("incoming/default/tx.csv", chain.make_csv(300))
    state = {"file": register.handler({"event": event, "execution_arn": chain.execution_arn}, None)}
    state["header"] = chain.validate({"file": state["file"]}, None)
    state["plan"] = chain.plan({"file": state["file"], "header": state["header"]}, None)
    chain.process({**state, "chunk": state["plan"]["chunks"][0]}, None)
    with pytest.raises(InvalidFileState, match="not SUCCEEDED: CHUNK#00002=PENDING"):
        finalize.handler({**state, "execution_arn": chain.execution_arn}, None)
    assert etl_aws.keys("manifests/") == []
    assert etl_aws.keys("incoming/") == ["incoming/default/tx.csv"]


def test_failed_file_then_reprocess_succeeds_without_duplicates(chain, etl_aws, monkeypatch):
    n = 300
    data = chain.make_csv(n)
    # A first run fails in ProcessChunk (here: the schema threshold is fine but chunk 2 breaks).
    from etl.handlers import process_chunk

    real = process_chunk.process_chunk
    calls = {"n": 0}

    def flaky(data_, schema, first_line):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full (injected)")
        return real(data_, schema, first_line)

    monkeypatch.setattr(process_chunk, "process_chunk", flaky)
    run = chain.upload_and_run("incoming/default/tx.csv", data)
    fid = run.state["file"]["file_id"]
    assert isinstance(run.error, RuntimeError)
    assert run.failure["reason"] == "RuntimeError: disk full (injected)"
    assert etl_aws.keys("incoming/") == [] and etl_aws.keys("failed/") == [f"failed/default/{fid}/tx.csv"]
    item = etl_aws.repo.get_file(fid)
    assert item["status"] == "FAILED" and item["error"] == "RuntimeError: disk full (injected)"
    statuses = [c["status"] for c in etl_aws.repo.list_chunks(fid)]
    assert statuses[0] == "SUCCEEDED" and set(statuses[1:]) == {"FAILED"}

    monkeypatch.setattr(process_chunk, "process_chunk", real)
    again = chain.run({"reprocess": {"file_id": fid}}, arn=chain.execution_arn + "-re")
    assert again.error is None, again.failure
    assert again.state["file"]["key"] == f"failed/default/{fid}/tx.csv"
    assert again.state["result"]["rows_total"] == n
    assert etl_aws.keys("failed/") == []
    assert etl_aws.keys("processed/") == [f"processed/default/{fid}/tx.csv"]
    assert etl_aws.get(f"processed/default/{fid}/tx.csv") == data
    assert len(_parquet_rows(etl_aws)) == n  # no duplicates from the first run
    item = etl_aws.repo.get_file(fid)
    assert item["status"] == "SUCCEEDED" and item["attempts"] == 2 and "failed_key" not in item
    with pytest.raises(InvalidFileState, match="only FAILED"):
        chain.register({"event": {"reprocess": {"file_id": fid}}, "execution_arn": "arn:x"}, None)


def test_reprocessed_file_failing_again_stays_in_failed(chain, etl_aws):
    good_header = chain.make_csv(5)
    run = chain.upload_and_run("incoming/default/tx.csv", good_header.replace(b"currency", b"ccy", 1))
    fid = run.state["file"]["file_id"]
    again = chain.run({"reprocess": {"file_id": fid}}, arn="arn:again")
    assert again.error.__class__.__name__ == "SchemaMismatch"
    assert etl_aws.keys("failed/") == [f"failed/default/{fid}/tx.csv"]  # not deleted by a self-move
