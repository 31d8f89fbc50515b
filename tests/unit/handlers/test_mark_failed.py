"""MarkFailed: reasons from Step Functions error shapes, quarantine, alerts, robustness."""

from __future__ import annotations

import json

import pytest

from etl.handlers import register
from etl.handlers.mark_failed import handler, parse_error, sns_subject

ARN = "arn:aws:states:us-east-1:123456789012:execution:etl-test:run-1"


def _cause(**kw):
    return json.dumps(kw)


@pytest.mark.parametrize(
    "error,expected",
    [
        (
            {
                "Error": "SchemaMismatch",
                "Cause": json.dumps({"errorType": "SchemaMismatch", "errorMessage": "m"}),
            },
            ("SchemaMismatch", "m"),
        ),
        (
            {"Error": "States.Timeout", "Cause": "Task timed out after 900 seconds"},
            ("States.Timeout", "Task timed out after 900 seconds"),
        ),
        ({"Error": "Lambda.Unknown", "Cause": ""}, ("Lambda.Unknown", "no cause given")),
        (
            {"Error": "States.TaskFailed", "Cause": json.dumps(["not", "a", "dict"])},
            ("States.TaskFailed", '["not", "a", "dict"]'),
        ),
        (None, ("UnknownError", "the execution failed without error details")),
    ],
)
def test_parse_error(error, expected):
    assert parse_error(error) == expected


def test_sns_subject_rules():
    s = sns_subject("ETL FAILED acme/Überweisungen\nMärz.csv: " + "x" * 200)
    assert len(s) <= 100 and s.isascii() and s.isprintable() and "\n" not in s
    assert s.endswith("...")
    assert sns_subject("\n\t") == "ETL alert"


def test_register_failure_with_a_bad_event_does_not_raise(etl_aws):
    state = {
        "hello": "world",
        "error": {"Error": "InvalidEvent", "Cause": json.dumps({"errorMessage": "bad"})},
    }
    out = handler(state, None)
    assert out["file_id"] is None and out["failed_key"] is None and out["status"] == "FAILED"
    assert out["reason"] == "InvalidEvent: bad"
    assert out["failed_step"] == "RegisterFile"


def test_register_failure_for_an_existing_object_registers_it_failed(chain, etl_aws):
    event = chain.upload("incoming/acme/tx.csv", chain.make_csv(3))
    state = {
        **event,
        "error": {"Error": "TransientError", "Cause": json.dumps({"errorMessage": "throttled"})},
    }
    out = handler(state, None)
    assert out["file_id"] and out["failed_key"] == f"failed/acme/{out['file_id']}/tx.csv"
    assert etl_aws.keys("incoming/") == [] and etl_aws.keys("failed/") == [out["failed_key"]]
    item = etl_aws.repo.get_file(out["file_id"])
    assert item["status"] == "FAILED" and item["error"] == "TransientError: throttled"
    # MarkFailed retried: same answer, nothing breaks.
    again = handler(state, None)
    assert again["failed_key"] == out["failed_key"]
    # ... and the file can be reprocessed from there.
    file = register.handler({"event": {"reprocess": {"file_id": out["file_id"]}}, "execution_arn": ARN}, None)
    assert file["key"] == out["failed_key"]


def test_register_failure_does_not_touch_a_file_owned_by_another_execution(chain, etl_aws):
    event = chain.upload("incoming/acme/tx.csv", chain.make_csv(3))
    register.handler({"event": event, "execution_arn": ARN}, None)  # the other execution
    state = {**event, "error": {"Error": "TransientError", "Cause": "x"}}
    out = handler(state, None)
    assert out["failed_key"] is None
    assert etl_aws.keys("incoming/") == ["incoming/acme/tx.csv"]
    assert etl_aws.repo.list_files()[0]["status"] == "REGISTERED"


def test_marks_file_and_running_chunks_failed_and_is_idempotent(chain, etl_aws):
    event = chain.upload("incoming/acme/tx.csv", chain.make_csv(120))
    state = {"file": register.handler({"event": event, "execution_arn": ARN}, None)}
    state["header"] = chain.validate({"file": state["file"]}, None)
    state["plan"] = chain.plan(dict(state), None)
    chain.process({**state, "chunk": state["plan"]["chunks"][0]}, None)
    etl_aws.repo.start_chunk(state["file"]["file_id"], "CHUNK#00002")
    state["error"] = chain.lambda_cause(RuntimeError("boom"))
    out = handler(state, None)
    fid = state["file"]["file_id"]
    statuses = [c["status"] for c in etl_aws.repo.list_chunks(fid)]
    assert statuses[0] == "SUCCEEDED" and set(statuses[1:]) == {"FAILED"}
    assert "aborted" in etl_aws.repo.get_chunk(fid, "CHUNK#00002")["error"]
    assert out["failed_step"] == "ProcessChunks"
    again = handler(state, None)  # a retried MarkFailed
    assert again["failed_key"] == out["failed_key"]
    assert etl_aws.keys("failed/") == [out["failed_key"]]


def test_missing_file_item_is_logged_not_raised(chain, etl_aws):
    event = chain.upload("incoming/acme/tx.csv", chain.make_csv(3))
    file = register.handler({"event": event, "execution_arn": ARN}, None)
    etl_aws.dynamodb.delete_item(
        TableName=etl_aws.table_name, Key={"file_id": {"S": file["file_id"]}, "chunk_id": {"S": "FILE"}}
    )
    out = handler({"file": file, "error": {"Error": "X", "Cause": "y"}}, None)
    assert out["status"] == "FAILED" and out["failed_key"]


def test_source_already_gone_is_not_an_error(chain, etl_aws):
    event = chain.upload("incoming/acme/tx.csv", chain.make_csv(3))
    file = register.handler({"event": event, "execution_arn": ARN}, None)
    etl_aws.s3.delete_object(Bucket=etl_aws.bucket, Key=file["key"], VersionId=file["version_id"])
    out = handler({"file": file, "error": {"Error": "X", "Cause": "y"}}, None)
    assert out["failed_key"] is None
    assert etl_aws.repo.get_file(file["file_id"])["status"] == "FAILED"


def test_a_succeeded_file_is_never_marked_failed(chain, etl_aws):
    run = chain.upload_and_run("incoming/acme/tx.csv", chain.make_csv(30))
    out = handler({**run.state, "error": {"Error": "X", "Cause": "late"}}, None)
    assert out["failed_key"] is None
    assert etl_aws.repo.get_file(run.state["file"]["file_id"])["status"] == "SUCCEEDED"
    assert etl_aws.keys("failed/") == []
    assert out["failed_step"] == "NotifyResult" and out["file_status"] == "SUCCEEDED"


def test_OPS3_the_alert_is_readable_text_with_machine_readable_attributes(chain, etl_aws):
    """Subject names status, partner and file; the body is plain text with the reason, the
    counts known at failure, where the source is and the exact reprocess command."""
    event = chain.upload("incoming/acme/März tx.csv", chain.make_csv(120))
    state = {"file": register.handler({"event": event, "execution_arn": ARN}, None)}
    state["header"] = chain.validate({"file": state["file"]}, None)
    state["plan"] = chain.plan(dict(state), None)
    done = chain.process({**state, "chunk": state["plan"]["chunks"][0]}, None)
    state["error"] = chain.lambda_cause(RuntimeError("disk full"))
    out = handler(state, None)
    fid = state["file"]["file_id"]
    subject = out["subject"]
    assert subject.startswith("ETL FAILED acme/M") and "tx.csv" in subject and fid[:12] in subject
    assert len(subject) <= 100 and subject.isascii() and subject.isprintable()
    body = out["message"]
    with pytest.raises(ValueError):
        json.loads(body)  # not a JSON dump
    assert "Reason:      RuntimeError: disk full" in body
    first = etl_aws.repo.get_chunk(fid, "CHUNK#00001")  # the one chunk that finished
    assert first["status"] == "SUCCEEDED" and done is not None
    counts = (first["rows_in"], first["rows_valid"], first["rows_rejected"])
    assert "Rows known at failure: total {}, valid {}, rejected {}".format(*counts) in body
    assert f"s3://{etl_aws.bucket}/{out['failed_key']}" in body
    assert f"  etl reprocess {fid}\n" in body
    assert out["attributes"] == {
        "file_id": fid,
        "partner": "acme",
        "status": "FAILED",
        "error_type": "RuntimeError",
    }
