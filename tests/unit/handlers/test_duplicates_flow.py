"""DATA4 through the handlers (moto): duplicate content ends DUPLICATE_CONTENT, --force loads
it; a transaction id repeated in a later chunk is rejected at Finalize, naming the first line."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import pyarrow.parquet as pq
import pytest

from etl.core.content import content_digest
from etl.errors import InvalidFileState
from etl.handlers import content, finalize


def _rows(aws, prefix):
    rows = []
    for key in aws.keys(prefix):
        rows += pq.read_table(io.BytesIO(aws.get(key))).to_pylist()
    return rows


def _rejects(aws, prefix):
    out = []
    for key in aws.keys(prefix):
        out += list(csv.DictReader(io.StringIO(aws.get(key).decode("utf-8"))))
    return out


def _output_prefix(fid, partner="default"):
    return f"output/transactions/partner={partner}/file_id={fid}/"


def test_DATA4a_identical_bytes_under_another_key_end_DUPLICATE_CONTENT(chain, etl_aws):
    data = chain.make_csv(150, bad=(20,))
    first = chain.upload_and_run("incoming/default/day1.csv", data)
    assert first.error is None, first.failure
    fid1 = first.state["file"]["file_id"]
    assert first.state["plan"]["content_digest"] == content_digest(data)
    outputs = {k: etl_aws.get(k) for k in etl_aws.keys("output/")}

    second = chain.upload_and_run("incoming/default/day1-copy.csv", data)
    assert second.error is None, second.failure
    fid2 = second.state["file"]["file_id"]
    assert second.state["plan"] == {
        "chunk_count": 0,
        "chunks": [],
        "content_digest": content_digest(data),
        "duplicate_content": True,
        "duplicate_of": fid1,
    }
    result = second.state["result"]
    assert result["status"] == "DUPLICATE_CONTENT" and result["duplicate_of"] == fid1
    assert result["message_group_id"] == "default" and result["dedup_id"] != fid2
    assert result["processed_key"] == f"processed/default/{fid2}/day1-copy.csv"
    # nothing processed or published for the copy; the source is parked in processed/
    assert etl_aws.repo.list_chunks(fid2) == []
    assert {k: etl_aws.get(k) for k in etl_aws.keys("output/")} == outputs
    assert (
        etl_aws.keys(_output_prefix(fid2)) == []
        and etl_aws.keys(f"rejected/partner=default/file_id={fid2}/") == []
    )
    assert etl_aws.keys(f"manifests/default/{fid2}") == [] and etl_aws.keys("incoming/") == []
    assert etl_aws.get(result["processed_key"]) == data
    item = etl_aws.repo.get_file(fid2)
    assert item["status"] == "DUPLICATE_CONTENT" and item["duplicate_of"] == fid1
    assert item["content_digest"] == content_digest(data)
    # Finalize is idempotent on this path too
    again = finalize.handler({**{k: second.state[k] for k in ("file", "header", "plan")}}, None)
    assert again == result

    # without --force: refused; with it: loaded like any file, its own rows published
    with pytest.raises(InvalidFileState, match="use --force"):
        chain.register({"event": {"reprocess": {"file_id": fid2}}, "execution_arn": "arn:no-force"}, None)
    forced = chain.run({"reprocess": {"file_id": fid2, "force": True}}, arn="arn:forced")
    assert forced.error is None, forced.failure
    assert forced.state["file"]["force"] is True
    assert forced.state["result"]["status"] == "SUCCEEDED"
    assert forced.state["result"]["rows_valid"] == 149
    assert len(_rows(etl_aws, _output_prefix(fid2))) == 149
    item = etl_aws.repo.get_file(fid2)
    assert item["status"] == "SUCCEEDED" and "duplicate_of" not in item
    # the registry still names the first file
    assert content.loaded_by(etl_aws.repo, "default", content_digest(data), "someone-else") == fid1


def test_DATA4a_gzip_copy_of_loaded_csv_is_the_same_content(chain, etl_aws, gzip_bytes):
    data = chain.make_csv(120)
    first = chain.upload_and_run("incoming/default/a.csv", data)
    assert first.error is None, first.failure
    second = chain.upload_and_run("incoming/default/a.csv.gz", gzip_bytes(data))
    assert second.error is None, second.failure
    assert second.state["result"]["status"] == "DUPLICATE_CONTENT"
    assert etl_aws.keys("scratch/") == []  # the scratch chunks the gzip split wrote are gone


def test_DATA4a_other_partner_or_other_bytes_are_loaded(chain, etl_aws):
    data = chain.make_csv(100)
    assert chain.upload_and_run("incoming/default/a.csv", data).state["result"]["status"] == "SUCCEEDED"
    # same bytes, another partner: not a duplicate (the registry is per partner)
    other = chain.upload_and_run("incoming/other/a.csv", data)
    assert other.error is None and other.state["result"]["status"] == "SUCCEEDED"
    # one byte more (a trailing newline): other content
    more = chain.upload_and_run("incoming/default/b.csv", data + b"\n")
    assert more.error is None and more.state["result"]["status"] == "SUCCEEDED"


def test_DATA4a_content_of_a_failed_file_is_not_registered(chain, etl_aws):
    data = chain.make_csv(100, bad=tuple(range(1, 20)))  # 19% rejects: fails the threshold
    assert chain.upload_and_run("incoming/default/a.csv", data).error is not None
    again = chain.upload_and_run("incoming/default/b.csv", data)
    assert again.state["plan"]["duplicate_content"] is False  # processed (and fails again)


def test_DATA4a_identical_file_finishing_second_in_a_race_is_unpublished(chain, etl_aws, monkeypatch):
    data = chain.make_csv(150)
    first = chain.upload_and_run("incoming/default/a.csv", data)
    assert first.error is None
    # the second one planned before the first registered its content (a race): it is processed...
    monkeypatch.setattr(content, "loaded_by", lambda *a, **k: None)
    second = chain.upload_and_run("incoming/default/b.csv", data)
    assert second.error is None, second.failure
    fid1, fid2 = first.state["file"]["file_id"], second.state["file"]["file_id"]
    # ...but Finalize loses the registry to the first and publishes nothing
    assert second.state["result"]["status"] == "DUPLICATE_CONTENT"
    assert second.state["result"]["duplicate_of"] == fid1
    assert etl_aws.keys(_output_prefix(fid2)) == []
    # ...its Iceberg data files were deleted and never committed
    assert etl_aws.keys(f"tables/transactions/data/file_id={fid2}/") == []
    assert etl_aws.keys(f"tables/transaction_rejects/data/file_id={fid2}/") == []
    item2 = etl_aws.repo.get_file(fid2)
    assert item2["status"] == "DUPLICATE_CONTENT" and item2.get("snapshot_id") is None
    assert item2.get("open_state") is None  # not in flight: reconcile leaves it alone


def _record_lines(data: bytes) -> list[int]:
    """First physical line of each record (header = line 1), by the csv module."""
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    next(reader)
    lines, start = [], reader.line_num + 1
    for _ in reader:
        lines.append(start)
        start = reader.line_num + 1
    return lines


def test_DATA4c_id_repeated_in_a_later_chunk_is_rejected_at_finalize(chain, etl_aws):
    n = 200
    text = chain.make_csv(n).decode()
    # record 150 (a later chunk: 2 KB chunks) repeats the id of record 3; record 151 repeats 150's
    text = text.replace("T000150,", "T000003,").replace("T000151,", "T000003,")
    data = text.encode()
    lines = _record_lines(data)
    run = chain.upload_and_run("incoming/default/dups.csv", data)
    assert run.error is None, run.failure
    plan = run.state["plan"]
    assert plan["chunk_count"] >= 3
    owner = [c for c in plan["chunks"] if c["first_line"] <= lines[149]][-1]
    assert owner["first_line"] > lines[2]  # the repeat really is in another chunk
    result = run.state["result"]
    assert (result["rows_total"], result["rows_valid"], result["rows_rejected"]) == (n, n - 2, 2)
    fid = run.state["file"]["file_id"]
    rows = _rows(etl_aws, result["output_prefix"])
    assert [r["transaction_id"] for r in rows].count("T000003") == 1
    assert len(rows) == n - 2
    rejected = _rejects(etl_aws, result["rejected_prefix"])
    assert [(int(r["line"]), r["column"]) for r in rejected] == [
        (lines[149], "transaction_id"),
        (lines[150], "transaction_id"),
    ]
    assert all(f"line {lines[2]}" in r["reason"] and "duplicate" in r["reason"] for r in rejected)
    assert rejected[0]["record"].startswith("T000003,ACC0000,2024-03-15,")
    # counts and checksums follow everywhere
    chunks = etl_aws.repo.list_chunks(fid)
    assert all(c["rows_in"] == c["rows_valid"] + c["rows_rejected"] for c in chunks)
    assert sum(c["rows_rejected"] for c in chunks) == 2
    manifest = json.loads(etl_aws.get(result["manifest_key"]))
    assert manifest["counts"]["rows_valid"] == n - 2 and manifest["counts"]["rows_rejected"] == 2
    for c in manifest["chunks"]:
        assert c["output"]["sha256"] == hashlib.sha256(etl_aws.get(c["output"]["key"])).hexdigest()
    item = etl_aws.repo.get_file(fid)
    assert (item["rows_valid"], item["rows_rejected"]) == (n - 2, 2)
    assert etl_aws.keys("scratch/") == []  # the id lists are removed with the scratch prefix
    # the Iceberg data files were rewritten before the commit: the published rows hold the id
    # once, the rejects data file carries the rule code "duplicate" with the repeated value
    data_rows = _rows(etl_aws, f"tables/transactions/data/file_id={fid}/")
    assert len(data_rows) == n - 2 == result["published_rows"]
    assert [r["transaction_id"] for r in data_rows].count("T000003") == 1
    assert lines[149] not in {r["line"] for r in data_rows}
    rej_rows = _rows(etl_aws, f"tables/transaction_rejects/data/file_id={fid}/")
    assert [(r["line"], r["column_name"], r["rule"], r["value"]) for r in rej_rows] == [
        (lines[149], "transaction_id", "duplicate", "T000003"),
        (lines[150], "transaction_id", "duplicate", "T000003"),
    ]
    assert sum(len(c.get("data_keys") or []) for c in chunks) >= len(plan["chunks"])


def test_DATA4c_finalize_retry_after_the_rewrite_changes_nothing(chain, etl_aws, monkeypatch):
    text = chain.make_csv(200).decode().replace("T000180,", "T000001,")
    event = chain.upload("incoming/default/dups.csv", text.encode())
    from etl.aws import s3

    # Finalize dies after rewriting the chunk (at the manifest put); the retry must not drop
    # another row or lose the reject.
    real_put = s3.put_bytes
    state = {"armed": True}

    def failing_put(bucket, key, *a, **k):
        if key.startswith("manifests/") and state["armed"]:
            state["armed"] = False
            raise RuntimeError("injected")
        return real_put(bucket, key, *a, **k)

    monkeypatch.setattr(s3, "put_bytes", failing_put)
    # A Lambda retry of Finalize: the same state again, no MarkFailed in between (MarkFailed
    # would delete the unpublished data files: a FAILED file leaves nothing, DATA2).
    monkeypatch.setattr(chain, "mark_failed", lambda state, context: None)
    run = chain.run(event)
    assert isinstance(run.error, RuntimeError)
    event = {"file": run.state["file"], "header": run.state["header"], "plan": run.state["plan"]}
    result = finalize.handler({**event, "execution_arn": "arn:retry"}, None)
    assert result["published_rows"] == 199
    assert (result["rows_valid"], result["rows_rejected"]) == (199, 1)
    assert len(_rows(etl_aws, result["output_prefix"])) == 199
    assert len(_rejects(etl_aws, result["rejected_prefix"])) == 1
