"""DR2/DR3 in the handlers: the region role switch (etl/aws/role.py), a standby region that
sends nothing and records what it would have sent, the announcement ledger that stops a file
from being announced twice, and the outbox drain a promotion runs."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from etl import contracts
from etl.aws import role
from etl.handlers import reconcile

from .test_reconcile import ops  # noqa: F401  (fixture)

PARAM = "/transaction-etl/test/region-role"


def _set_role(value: str) -> None:
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name=PARAM, Value=value, Type="String", Overwrite=True
    )
    role.clear_cache()


def _ledger(etl_aws: Any) -> list[str]:
    got = boto3.client("s3", region_name="us-east-1").list_objects_v2(
        Bucket=etl_aws.bucket, Prefix=contracts.ANNOUNCED_PREFIX
    )
    return [o["Key"] for o in got.get("Contents", [])]


def test_DR3_role_from_parameter_default_when_absent_and_cached(
    etl_aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert role.region_role() == "active"  # no parameter: DEFAULT_REGION_ROLE
    monkeypatch.setenv("DEFAULT_REGION_ROLE", "standby")
    role.clear_cache()
    assert role.region_role() == "standby"
    _set_role("ACTIVE ")
    assert role.region_role(now=0.0) == "active"
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name=PARAM, Value="standby", Type="String", Overwrite=True
    )
    assert role.region_role(now=1.0) == "active"  # cached within ROLE_CACHE_SECONDS
    assert role.region_role(now=1.0 + role.ROLE_CACHE_SECONDS) == "standby"
    _set_role("bogus")  # a typo never silences a region nor makes both announce: the default
    assert role.region_role() == "standby"
    monkeypatch.delenv("REGION_ROLE_PARAMETER")
    monkeypatch.delenv("DEFAULT_REGION_ROLE")
    assert role.region_role() == "active"  # a stack from before the switch keeps announcing


def test_DR2_standby_finalize_does_not_announce_and_keeps_the_outbox(chain: Any, etl_aws: Any) -> None:
    _set_role("standby")
    run = chain.upload_and_run("incoming/acme/standby.csv", chain.make_csv(20))
    assert run.error is None and run.state["result"]["announce"] is False
    item = etl_aws.repo.get_file(run.state["file"]["file_id"])
    assert item["status"] == "SUCCEEDED" and item["notified"] is False
    assert item[contracts.OPEN_STATE] == contracts.OPEN_NOT_NOTIFIED  # stays in the outbox
    assert item["announce_suppressed"]["region_role"] == "standby"
    assert item["result"]["file_id"] == item["file_id"]  # what it would have sent


def test_DR2_standby_markfailed_records_the_alert_instead_of_paging(chain: Any, etl_aws: Any) -> None:
    _set_role("standby")
    run = chain.upload_and_run("incoming/acme/bad.csv", b"wrong,header\n1,2\n")
    assert run.failure is not None and run.failure["alert"] is False
    assert run.failure["region_role"] == "standby"
    item = etl_aws.repo.get_file(run.failure["file_id"])
    assert item["status"] == "FAILED"
    (suppressed,) = item["suppressed_alerts"]
    assert suppressed["subject"] == run.failure["subject"] and suppressed["region_role"] == "standby"
    _set_role("active")
    again = chain.upload_and_run("incoming/acme/bad2.csv", b"wrong,header\n1,2\n")
    assert again.failure is not None and again.failure["alert"] is True


def test_DR2_standby_reconcile_sends_no_result_and_no_alert(chain: Any, etl_aws: Any, ops: Any) -> None:  # noqa: F811
    _set_role("standby")
    run = chain.upload_and_run("incoming/acme/s.csv", chain.make_csv(10))
    fid = run.state["file"]["file_id"]
    out = reconcile.handler({"mode": "notify", "file_id": fid}, None)
    assert out["sent"] is False and "standby" in out["reason"]
    assert reconcile.handler({"mode": "drain"}, None)["drained"] is False
    assert (
        reconcile.publish_alert(etl_aws.repo, fid, {"subject": "x", "message": "y", "attributes": {}})
        is False
    )
    assert ops.results() == [] and ops.alerts() == [] and _ledger(etl_aws) == []
    assert etl_aws.repo.get_file(fid)["suppressed_alerts"][0]["subject"] == "x"


def test_DR3_promotion_drain_announces_each_unannounced_file_once(chain: Any, etl_aws: Any, ops: Any) -> None:  # noqa: F811
    _set_role("standby")
    a = chain.upload_and_run("incoming/acme/a.csv", chain.make_csv(10)).state["file"]["file_id"]
    b = chain.upload_and_run("incoming/acme/b.csv", chain.make_csv(11)).state["file"]["file_id"]
    # b was announced by the other region: its marker arrived by replication.
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket=etl_aws.bucket, Key=f"announced/acme/{b}.json", Body=b'{"status": "SUCCEEDED"}'
    )
    _set_role("active")
    out = reconcile.handler({"mode": "drain"}, None)
    assert out["resent"] == [a] and out["in_ledger"] == [b] and out["unsent"] == []
    got = ops.results()
    assert [json.loads(m["Body"])["file_id"] for m in got] == [a]
    assert f"announced/acme/{a}.json" in _ledger(etl_aws)  # written after the send
    assert etl_aws.repo.get_file(b)["notified"] is True  # by the ledger, not sent
    # Idempotent: a second drain (or the sweep) sends nothing.
    assert reconcile.handler({"mode": "drain"}, None)["resent"] == []
    assert ops.results() == []


def test_DR3_active_finalize_skips_a_file_in_the_ledger(chain: Any, etl_aws: Any) -> None:
    from etl.core.identity import file_id_for

    s3 = boto3.client("s3", region_name="us-east-1")

    def upload_with_marker(name: str, marker_status: str, rows: int) -> tuple[Any, str]:
        event = chain.upload(f"incoming/acme/{name}", chain.make_csv(rows))
        fid = file_id_for(f"incoming/acme/{name}", event["detail"]["object"]["version-id"], None)
        # The other region announced this very file (same key + version id): its marker is here.
        body = json.dumps({"status": marker_status}).encode()
        s3.put_object(Bucket=etl_aws.bucket, Key=f"announced/acme/{fid}.json", Body=body)
        return event, fid

    event, fid = upload_with_marker("dup.csv", "SUCCEEDED", 12)
    run = chain.run(event)
    assert run.error is None and run.state["file"]["file_id"] == fid
    assert run.state["result"]["announce"] is False
    item = etl_aws.repo.get_file(fid)
    assert item["notified"] is True and contracts.OPEN_STATE not in item
    # A marker of another outcome (a DUPLICATE_CONTENT message, later loaded with --force) does
    # not stop the SUCCEEDED message.
    event, fid = upload_with_marker("forced.csv", "DUPLICATE_CONTENT", 13)
    assert chain.run(event).state["result"]["announce"] is True


def test_DR2_standby_sweep_reconciles_stale_files_but_sends_nothing(
    chain: Any,
    etl_aws: Any,
    ops: Any,  # noqa: F811
) -> None:
    """The standby still keeps its own table honest (a stale file becomes FAILED, alert
    recorded, not sent) and re-sends no result."""
    import datetime

    from .test_reconcile import _execution, _half_processed

    _set_role("standby")
    _, stale = _half_processed(chain, "incoming/acme/stale.csv", arn=_execution("ABORTED"))
    done = chain.upload_and_run("incoming/acme/done.csv", chain.make_csv(10))
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
        seconds=contracts.STALE_AFTER_SECONDS + 1
    )
    out = reconcile.sweep(etl_aws.repo, later)
    fid = stale["file"]["file_id"]
    assert out == {"stale": [fid], "reconciled": [fid], "resent": [], "unsent": [], "unseen": []}
    item = etl_aws.repo.get_file(fid)
    assert item["status"] == "FAILED" and item["error_type"] == "StaleFile"
    assert item["suppressed_alerts"] and ops.alerts() == [] and ops.results() == []
    assert etl_aws.repo.get_file(done.state["file"]["file_id"])["notified"] is False
