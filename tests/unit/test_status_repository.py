"""StatusRepository: conditional writes on the real key schema (moto)."""

from __future__ import annotations

import re
from unittest import mock

import pytest
from botocore.stub import Stubber

from etl.aws import clients
from etl.aws.status import StatusRepository, utc_now
from etl.errors import InvalidFileState, TransientError

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _file(file_id="f1", **extra):
    item = {"file_id": file_id, "bucket": "b", "key": "incoming/p/a.csv", "size": 10, "partner": "p"}
    item.update(extra)
    return item


def _chunks(n, key="incoming/p/a.csv"):
    return [
        {
            "chunk_id": f"CHUNK#{i:05d}",
            "index": i,
            "key": key,
            "start": i * 10,
            "end": i * 10 + 10,
            "first_line": i,
        }
        for i in range(1, n + 1)
    ]


def test_register_is_conditional(etl_aws):
    repo = etl_aws.repo
    assert repo.register_file(_file(execution_arn="arn:1")) is True
    assert repo.register_file(_file(execution_arn="arn:2")) is False
    item = repo.get_file("f1")
    assert item["execution_arn"] == "arn:1"  # the duplicate did not overwrite
    assert item["status"] == "REGISTERED"
    assert item["attempts"] == 1 and isinstance(item["attempts"], int)
    assert item["size"] == 10
    assert ISO.match(item["created_at"]) and ISO.match(item["updated_at"])
    raw = etl_aws.dynamodb.get_item(
        TableName=etl_aws.table_name, Key={"file_id": {"S": "f1"}, "chunk_id": {"S": "FILE"}}
    )
    assert raw["Item"]["size"] == {"N": "10"}  # numbers stored as Numbers


def test_none_attributes_are_not_stored(etl_aws):
    etl_aws.repo.register_file(_file(version_id=None))
    assert "version_id" not in etl_aws.repo.get_file("f1")


def test_transition_file_checks_current_status(etl_aws):
    repo = etl_aws.repo
    repo.register_file(_file())
    item = repo.transition_file("f1", {"REGISTERED"}, "VALIDATING", schema_id="transactions_v1")
    assert item["status"] == "VALIDATING" and item["schema_id"] == "transactions_v1"
    with pytest.raises(InvalidFileState, match="file f1 is VALIDATING; cannot change it to PLANNED"):
        repo.transition_file("f1", {"REGISTERED"}, "PLANNED")
    assert repo.get_file("f1")["status"] == "VALIDATING"
    with pytest.raises(InvalidFileState, match="<no file item>"):
        repo.transition_file("missing", {"REGISTERED"}, "VALIDATING")
    # None removes an attribute.
    repo.transition_file("f1", {"VALIDATING"}, "PLANNED", schema_id=None, chunk_count=3)
    item = repo.get_file("f1")
    assert "schema_id" not in item and item["chunk_count"] == 3
    # The older name of the same conditional transition (still accepted): same checks, same write.
    assert repo.update_file_status("f1", {"PLANNED"}, "PROCESSING")["status"] == "PROCESSING"
    with pytest.raises(InvalidFileState, match="file f1 is PROCESSING; cannot change it to SUCCEEDED"):
        repo.update_file_status("f1", {"PLANNED"}, "SUCCEEDED")
    assert repo.get_file("f1")["status"] == "PROCESSING"


def test_claim_reprocess_only_from_failed(etl_aws):
    repo = etl_aws.repo
    repo.register_file(_file())
    with pytest.raises(InvalidFileState, match="status is REGISTERED, only FAILED"):
        repo.claim_reprocess("f1", "arn:2")
    repo.transition_file("f1", {"REGISTERED"}, "FAILED", error="boom", failed_key="failed/p/f1/a.csv")
    item = repo.claim_reprocess("f1", "arn:2", key="failed/p/f1/a.csv", error=None)
    assert item["status"] == "REGISTERED"
    assert item["attempts"] == 2
    assert item["execution_arn"] == "arn:2"
    assert item["key"] == "failed/p/f1/a.csv" and "error" not in item
    with pytest.raises(InvalidFileState):
        repo.claim_reprocess("f1", "arn:3")  # a second concurrent claim loses
    with pytest.raises(InvalidFileState, match="<no file item>"):
        repo.claim_reprocess("nope", "arn:4")


def test_chunk_lifecycle(etl_aws):
    repo = etl_aws.repo
    assert repo.put_chunks("f1", _chunks(3)) == 3
    chunks = repo.list_chunks("f1")
    assert [c["chunk_id"] for c in chunks] == ["CHUNK#00001", "CHUNK#00002", "CHUNK#00003"]
    assert {c["status"] for c in chunks} == {"PENDING"}
    assert chunks[1]["start"] == 20 and chunks[1]["end"] == 30 and chunks[1]["attempts"] == 0

    started = repo.start_chunk("f1", "CHUNK#00001")
    assert started["status"] == "RUNNING" and started["attempts"] == 1
    done = repo.complete_chunk("f1", "CHUNK#00001", 5, 4, 1, "output/a", "rejected/a", output_sha256="ab")
    assert done["status"] == "SUCCEEDED" and done["rows_rejected"] == 1 and done["output_sha256"] == "ab"
    assert ISO.match(done["finished_at"])

    # A re-run of a SUCCEEDED chunk is allowed (identical output); the old keys are visible.
    again = repo.start_chunk("f1", "CHUNK#00001")
    assert again["attempts"] == 2 and again["rejects_key"] == "rejected/a"
    done = repo.complete_chunk("f1", "CHUNK#00001", 5, 5, 0, "output/a", None)
    assert "rejects_key" not in done

    repo.start_chunk("f1", "CHUNK#00002")
    assert repo.fail_chunk("f1", "CHUNK#00002", "x" * 10000) is True
    failed = repo.get_chunk("f1", "CHUNK#00002")
    assert failed["status"] == "FAILED" and len(failed["error"]) == 4000
    assert repo.start_chunk("f1", "CHUNK#00002")["attempts"] == 2  # FAILED -> RUNNING
    assert "error" not in repo.get_chunk("f1", "CHUNK#00002")
    # fail_chunk never overwrites a success.
    assert repo.fail_chunk("f1", "CHUNK#00001", "late") is False
    assert repo.get_chunk("f1", "CHUNK#00001")["status"] == "SUCCEEDED"


def test_complete_requires_running(etl_aws):
    repo = etl_aws.repo
    repo.put_chunks("f1", _chunks(1))
    with pytest.raises(InvalidFileState, match="is PENDING; cannot mark it SUCCEEDED"):
        repo.complete_chunk("f1", "CHUNK#00001", 1, 1, 0, "o", None)


def test_start_unplanned_chunk_fails(etl_aws):
    with pytest.raises(InvalidFileState, match="never planned"):
        etl_aws.repo.start_chunk("f1", "CHUNK#00009")


def test_put_chunks_overwrites_and_paginates(etl_aws):
    repo = etl_aws.repo
    repo.put_chunks("f1", _chunks(60))
    repo.start_chunk("f1", "CHUNK#00001")
    repo.put_chunks("f1", _chunks(60))  # re-plan: identical items, PENDING again
    chunks = repo.list_chunks("f1")
    assert len(chunks) == 60 and chunks[0]["status"] == "PENDING" and chunks[0]["attempts"] == 0
    repo.delete_chunks("f1", [c["chunk_id"] for c in chunks[30:]])
    assert len(repo.list_chunks("f1")) == 30
    repo.register_file(_file())
    assert len(repo.list_chunks("f1")) == 30  # the FILE item is not a chunk
    with pytest.raises(ValueError):
        repo.put_chunks("f1", [{"chunk_id": "FILE"}])


def test_list_chunks_follows_pages(etl_aws):
    repo = etl_aws.repo
    repo.put_chunks("f1", _chunks(5))
    real = clients.dynamodb().get_paginator

    def small_pages(name):
        pager = real(name)
        orig = pager.paginate
        pager.paginate = lambda **kw: orig(PaginationConfig={"PageSize": 2}, **kw)
        return pager

    with mock.patch.object(clients.dynamodb(), "get_paginator", side_effect=small_pages):
        assert len(repo.list_chunks("f1")) == 5


def test_list_files_filters(etl_aws):
    repo = etl_aws.repo
    repo.register_file(_file("a", created_at="2026-01-01T00:00:00.000Z"))
    repo.register_file(_file("b", created_at="2026-02-01T00:00:00.000Z"))
    repo.put_chunks("a", _chunks(2))
    repo.transition_file("b", {"REGISTERED"}, "FAILED")
    assert [f["file_id"] for f in repo.list_files()] == ["a", "b"]
    assert [f["file_id"] for f in repo.list_files(status="FAILED")] == ["b"]
    assert [f["file_id"] for f in repo.list_files(since="2026-01-15T00:00:00Z")] == ["b"]
    assert repo.list_files(status="SUCCEEDED") == []


def test_throttling_becomes_transient(etl_aws):
    repo = StatusRepository(etl_aws.table_name)
    with Stubber(clients.dynamodb()) as stub:
        stub.add_client_error("get_item", "ProvisionedThroughputExceededException", http_status_code=400)
        with pytest.raises(TransientError, match="ProvisionedThroughputExceeded"):
            repo.get_file("f1")


def test_unprocessed_batch_items_are_retried(etl_aws):
    repo = etl_aws.repo
    client = clients.dynamodb()
    real = client.batch_write_item
    calls = []

    def flaky(RequestItems):
        calls.append(len(RequestItems[etl_aws.table_name]))
        if len(calls) == 1:  # first call: DynamoDB processes only the first item
            items = RequestItems[etl_aws.table_name]
            real(RequestItems={etl_aws.table_name: items[:1]})
            return {"UnprocessedItems": {etl_aws.table_name: items[1:]}}
        return real(RequestItems=RequestItems)

    with mock.patch.object(client, "batch_write_item", side_effect=flaky), mock.patch("time.sleep"):
        repo.put_chunks("f1", _chunks(3))
    assert calls == [3, 2]
    assert len(repo.list_chunks("f1")) == 3


def test_utc_now_format():
    assert ISO.match(utc_now())
