"""RegisterFile: identity, conditional registration, duplicates, reprocess claims."""

from __future__ import annotations

import pytest

from etl.core.identity import file_id_for
from etl.errors import InvalidEvent, InvalidFileState
from etl.handlers.register import handler

ARN = "arn:aws:states:us-east-1:123456789012:execution:etl-test:run-1"


def test_registers_file_item_and_returns_file(chain, etl_aws):
    data = chain.make_csv(3)
    event = chain.upload("incoming/acme_bank/tx.csv", data)
    file = handler({"event": event, "execution_arn": ARN}, None)
    version = event["detail"]["object"]["version-id"]
    assert file == {
        "file_id": file_id_for("incoming/acme_bank/tx.csv", version, None),
        "bucket": etl_aws.bucket,
        "key": "incoming/acme_bank/tx.csv",
        "original_key": "incoming/acme_bank/tx.csv",
        "version_id": version,
        "size": len(data),
        "etag": event["detail"]["object"]["etag"],
        "partner": "acme_bank",
        "compression": "none",
        "duplicate": False,
        "force": False,
        "rollback": False,
    }
    item = etl_aws.repo.get_file(file["file_id"])
    assert item["status"] == "REGISTERED"
    assert item["execution_arn"] == ARN
    assert item["attempts"] == 1
    assert item["created_at"].endswith("Z")


def test_duplicate_event_is_refused(chain, etl_aws):
    event = chain.upload("incoming/p/tx.csv", chain.make_csv(3))
    first = handler({"event": event, "execution_arn": ARN}, None)
    second = handler({"event": event, "execution_arn": ARN.replace("run-1", "run-2")}, None)
    assert first["duplicate"] is False
    assert second["duplicate"] is True
    assert second["file_id"] == first["file_id"]
    assert etl_aws.repo.get_file(first["file_id"])["execution_arn"] == ARN  # untouched


def test_retry_of_the_same_execution_is_not_a_duplicate(chain):
    event = chain.upload("incoming/p/tx.csv", chain.make_csv(3))
    handler({"event": event, "execution_arn": ARN}, None)
    again = handler({"event": event, "execution_arn": ARN}, None)  # lost response, Lambda retried
    assert again["duplicate"] is False


def test_new_version_of_the_same_key_is_a_new_file(chain):
    first = handler({"event": chain.upload("incoming/p/tx.csv", b"a"), "execution_arn": ARN}, None)
    second = handler({"event": chain.upload("incoming/p/tx.csv", b"b"), "execution_arn": ARN + "2"}, None)
    assert first["file_id"] != second["file_id"]
    assert second["duplicate"] is False


@pytest.mark.parametrize(
    "key",
    ["incoming/acme_bank/daily report 2024.csv", "incoming/acme_bank/résumé+ü.csv", "incoming/x%41y.csv"],
)
def test_url_encoded_keys_are_decoded(chain, etl_aws, key):
    event = chain.upload(key, chain.make_csv(2))  # the event carries the key URL-encoded
    assert event["detail"]["object"]["key"] != key
    file = handler({"event": event, "execution_arn": ARN}, None)
    assert file["key"] == key
    assert file["partner"] == ("acme_bank" if "acme_bank" in key else "default")


@pytest.mark.parametrize("key", ["incoming/default/a+b.csv", "incoming/default/100%25 sure.csv"])
def test_a_raw_key_that_decoding_would_change_is_still_found(chain, etl_aws, key):
    event = chain.upload(key, chain.make_csv(2), encode=False)  # a producer that did not encode
    file = handler({"event": event, "execution_arn": ARN}, None)
    assert file["key"] == key
    assert file["duplicate"] is False


def test_a_key_missing_in_both_spellings_names_the_decoded_key(chain, etl_aws):
    event = chain.upload("incoming/default/a+b.csv", b"x")
    event["detail"]["object"]["key"] = "incoming/default/gone+file.csv"
    from etl.aws.s3 import SourceMissing

    with pytest.raises(SourceMissing, match=r"gone file\.csv"):
        handler({"event": event, "execution_arn": ARN}, None)


def test_unversioned_event_uses_etag_and_head(chain, etl_aws):
    event = chain.upload("incoming/p/tx.gz", b"\x1f\x8b")
    del event["detail"]["object"]["version-id"]
    del event["detail"]["object"]["size"]
    file = handler({"event": event, "execution_arn": ARN}, None)
    # The bucket is versioned, so HEAD supplies the version; size comes from HEAD too.
    versions = etl_aws.s3.list_object_versions(Bucket=etl_aws.bucket, Prefix="incoming/p/tx.gz")["Versions"]
    assert file["version_id"] == versions[0]["VersionId"]
    assert file["size"] == 2
    assert file["compression"] == "gzip"


def test_object_gone_before_registration(chain, etl_aws):
    event = chain.upload("incoming/p/tx.csv", b"x")
    etl_aws.s3.delete_object(
        Bucket=etl_aws.bucket, Key="incoming/p/tx.csv", VersionId=event["detail"]["object"]["version-id"]
    )
    from etl.aws.s3 import SourceMissing

    with pytest.raises(SourceMissing, match="does not exist"):
        handler({"event": event, "execution_arn": ARN}, None)


@pytest.mark.parametrize(
    "bad",
    [
        {"source": "aws.ec2", "detail-type": "Object Created"},
        {"source": "aws.s3", "detail-type": "Object Created", "detail": {}},
        {"hello": "world"},
        {"reprocess": "abc"},
        {"reprocess": {}},
    ],
)
def test_invalid_events(etl_aws, bad):
    with pytest.raises(InvalidEvent):
        handler({"event": bad, "execution_arn": ARN}, None)


def test_keys_outside_incoming_and_folder_markers_are_invalid(chain):
    for key in ("processed/p/x.csv", "incoming/p/"):
        event = chain.upload(key, b"")
        with pytest.raises(InvalidEvent):
            handler({"event": event, "execution_arn": ARN}, None)


def test_reprocess_requires_failed_and_claims_it(chain, etl_aws):
    event = chain.upload("incoming/p/tx.csv", chain.make_csv(3))
    file = handler({"event": event, "execution_arn": ARN}, None)
    with pytest.raises(InvalidFileState, match="status is REGISTERED"):
        handler({"event": {"reprocess": {"file_id": file["file_id"]}}, "execution_arn": ARN + "b"}, None)
    with pytest.raises(InvalidFileState, match="no such file"):
        handler({"event": {"reprocess": {"file_id": "0" * 32}}, "execution_arn": ARN + "b"}, None)

    # As MarkFailed leaves it: FAILED, source under failed/.
    failed = f"failed/p/{file['file_id']}/tx.csv"
    etl_aws.s3.copy_object(
        Bucket=etl_aws.bucket, Key=failed, CopySource={"Bucket": etl_aws.bucket, "Key": file["key"]}
    )
    etl_aws.repo.transition_file(
        file["file_id"], {"REGISTERED"}, "FAILED", failed_key=failed, key=failed, error="x"
    )

    again = handler({"event": {"reprocess": {"file_id": file["file_id"]}}, "execution_arn": ARN + "b"}, None)
    assert again["key"] == failed
    assert again["original_key"] == "incoming/p/tx.csv"
    assert again["file_id"] == file["file_id"] and again["duplicate"] is False
    item = etl_aws.repo.get_file(file["file_id"])
    assert item["status"] == "REGISTERED" and item["attempts"] == 2 and "error" not in item
    # The claim's own retry is accepted; another execution's claim is refused.
    retry = handler({"event": {"reprocess": {"file_id": file["file_id"]}}, "execution_arn": ARN + "b"}, None)
    assert retry == again
    assert etl_aws.repo.get_file(file["file_id"])["attempts"] == 2  # not claimed a second time
    with pytest.raises(InvalidFileState):
        handler({"event": {"reprocess": {"file_id": file["file_id"]}}, "execution_arn": ARN + "c"}, None)


def test_unversioned_bucket_identity_is_the_etag(chain, etl_aws):
    etl_aws.s3.create_bucket(Bucket="etl-unversioned-test")
    put = etl_aws.s3.put_object(Bucket="etl-unversioned-test", Key="incoming/p/tx.csv", Body=b"abc")
    event = chain.s3_event("etl-unversioned-test", "incoming/p/tx.csv", put, 3)
    assert "version-id" not in event["detail"]["object"]
    file = handler({"event": event, "execution_arn": ARN}, None)
    assert file["version_id"] is None
    assert file["file_id"] == file_id_for("incoming/p/tx.csv", None, put["ETag"])
    again = handler({"event": event, "execution_arn": ARN + "2"}, None)
    assert again["duplicate"] is True
