"""OPS1/OPS3/OPS4: the reconcile function on moto (status-change events, sweep, freshness,
outbox)."""

from __future__ import annotations

import datetime
import json
from typing import Any

import boto3
import pytest

from etl import contracts
from etl.handlers import reconcile

ARN = "arn:aws:states:us-east-1:123456789012:execution:etl-pipeline-test:run-1"
SM_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:etl-pipeline-test"


@pytest.fixture
def ops(etl_aws: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The alert topic with a queue subscribed (to count alerts) and the result FIFO queue."""
    sns = boto3.client("sns", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    topic = sns.create_topic(Name="etl-alerts-test")["TopicArn"]
    alerts_url = sqs.create_queue(QueueName="alerts-copy")["QueueUrl"]
    alerts_arn = sqs.get_queue_attributes(QueueUrl=alerts_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=alerts_arn)
    results_url = sqs.create_queue(
        QueueName="etl-results-test.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"},
    )["QueueUrl"]
    monkeypatch.setenv("ALERT_TOPIC_ARN", topic)
    monkeypatch.setenv("RESULT_QUEUE_URL", results_url)

    class Ops:
        def alerts(self) -> list[dict[str, Any]]:
            out = []
            while True:
                got = sqs.receive_message(QueueUrl=alerts_url, MaxNumberOfMessages=10).get("Messages", [])
                if not got:
                    return out
                for m in got:
                    out.append(json.loads(m["Body"]))
                    sqs.delete_message(QueueUrl=alerts_url, ReceiptHandle=m["ReceiptHandle"])

        def results(self) -> list[dict[str, Any]]:
            got = sqs.receive_message(
                QueueUrl=results_url, MaxNumberOfMessages=10, AttributeNames=["MessageDeduplicationId"]
            ).get("Messages", [])
            for m in got:
                sqs.delete_message(QueueUrl=results_url, ReceiptHandle=m["ReceiptHandle"])
            return got

    o = Ops()
    o.sqs, o.results_url, o.topic = sqs, results_url, topic  # type: ignore[attr-defined]
    return o


def _status_event(status: str, execution_input: Any, arn: str = ARN, **extra: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "source": "aws.states",
        "detail-type": reconcile.STATUS_CHANGE,
        "detail": {
            "executionArn": arn,
            "stateMachineArn": SM_ARN,
            "name": arn.rsplit(":", 1)[-1],
            "status": status,
            "input": json.dumps(execution_input),
            **extra,
        },
    }


def _half_processed(chain: Any, key: str = "incoming/acme/tx.csv", arn: str = ARN) -> tuple[dict, dict]:
    """A file stopped mid-Map: registered by ``arn``, planned, chunk 1 written (Parquet)."""
    event = chain.upload(key, chain.make_csv(120, bad=(3,)))
    state: dict[str, Any] = {"file": chain.register({"event": event, "execution_arn": arn}, None)}
    state["header"] = chain.validate({"file": state["file"]}, None)
    state["plan"] = chain.plan(dict(state), None)
    chain.process({**state, "chunk": state["plan"]["chunks"][0]}, None)
    return event, state


def test_OPS1_a_stopped_execution_fails_its_file_once(chain: Any, etl_aws: Any, ops: Any) -> None:
    event, state = _half_processed(chain)
    fid = state["file"]["file_id"]
    assert etl_aws.keys("output/") and etl_aws.keys("rejected/")
    assert etl_aws.repo.get_file(fid)["status"] == "PROCESSING"

    out = reconcile.handler(_status_event("ABORTED", event, error="Stopped", cause="operator stop"), None)

    assert out["action"] == "failed" and out["file_id"] == fid
    item = etl_aws.repo.get_file(fid)
    assert item["status"] == "FAILED" and item["error_type"] == "Stopped"
    assert "operator stop" in item["error"] and "ABORTED" in item["error"]
    assert contracts.OPEN_STATE not in item  # off the sweep's index
    assert etl_aws.keys("incoming/") == []
    assert etl_aws.keys("failed/") == [f"failed/acme/{fid}/tx.csv"]
    # Unpublished data gone; the rejects CSV stays for the partner (TBL7).
    assert etl_aws.keys("output/") == [] and etl_aws.keys("rejected/")
    assert {c["status"] for c in etl_aws.repo.list_chunks(fid)} <= {"SUCCEEDED", "FAILED"}
    sent = ops.alerts()
    assert len(sent) == 1
    assert sent[0]["Subject"].startswith("ETL FAILED acme/tx.csv")
    assert f"etl reprocess {fid}" in sent[0]["Message"]
    attrs = {k: v["Value"] for k, v in sent[0]["MessageAttributes"].items()}
    assert attrs == {"file_id": fid, "partner": "acme", "status": "FAILED", "error_type": "Stopped"}

    # EventBridge delivers at least once: the same event again changes nothing, alerts nobody.
    again = reconcile.handler(_status_event("ABORTED", event, error="Stopped", cause="operator stop"), None)
    assert again["action"] == "none" and ops.alerts() == []

    # A reconciled file can be reprocessed (RegisterFile accepts FAILED).
    file = chain.register({"event": {"reprocess": {"file_id": fid}}, "execution_arn": ARN + "-re"}, None)
    assert file["key"] == f"failed/acme/{fid}/tx.csv"
    assert etl_aws.repo.get_file(fid)[contracts.OPEN_STATE] == contracts.OPEN_IN_FLIGHT


def test_OPS1_a_file_markfailed_handled_is_left_alone(chain: Any, etl_aws: Any, ops: Any) -> None:
    run = chain.upload_and_run("incoming/acme/bad.csv", chain.make_csv(30).replace(b"currency", b"ccy", 1))
    assert run.failure is not None
    out = reconcile.handler(_status_event("FAILED", run.state, error="FileFailed"), None)
    assert out["action"] == "none" and ops.alerts() == []


def test_OPS1_another_executions_file_is_not_touched(chain: Any, etl_aws: Any, ops: Any) -> None:
    event, state = _half_processed(chain)
    out = reconcile.handler(_status_event("FAILED", event, arn=ARN + "-duplicate"), None)
    assert out["action"] == "none"
    assert etl_aws.repo.get_file(state["file"]["file_id"])["status"] == "PROCESSING"
    assert ops.alerts() == []


def test_OPS1_a_reprocess_request_and_an_unknown_input_find_their_file(
    chain: Any, etl_aws: Any, ops: Any
) -> None:
    _, state = _half_processed(chain)
    fid = state["file"]["file_id"]
    # The input says nothing usable: the in-flight file whose execution_arn matches is found.
    out = reconcile.handler(_status_event("TIMED_OUT", {"something": "else"}), None)
    assert out["action"] == "failed" and out["file_id"] == fid
    assert etl_aws.repo.get_file(fid)["error_type"] == "ExecutionTimedOut"
    assert len(ops.alerts()) == 1
    assert reconcile.find_file_id({"reprocess": {"file_id": "abc"}}, ARN, etl_aws.repo) == "abc"


def test_OPS1_stopped_before_registration_registers_the_file_failed(
    chain: Any, etl_aws: Any, ops: Any
) -> None:
    event = chain.upload("incoming/acme/early.csv", chain.make_csv(3))
    out = reconcile.handler(_status_event("ABORTED", event), None)
    assert out["action"] == "failed"
    item = etl_aws.repo.get_file(out["file_id"])
    assert item["status"] == "FAILED" and etl_aws.keys("failed/") == [item["failed_key"]]
    assert len(ops.alerts()) == 1


def _execution(status: str) -> str:
    """A real (moto) execution in ``status`` (RUNNING or ABORTED)."""
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    machine = sfn.create_state_machine(
        name="etl-pipeline-test",
        definition=json.dumps({"StartAt": "W", "States": {"W": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/x",
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, name=f"run-{status}")["executionArn"]
    if status != "RUNNING":
        sfn.stop_execution(executionArn=arn)
    return str(arn)


def test_OPS1_the_sweep_reconciles_stale_files_whose_execution_is_not_running(
    chain: Any, etl_aws: Any, ops: Any
) -> None:
    stopped, running = _execution("ABORTED"), _execution("RUNNING")
    _, stale = _half_processed(chain, "incoming/acme/stale.csv", arn=stopped)
    _, busy = _half_processed(chain, "incoming/acme/busy.csv", arn=running)
    now = datetime.datetime.now(datetime.timezone.utc)

    # Not yet past the bound: nothing happens.
    assert reconcile.sweep(etl_aws.repo, now)["stale"] == []
    later = now + datetime.timedelta(seconds=contracts.STALE_AFTER_SECONDS + 1)
    out = reconcile.sweep(etl_aws.repo, later)

    assert out["stale"] == out["reconciled"] == [stale["file"]["file_id"]]
    item = etl_aws.repo.get_file(stale["file"]["file_id"])
    assert item["status"] == "FAILED" and item["error_type"] == "StaleFile"
    assert "ABORTED" in item["error"]
    assert etl_aws.repo.get_file(busy["file"]["file_id"])["status"] == "PROCESSING"  # still running
    sent = ops.alerts()
    assert len(sent) == 1 and "sweep" in sent[0]["Message"]
    # The next sweep finds nothing more (so StaleFiles goes back to 0).
    assert reconcile.sweep(etl_aws.repo, later)["stale"] == []


def test_OPS1_an_unknown_execution_is_stale_only_after_the_execution_timeout(
    chain: Any, etl_aws: Any, ops: Any
) -> None:
    _, state = _half_processed(
        chain, arn="arn:aws:states:us-east-1:123456789012:execution:etl-pipeline-test:gone"
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    soon = now + datetime.timedelta(seconds=contracts.STALE_AFTER_SECONDS + 1)
    assert reconcile.sweep(etl_aws.repo, soon)["stale"] == []
    late = now + datetime.timedelta(seconds=contracts.STALE_UNKNOWN_EXECUTION_SECONDS + 1)
    assert reconcile.sweep(etl_aws.repo, late)["reconciled"] == [state["file"]["file_id"]]


def test_OPS1_the_stale_bound_comes_from_the_function_environment(
    chain: Any, etl_aws: Any, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-c staleAfterMinutes reaches the function as STALE_AFTER_SECONDS; the sweep obeys it, at
    the boundary (>=), for a known ended execution and (plus the execution timeout) an unknown one."""
    monkeypatch.setenv("STALE_AFTER_SECONDS", "120")
    _, stale = _half_processed(chain, "incoming/acme/stale.csv", arn=_execution("ABORTED"))
    since = datetime.datetime.fromisoformat(
        str(etl_aws.repo.get_file(stale["file"]["file_id"])[contracts.OPEN_SINCE]).replace("Z", "+00:00")
    )
    assert reconcile.sweep(etl_aws.repo, since + datetime.timedelta(seconds=119))["stale"] == []
    at_bound = reconcile.sweep(etl_aws.repo, since + datetime.timedelta(seconds=120))
    assert at_bound["reconciled"] == [stale["file"]["file_id"]]
    _, gone = _half_processed(
        chain, "incoming/acme/gone.csv", arn="arn:aws:states:us-east-1:123456789012:execution:x:gone"
    )
    unknown = contracts.EXECUTION_TIMEOUT_SECONDS + 120
    now = datetime.datetime.now(datetime.timezone.utc)
    assert reconcile.sweep(etl_aws.repo, now + datetime.timedelta(seconds=unknown - 5))["stale"] == []
    late = reconcile.sweep(etl_aws.repo, now + datetime.timedelta(seconds=unknown + 5))
    assert late["reconciled"] == [gone["file"]["file_id"]]
    monkeypatch.setenv("STALE_AFTER_SECONDS", "0")
    with pytest.raises(ValueError, match="STALE_AFTER_SECONDS must be a positive integer"):
        reconcile.sweep(etl_aws.repo, now)


def _succeeded_not_notified(chain: Any, etl_aws: Any) -> str:
    run = chain.upload_and_run("incoming/acme/ok.csv", chain.make_csv(30))
    assert run.error is None
    fid = run.state["file"]["file_id"]
    item = etl_aws.repo.get_file(fid)
    assert item["status"] == "SUCCEEDED" and item["notified"] is False
    assert item[contracts.OPEN_STATE] == contracts.OPEN_NOT_NOTIFIED
    # The item keeps the message; Finalize's output adds the ShouldAnnounce decision (DR2/DR3).
    assert {**item["result"], "announce": True} == run.state["result"]
    return fid


def test_OPS4_notify_resends_with_its_own_dedup_id_and_records_it(chain: Any, etl_aws: Any, ops: Any) -> None:
    fid = _succeeded_not_notified(chain, etl_aws)
    out = reconcile.handler({"mode": "notify", "file_id": fid}, None)
    assert out["sent"] is True and out["dedup_id"] == f"{fid}#1"
    got = ops.results()
    assert len(got) == 1
    body = json.loads(got[0]["Body"])
    assert body["file_id"] == fid and body["rows_total"] == 30 and body["notify_attempt"] == 1
    assert got[0]["Attributes"]["MessageDeduplicationId"] == f"{fid}#1"
    item = etl_aws.repo.get_file(fid)
    assert item["notified"] is True and contracts.OPEN_STATE not in item
    # Already notified: only --force sends again, with a new id (not swallowed by FIFO dedup).
    assert reconcile.handler({"mode": "notify", "file_id": fid}, None)["sent"] is False
    forced = reconcile.handler({"mode": "notify", "file_id": fid, "force": True}, None)
    assert forced["dedup_id"] == f"{fid}#2" and len(ops.results()) == 1


def test_OPS4_a_failed_resend_keeps_the_file_not_notified_and_alerts_once(
    chain: Any, etl_aws: Any, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fid = _succeeded_not_notified(chain, etl_aws)
    monkeypatch.setenv("RESULT_QUEUE_URL", ops.results_url + "-deleted")
    from botocore.exceptions import ClientError

    for _ in range(2):
        with pytest.raises(ClientError):
            reconcile.handler({"mode": "notify", "file_id": fid}, None)
    item = etl_aws.repo.get_file(fid)
    assert item["status"] == "SUCCEEDED" and item["notified"] is False and item["notify_error"]
    alerts = ops.alerts()
    assert len(alerts) == 1 and alerts[0]["Subject"].startswith("ETL RESULT NOT SENT")
    # The sweep re-sends it once the queue is back.
    monkeypatch.setenv("RESULT_QUEUE_URL", ops.results_url)
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    assert reconcile.sweep(etl_aws.repo, later)["resent"] == [fid]
    assert len(ops.results()) == 1 and etl_aws.repo.get_file(fid)["notified"] is True


def test_OPS4_a_status_change_after_success_resends_or_records(chain: Any, etl_aws: Any, ops: Any) -> None:
    fid = _succeeded_not_notified(chain, etl_aws)
    execution_input = {"reprocess": {"file_id": fid}}
    # The result was sent but notified could not be recorded: record it, send nothing.
    arn = chain.execution_arn  # the execution that succeeded the file
    out = reconcile.handler(_status_event("FAILED", execution_input, arn, error="NotifiedNotRecorded"), None)
    assert out["action"] == "recorded" and ops.results() == []
    assert etl_aws.repo.get_file(fid)["notified"] is True
    etl_aws.repo.mark_not_notified(fid, "simulated")
    out = reconcile.handler(_status_event("FAILED", execution_input, arn, error="ResultNotSent"), None)
    assert out["action"] == "notify" and len(ops.results()) == 1


def test_OPS3_freshness_alerts_once_per_due_time(chain: Any, etl_aws: Any, ops: Any) -> None:
    # acme_bank declares "x-etl-due-by": "06:00Z"; nothing from it was ever registered.
    now = datetime.datetime(2026, 11, 30, 7, 0, tzinfo=datetime.timezone.utc)
    assert reconcile.freshness(etl_aws.repo, now)["missing"] == ["acme_bank"]
    sent = ops.alerts()
    assert (
        len(sent) == 1 and sent[0]["Subject"] == "ETL MISSING acme_bank: no file by 2026-11-30T06:00:00.000Z"
    )
    assert sent[0]["MessageAttributes"]["status"]["Value"] == "MISSING"
    assert reconcile.freshness(etl_aws.repo, now + datetime.timedelta(hours=1))["missing"] == ["acme_bank"]
    assert ops.alerts() == []  # once per due time
    # A file registered (now, in real time) clears it for the next due time.
    chain.register({"event": chain.upload("incoming/acme_bank/d.csv", b"x\n"), "execution_arn": ARN}, None)
    real_now = datetime.datetime.now(datetime.timezone.utc)
    assert reconcile.freshness(etl_aws.repo, real_now + datetime.timedelta(hours=1))["missing"] == []


def test_last_due() -> None:
    at = datetime.datetime(2026, 11, 30, 5, 59, tzinfo=datetime.timezone.utc)
    assert reconcile.last_due(at, 6, 0) == datetime.datetime(2026, 11, 29, 6, 0, tzinfo=datetime.timezone.utc)
    assert reconcile.last_due(at.replace(hour=6, minute=0), 6, 0) == at.replace(hour=6, minute=0)


def test_unknown_input_is_refused(etl_aws: Any) -> None:
    from etl.errors import InvalidEvent

    with pytest.raises(InvalidEvent):
        reconcile.handler({"mode": "nope"}, None)


def test_SEC4_the_sweep_redelivers_the_event_of_an_object_without_a_status_item(
    chain: Any, etl_aws: Any, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl.handlers import register

    buffer_url = ops.sqs.create_queue(QueueName="etl-buffer-test")["QueueUrl"]
    monkeypatch.setenv("BUFFER_QUEUE_URL", buffer_url)
    seen, _ = _half_processed(chain, "incoming/acme/seen.csv")
    lost = "incoming/acme/Q1 résumé+lost.csv"  # its event never arrived (and S3 would encode it)
    put = etl_aws.put(lost, chain.make_csv(3))
    now = datetime.datetime.now(datetime.timezone.utc)

    # Younger than the stale bound: it may still be in flight.
    assert reconcile.sweep(etl_aws.repo, now)["unseen"] == []
    later = now + datetime.timedelta(seconds=contracts.STALE_AFTER_SECONDS + 1)
    assert reconcile.sweep(etl_aws.repo, later)["unseen"] == [lost]
    (message,) = ops.sqs.receive_message(QueueUrl=buffer_url, MaxNumberOfMessages=10)["Messages"]
    event = json.loads(message["Body"])
    # The re-delivered event is what S3 sends: RegisterFile registers exactly that version.
    file = register.handler({"event": event, "execution_arn": ARN}, None)
    assert (file["key"], file["version_id"]) == (lost, put["VersionId"])
    # Registered now: the next sweep finds nothing (UnseenFiles back to 0).
    assert reconcile.sweep(etl_aws.repo, later)["unseen"] == []
    assert seen
