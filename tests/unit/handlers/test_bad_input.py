"""RUN8: every kind of bad input ends in a clear status and reason, never a silent loss.

Each case runs the whole chain (with MarkFailed on the first error, as the state machine does)
and checks the typed error, the reason recorded on the file item, the quarantined source and
the alert."""

from __future__ import annotations

import gzip

import pytest

from etl.errors import (
    CorruptGzip,
    EmptyFile,
    InvalidEncoding,
    MalformedCsv,
    RecordTooLarge,
    SchemaMismatch,
    TooManyRejects,
)


def _header(chain) -> bytes:
    return chain.header.encode() + b"\n"


def _rows(chain, first: int, last: int) -> bytes:
    return "".join(chain.row(i) + "\n" for i in range(first, last + 1)).encode()


CASES = {
    "empty file": (lambda c: b"", EmptyFile, "empty"),
    "header only": (lambda c: _header(c), EmptyFile, "no data rows"),
    "BOM only": (lambda c: b"\xef\xbb\xbf", EmptyFile, "only a UTF-8 byte order mark"),
    "wrong header": (
        lambda c: _header(c).replace(b"currency", b"ccy") + _rows(c, 1, 5),
        SchemaMismatch,
        "currency",
    ),
    "wrong delimiter": (
        lambda c: _header(c).replace(b",", b";") + _rows(c, 1, 5).replace(b",", b";"),
        SchemaMismatch,
        "the schema's delimiter is ',' but the header contains ';'",
    ),
    "unterminated quote": (
        lambda c: (
            _header(c)
            + _rows(c, 1, 30)
            + b'T999,ACC1,2024-01-01,,1.00,USD,DEBIT,"never closed\n'
            + _rows(c, 31, 40)
        ),
        MalformedCsv,
        "quote",
    ),
    "invalid UTF-8 in the header line": (
        lambda c: _header(c).replace(b"currency", b"curr\xe9ncy") + _rows(c, 1, 3),
        InvalidEncoding,
        "UTF-8",
    ),
    "binary garbage": (
        lambda c: bytes(range(256)) * 40,
        InvalidEncoding,
        "NUL byte at offset 0 of the header line: this is not a text CSV file",
    ),
    "gzip body under a .csv name": (
        lambda c: gzip.compress(_header(c) + _rows(c, 1, 5), mtime=0),
        InvalidEncoding,
        "the file starts with the gzip magic bytes 1f 8b",
    ),
    "record larger than MAX_RECORD_BYTES": (
        lambda c: _header(c) + _rows(c, 1, 30) + c.row(31, desc="x" * 5000).encode() + b"\n",
        RecordTooLarge,
        "(line 32) is longer than the maximum record size of 1024 bytes",
    ),
    "ragged rows above the threshold": (
        lambda c: _header(c) + _rows(c, 1, 50) + b"T1,ACC1,2024-01-01\n" * 5,
        TooManyRejects,
        "5 of 55 rows rejected",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_csv_fails_with_a_clear_reason(chain, etl_aws, case):
    build, error_type, needle = CASES[case]
    run = chain.upload_and_run("incoming/default/bad file.csv", build(chain))
    assert isinstance(run.error, error_type), (case, run.error)
    fid = run.state["file"]["file_id"]
    failure = run.failure
    assert failure["status"] == "FAILED" and failure["file_id"] == fid
    assert failure["reason"].startswith(f"{error_type.__name__}: ")
    assert needle and needle in failure["reason"], (needle, failure["reason"])
    assert failure["failed_key"] == f"failed/default/{fid}/bad file.csv"
    assert etl_aws.keys("incoming/") == [] and etl_aws.keys("failed/") == [failure["failed_key"]]
    assert etl_aws.keys("manifests/") == [] and etl_aws.keys("processed/") == []
    item = etl_aws.repo.get_file(fid)
    assert item["status"] == "FAILED"
    assert item["error"] == failure["reason"] and item["error_type"] == error_type.__name__
    assert item["failed_key"] == failure["failed_key"]
    assert all(c["status"] in ("FAILED", "SUCCEEDED") for c in etl_aws.repo.list_chunks(fid))
    subject = failure["subject"]
    assert len(subject) <= 100 and subject.isascii() and subject.isprintable()
    assert error_type.__name__ in subject
    assert failure["attributes"]["file_id"] == fid
    assert failure["attributes"]["error_type"] == error_type.__name__
    assert f"etl reprocess {fid}" in failure["message"]


def test_ragged_rows_below_the_threshold_are_row_level_rejects(chain, etl_aws, monkeypatch):
    monkeypatch.setenv("CHUNK_SIZE_BYTES", "100000")
    good = _rows(chain, 1, 300)
    data = (
        _header(chain)
        + good
        + b"T1,ACC1,2024-01-01\n"
        + b"T2,ACC1,2024-01-01,,1.00,USD,DEBIT,a,5411,b,EXTRA\n"
    )
    run = chain.upload_and_run("incoming/default/tx.csv", data)
    assert run.error is None, run.failure
    assert (run.state["result"]["rows_valid"], run.state["result"]["rows_rejected"]) == (300, 2)
    rejects = etl_aws.get(etl_aws.keys("rejected/")[0]).decode()
    assert "302," in rejects and "303," in rejects  # line numbers of the ragged records


def test_invalid_utf8_after_the_head_is_a_row_level_reject(chain, etl_aws, monkeypatch):
    monkeypatch.setenv("CHUNK_SIZE_BYTES", "40000")
    rows = [chain.row(i) for i in range(1, 1001)]
    rows[900] = rows[900].replace("Shop", "Sh\xff\xfep")
    data = _header(chain) + b"".join(r.encode("utf-8", "surrogateescape") + b"\n" for r in rows)
    data = data.replace("Sh\xff\xfep".encode(), b"Sh\xff\xfep")  # really invalid bytes
    assert data.find(b"\xff\xfe") > 64 * 1024
    run = chain.upload_and_run("incoming/default/tx.csv", data)
    assert run.error is None, run.failure
    assert run.state["result"]["rows_rejected"] == 1 and run.state["result"]["rows_total"] == 1000


def test_corrupt_gzip_not_gzip_at_all(chain, etl_aws):
    run = chain.upload_and_run("incoming/default/tx.csv.gz", b"this is not gzip at all\n" * 10)
    assert isinstance(run.error, CorruptGzip)
    assert run.failure["reason"].startswith("CorruptGzip: ")


def test_truncated_gzip_in_the_head_fails_validation(chain, etl_aws):
    body = gzip.compress(_header(chain) + _rows(chain, 1, 400), mtime=0)
    run = chain.upload_and_run("incoming/default/tx.csv.gz", body[: len(body) // 2])
    assert isinstance(run.error, CorruptGzip)
    assert "header" not in run.state


def test_truncated_gzip_fails_in_planning_and_leaves_no_scratch(chain, etl_aws, monkeypatch):
    monkeypatch.setenv("CHUNK_SIZE_BYTES", "100000")
    body = gzip.compress(_header(chain) + _rows(chain, 1, 6000), mtime=0)
    run = chain.upload_and_run("incoming/default/tx.csv.gz", body[: len(body) * 2 // 3])
    assert isinstance(run.error, CorruptGzip)
    assert "header" in run.state  # the head decompressed fine; the rest did not
    assert etl_aws.keys("scratch/") == []
    assert etl_aws.keys("failed/") == [run.failure["failed_key"]]


@pytest.mark.parametrize(
    "key",
    [
        "incoming/default/daily report 2024-03-15.csv",
        "incoming/default/Überweisungen März.csv",
        "incoming/default/a+b%20c.csv",
        "incoming/tx.csv",
    ],
)
def test_awkward_keys_are_processed(chain, etl_aws, key):
    data = _header(chain) + _rows(chain, 1, 40)
    run = chain.upload_and_run(key, data)
    assert run.error is None, run.failure
    fid = run.state["file"]["file_id"]
    name = key.rsplit("/", 1)[-1]
    assert run.state["result"]["processed_key"] == f"processed/default/{fid}/{name}"
    assert etl_aws.get(f"processed/default/{fid}/{name}") == data


def test_record_larger_than_a_chunk_becomes_its_own_chunk(chain, etl_aws, monkeypatch):
    monkeypatch.setenv("MAX_RECORD_BYTES", "20000")  # chunks stay at 2 KB
    big = chain.row(31, desc='"' + "long, quoted\n" * 600 + '"')
    data = _header(chain) + _rows(chain, 1, 30) + big.encode() + b"\n" + _rows(chain, 32, 60)
    assert len(big) > 2 * 2048
    run = chain.upload_and_run("incoming/default/tx.csv", data)
    assert run.error is None, run.failure
    assert run.state["result"]["rows_total"] == 60 and run.state["result"]["rows_rejected"] == 0
    holder = [c for c in run.state["plan"]["chunks"] if b"\nT000031," in data[c["start"] - 1 : c["end"]]]
    assert len(holder) == 1 and holder[0]["end"] - holder[0]["start"] > 2048


@pytest.mark.parametrize("bad", [b"Sh\xff\xfep", b"Sh\x00p", b"Sh\xe9p"])
def test_RUN10_a_bad_byte_near_the_start_is_a_row_level_reject_too(chain, etl_aws, monkeypatch, bad):
    monkeypatch.setenv("CHUNK_SIZE_BYTES", "40000")
    data = _header(chain) + b"".join(chain.row(i).encode() + b"\n" for i in range(1, 1001))
    first = data.index(b"Shop")
    assert first < 64 * 1024  # in the head ValidateHeader reads
    data = data[:first] + bad + data[first + 4 :]
    run = chain.upload_and_run("incoming/default/tx.csv", data)
    assert run.error is None, run.failure
    assert run.state["result"]["rows_rejected"] == 1 and run.state["result"]["rows_total"] == 1000
