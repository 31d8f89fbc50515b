"""etl.observability: the wrapper behaves on Lambda-like settings and locally."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import warnings

import pytest

from etl import observability as obs
from etl.errors import SchemaMismatch

LAMBDA_TRACING_SCRIPT = textwrap.dedent(
    """
    import json
    from etl import observability as obs

    @obs.lambda_handler("Demo")
    def handler(event, context):
        obs.bind(chunk_id="CHUNK#00001")
        obs.add_metric(obs.ROWS_PROCESSED, 3)
        return {"ok": True}

    class Ctx:
        function_name = "etl-demo"
        function_version = "$LATEST"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:etl-demo"
        memory_limit_in_mb = 3072
        aws_request_id = "req-1"

    assert obs.tracer.disabled is False
    print(json.dumps(handler({"file": {"file_id": "abc"}}, Ctx())))
    """
)


def test_tracing_enabled_on_lambda_without_a_daemon():
    """As on Lambda with active tracing: annotations go into the handler's subsegment (the
    Lambda facade segment is read-only), and no X-Ray daemon is needed for it to work."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_TRACE", "AWS_ENDPOINT"))}
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": "etl-demo",
            "LAMBDA_TASK_ROOT": "/tmp",
            "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9",
            "POWERTOOLS_SERVICE_NAME": "transaction-etl",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    out = subprocess.run(
        [sys.executable, "-c", LAMBDA_TRACING_SCRIPT],
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert '{"ok": true}' in out.stdout
    assert "FacadeSegmentMutationException" not in out.stderr


def test_no_metrics_no_warning_and_errors_propagate(recwarn):
    @obs.lambda_handler("Demo")
    def handler(event, context):
        if event.get("fail"):
            raise SchemaMismatch("columns differ")
        return 1

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert handler({}, None) == 1
    with pytest.raises(SchemaMismatch):
        handler({"fail": True}, None)


def test_metrics_flushed_even_when_the_handler_fails(capsys):
    @obs.lambda_handler("Demo")
    def handler(event, context):
        obs.add_metric(obs.FILES_FAILED, 1)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        handler({}, None)
    emf = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith('{"_aws"')]
    assert any(x.get("FilesFailed") == [1.0] for x in emf)


def test_log_keys_are_per_thread(monkeypatch):
    import io

    stream = io.StringIO()
    monkeypatch.setattr(obs.logger.registered_handler, "stream", stream)
    barrier = threading.Barrier(2, timeout=5)

    @obs.lambda_handler("ProcessChunk")
    def handler(event, context):
        barrier.wait()  # both invocations have bound their keys before either logs
        obs.logger.info("working")
        return event["chunk"]["chunk_id"]

    threads = [
        threading.Thread(target=handler, args=({"file": {"file_id": "f"}, "chunk": {"chunk_id": c}}, None))
        for c in ("CHUNK#00001", "CHUNK#00002")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    working = [x for x in lines if x["message"] == "working"]
    assert sorted(x["chunk_id"] for x in working) == ["CHUNK#00001", "CHUNK#00002"]
