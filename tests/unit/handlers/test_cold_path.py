"""PERF4: what a cold ProcessChunk imports and patches, in fresh interpreters with a Lambda's
environment (the only way to see a cold process's ``sys.modules``). No timing here: init time is a
benchmark (benchmarks/bench_init.py, docs/benchmarks.md).

The tracer patches botocore only (``etl.observability.TRACED_MODULES``): Powertools' default
``patch_all`` imports ``requests`` (and patches ``sqlite3``, tries ``aiobotocore`` ...) on every
cold start for libraries no handler uses. Tracing must stay real: every boto3 call inside a
handler still produces an X-Ray ``aws`` subsegment, next to the handler's annotations, and
``POWERTOOLS_TRACE_DISABLED`` still turns all of it off.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# Not needed by any handler, so never imported by a cold chunk function.
OFF_THE_COLD_PATH = ("pandas", "requests", "sqlite3", "charset_normalizer", "pyiceberg")

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import etl.handlers.process_chunk
    from etl.core.schema import load_schema
    load_schema("default")
    imported = sorted(m for m in {off!r} if m in sys.modules)

    import botocore.client
    from aws_xray_sdk.core import patcher
    from botocore.stub import Stubber
    from etl import observability as obs
    from etl.aws import clients

    @obs.lambda_handler("ProcessChunk")
    def handler(event, context):
        s3 = clients.s3()
        with Stubber(s3) as stub:
            stub.add_response("head_bucket", {{}}, {{"Bucket": "etl-data-test"}})
            s3.head_bucket(Bucket="etl-data-test")
        return {{"ok": True}}

    class Ctx:
        function_name = "etl-process-chunk"
        function_version = "$LATEST"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:etl-process-chunk"
        memory_limit_in_mb = 3072
        aws_request_id = "req-1"

    api_call = botocore.client.BaseClient.__dict__["_make_api_call"]  # wrapt's FunctionWrapper
    result = handler({{"file": {{"file_id": "f-1"}}, "chunk": {{"chunk_id": "CHUNK#00001"}}}}, Ctx())
    print(json.dumps({{
        "result": result,
        "imported": imported,
        "tracer_disabled": obs.tracer.disabled,
        "patched": sorted(patcher._PATCHED_MODULES),
        "botocore_xray": hasattr(botocore.client, "_xray_enabled"),
        "wrapper": getattr(getattr(api_call, "_self_wrapper", None), "__name__", None),
    }}))
    """
)


def _lambda_env(daemon_port: int, **extra: str) -> dict[str, str]:
    """A cold Lambda's environment (as benchmarks/bench_init.py), the X-Ray daemon on our socket."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT")}
    return {
        **keep,
        "LAMBDA_TASK_ROOT": "/var/task",
        "AWS_LAMBDA_FUNCTION_NAME": "etl-process-chunk",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{daemon_port}",
        # Set by the runtime per invocation; a sampled trace, so subsegments are sent.
        "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "POWERTOOLS_SERVICE_NAME": "transaction-etl",
        "POWERTOOLS_METRICS_NAMESPACE": "TransactionEtl",
        "ARROW_DEFAULT_MEMORY_POOL": "system",
        "TABLE_NAME": "etl-status-test",
        **extra,
    }


def _cold_chunk_function(**extra: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run :data:`SCRIPT` in a fresh interpreter; returns its report and the X-Ray documents it
    sent to the (fake) daemon, a UDP socket of ours."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as daemon:
        daemon.bind(("127.0.0.1", 0))
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT.format(off=OFF_THE_COLD_PATH)],
            cwd=ROOT,
            env=_lambda_env(daemon.getsockname()[1], **extra),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        daemon.setblocking(False)
        documents = []
        while True:
            try:
                packet = daemon.recv(65536)
            except BlockingIOError:
                break
            _header, _, body = packet.decode().partition("\n")  # '{"format": "json", ...}\n{doc}'
            documents.append(json.loads(body))
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["result"] == {"ok": True}
    return report, documents


def _subsegments(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    todo = list(documents)
    while todo:
        doc = todo.pop()
        found.append(doc)
        todo.extend(doc.get("subsegments", []))
    return found


def test_PERF4_cold_chunk_function_imports_only_what_it_uses_and_traces_botocore() -> None:
    report, documents = _cold_chunk_function()
    assert report["imported"] == [], f"imported on the cold path: {report['imported']}"
    assert report["tracer_disabled"] is False
    # Patched: botocore only, and really (the client method is the X-Ray wrapper).
    assert report["patched"] == ["botocore"]
    assert report["botocore_xray"] is True
    assert report["wrapper"] == "_xray_traced_botocore"
    # ... and it produces the trace: the S3 call's subsegment, the handler's annotations.
    segments = _subsegments(documents)
    s3 = [s for s in segments if s.get("namespace") == "aws" and s.get("name") == "s3"]
    assert s3, f"no S3 subsegment among {[s.get('name') for s in segments]}"
    assert s3[0]["aws"]["operation"] == "HeadBucket"
    annotated = [s.get("annotations", {}) for s in segments]
    assert {"file_id": "f-1", "chunk_id": "CHUNK#00001"} in [
        {k: a[k] for k in ("file_id", "chunk_id") if k in a} for a in annotated
    ]


def test_PERF4_trace_disabled_patches_and_sends_nothing() -> None:
    report, documents = _cold_chunk_function(POWERTOOLS_TRACE_DISABLED="true")
    assert report["tracer_disabled"] is True
    assert report["patched"] == []
    assert report["botocore_xray"] is False
    assert documents == []
    assert report["imported"] == []


GC_SCRIPT = textwrap.dedent(
    """
    import gc, json
    import etl.handlers.cold_start  # (its own import is not what this checks)
    collections = []
    # Per collection: how many objects were frozen when it started (0: before the freeze).
    gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(gc.get_freeze_count()))
    import etl.handlers.process_chunk
    during_import = len(collections)
    before_freeze = sum(1 for frozen in collections if frozen == 0)
    frozen = gc.get_freeze_count()
    enabled = gc.isenabled()
    junk = [[] for _ in range(5000)]  # allocations after the import: the collector runs again
    print(json.dumps({"before_freeze": before_freeze, "frozen": frozen, "enabled": enabled,
                      "after": len(collections) - during_import}))
    """
)


def test_PERF4_cold_imports_run_without_gc_then_collector_is_back() -> None:
    """etl/handlers/cold_start.py: no collection during the handler module's imports, what they
    created frozen (else the first collection after them scans it all: the same work moved to
    the first invocation), and the collector enabled again."""
    out = subprocess.run(
        [sys.executable, "-c", GC_SCRIPT],
        cwd=ROOT,
        env=_lambda_env(9),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    # None while importing; the module's own body after the imports may allocate enough for a
    # young-generation collection of its new objects (it does on Python 3.9): that is fine.
    assert report["before_freeze"] == 0
    assert report["frozen"] > 50_000  # numpy, pyarrow, boto3, Powertools: ~100,000 objects
    assert report["enabled"] is True
    assert report["after"] > 0
