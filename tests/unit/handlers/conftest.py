"""Fixtures for the handler tests: CSV builders and an in-process chain of the six handlers
that passes the state exactly as docs/contracts.md says the state machine does."""

from __future__ import annotations

import gzip
import json
import traceback
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import pytest

HEADER = (
    "transaction_id,account_id,transaction_date,posted_at,amount,currency,"
    "transaction_type,merchant_name,merchant_category_code,description"
)
EXECUTION_ARN = "arn:aws:states:us-east-1:123456789012:execution:etl-test:run-1"


def row(i: int, *, amount: str | None = None, date: str = "2024-03-15", desc: str = "") -> str:
    """One valid default-schema record (``amount``/``date`` overridable to make it invalid)."""
    amt = amount if amount is not None else f"{i % 997}.{i % 100:02d}"
    d = desc or f"purchase {i}"
    return f"T{i:06d},ACC{i % 50:04d},{date},2024-03-15T10:{i % 60:02d}:00Z,{amt},USD,DEBIT,Shop {i},5411,{d}"


def make_csv(n: int, bad: tuple[int, ...] = (), quoted_every: int = 7, crlf: bool = False) -> bytes:
    """``n`` records; records whose 1-based index is in ``bad`` have an impossible date;
    every ``quoted_every``-th description is quoted and holds a comma, a quote and a newline."""
    lines = [HEADER]
    for i in range(1, n + 1):
        desc = f'"multi\nline, ""quoted"" {i}"' if quoted_every and i % quoted_every == 0 else ""
        lines.append(row(i, date="2024-02-30" if i in bad else "2024-03-15", desc=desc))
    eol = "\r\n" if crlf else "\n"
    return (eol.join(lines) + eol).encode("utf-8")


def s3_event(
    bucket: str, key: str, put: dict[str, Any] | None, size: int, encode: bool = True
) -> dict[str, Any]:
    """The EventBridge 'Object Created' event S3 sends (key URL-encoded like S3 does)."""
    obj: dict[str, Any] = {
        "key": urllib.parse.quote_plus(key, safe="/") if encode else key,
        "size": size,
        "sequencer": "0062E99A88DC407460",
    }
    if put is not None:
        obj["etag"] = put["ETag"].strip('"')
        if put.get("VersionId"):
            obj["version-id"] = put["VersionId"]
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-25T23:50:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket}, "object": obj, "reason": "PutObject"},
    }


def lambda_cause(exc: BaseException) -> dict[str, str]:
    """``$.error`` as a Catch on a Lambda task records it."""
    cause = {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "stackTrace": traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:],
    }
    return {"Error": type(exc).__name__, "Cause": json.dumps(cause)}


@dataclass
class Run:
    """The state after a chain run (as the state machine would hold it)."""

    state: dict[str, Any]
    chunk_results: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None
    failure: dict[str, Any] | None = None


class Chain:
    """Runs RegisterFile -> ValidateHeader -> PlanChunks -> ProcessChunk* -> Finalize, and
    MarkFailed on the first error, passing state like the ASL in docs/contracts.md."""

    # Builders, reachable from tests through the fixture.
    header = HEADER
    execution_arn = EXECUTION_ARN
    make_csv = staticmethod(make_csv)
    row = staticmethod(row)
    s3_event = staticmethod(s3_event)
    lambda_cause = staticmethod(lambda_cause)

    def __init__(self, aws: Any) -> None:
        from etl.handlers import finalize, mark_failed, plan_chunks, process_chunk, register, validate_header

        self.aws = aws
        self.register = register.handler
        self.validate = validate_header.handler
        self.plan = plan_chunks.handler
        self.process = process_chunk.handler
        self.finalize = finalize.handler
        self.mark_failed = mark_failed.handler

    def upload(self, key: str, data: bytes, encode: bool = True) -> dict[str, Any]:
        """Put the object and return the S3 event for it."""
        put = self.aws.put(key, data)
        return s3_event(self.aws.bucket, key, put, len(data), encode=encode)

    def run(self, execution_input: dict[str, Any], arn: str = EXECUTION_ARN) -> Run:
        state: dict[str, Any] = dict(execution_input)
        run = Run(state)
        try:
            state["file"] = self.register({"event": execution_input, "execution_arn": arn}, None)
            if state["file"]["duplicate"]:
                return run
            state["header"] = self.validate({"file": state["file"]}, None)
            state["plan"] = self.plan({"file": state["file"], "header": state["header"]}, None)
            for chunk in state["plan"]["chunks"]:
                run.chunk_results.append(
                    self.process({"file": state["file"], "header": state["header"], "chunk": chunk}, None)
                )
            state["result"] = self.finalize(
                {
                    "file": state["file"],
                    "header": state["header"],
                    "plan": state["plan"],
                    "execution_arn": arn,
                },
                None,
            )
        except Exception as exc:  # Catch States.ALL -> $.error -> MarkFailed
            run.error = exc
            state["error"] = lambda_cause(exc)
            run.failure = self.mark_failed(state, None)
        return run

    def upload_and_run(self, key: str, data: bytes) -> Run:
        return self.run(self.upload(key, data))


@pytest.fixture
def chain(etl_aws: Any, etl_dataset: Any, monkeypatch: pytest.MonkeyPatch) -> Chain:
    """The handler chain on the mocked bucket/table, with small chunks (2 KB)."""
    monkeypatch.setenv("CHUNK_SIZE_BYTES", "2048")
    monkeypatch.setenv("MAX_RECORD_BYTES", "1024")
    return Chain(etl_aws)


@pytest.fixture
def gzip_bytes():
    """gzip.compress with a fixed mtime (deterministic bytes)."""
    return lambda data: gzip.compress(data, mtime=0)
