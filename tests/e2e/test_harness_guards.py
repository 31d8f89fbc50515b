"""The harness's patches of moto must fail loudly if moto changes under them."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import pytest

from etl_local import lambda_runtime, retry_clock
from etl_local.emulator import Emulator

from .conftest import Stack

pytestmark = pytest.mark.e2e


def test_patched_lambda_method_is_the_one_we_expect(emulator: Emulator) -> None:
    from moto.awslambda.models import LambdaFunction

    lambda_runtime.check_patch_target()  # raises PatchTargetChanged on any drift
    assert lambda_runtime.installed()
    original = LambdaFunction._invoke_lambda._etl_local_original  # type: ignore[attr-defined]
    assert str(inspect.signature(original)) == lambda_runtime.EXPECTED_SIGNATURE


def test_check_fails_loudly_on_a_different_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.awslambda.models import LambdaFunction

    def changed(self, event, context=None):  # type: ignore[no-untyped-def]
        raise AssertionError

    monkeypatch.setattr(LambdaFunction, "_invoke_lambda", changed)
    with pytest.raises(lambda_runtime.PatchTargetChanged):
        lambda_runtime.check_patch_target()


def test_retry_clock_replaces_the_sleep_moto_uses(emulator: Emulator) -> None:
    """The emulator installs the clock when it starts (the fixture: this test also runs alone)."""
    import importlib

    retrier = importlib.import_module(retry_clock.RETRIER_MODULE)
    assert retrier.time is retry_clock.CLOCK
    assert "time.sleep(interval_seconds)" in inspect.getsource(retrier)


def test_a_real_invocation_runs_the_handler_in_process(stack: Stack) -> None:
    """Through moto's HTTP API: the handler's exception comes back as Lambda reports it."""
    lam = stack.pipeline.client("lambda")
    resp = lam.invoke(FunctionName=stack.outputs.functions["RegisterFile"], Payload=json.dumps({"bogus": 1}))
    payload = json.loads(resp["Payload"].read())
    assert resp.get("FunctionError") == "Handled"
    assert payload["errorType"] == "InvalidEvent"
    calls = stack.calls("RegisterFile")
    assert len(calls) == 1 and calls[0].error_type == "InvalidEvent"


def test_a_second_emulator_in_the_process_leaves_the_first_working(stack: Stack, tmp_path: Path) -> None:
    """`etl local run` inside a test starts its own emulator in this process. Stopping it must
    give MOTO_PORT (where moto's Step Functions interpreter calls Lambda) and the handlers'
    endpoint back to the running one, and drop boto3 clients cached for the stopped server:
    otherwise every later execution here fails at its first Task (seen in CI as files FAILED
    in 30 ms with no handler having run)."""
    from etl.aws import clients
    from etl_local.datagen import generate_csv

    port = os.environ["MOTO_PORT"]
    other = Emulator(retry_sleep=lambda seconds: None)
    other.start()
    try:
        assert os.environ["MOTO_PORT"] == str(other.port) != port
        clients.s3()  # a handler client cached while the other emulator is current
    finally:
        other.stop()
    assert os.environ["MOTO_PORT"] == port
    assert lambda_runtime.STATE.extra_env["AWS_ENDPOINT_URL"] == stack.emulator.endpoint
    path = tmp_path / "after.csv"
    generate_csv(path, rows=300, seed=9)
    info = stack.upload(path, "default")
    assert stack.wait(info["file_id"]).status == "SUCCEEDED"
