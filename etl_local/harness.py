"""Bring the local pipeline up: an emulator (reused or started) with the stack deployed on it.

Used by ``etl local ...`` (background server process, so handler logs stay out of the
terminal) and by the end-to-end tests (in-process :class:`~etl_local.emulator.Emulator`, so
tests can inject faults and the retry clock). Both deploy with :func:`etl_local.deploy.deploy`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from etl.stack_outputs import Outputs
from etl_local import state
from etl_local.deploy import LOCAL_SUFFIX, deploy, set_chunk_size, synth_primary_template
from etl_local.emulator import FAKE_CREDENTIALS, REGION, free_port, ping


def local_session() -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )


# Emulators started by this process: their exit must be reaped here (a zombie still "exists").
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class RunningEmulator:
    endpoint: str
    pid: int | None
    started_here: bool


def running_emulator() -> RunningEmulator | None:
    current = state.read()
    if current and current.get("endpoint") and ping(current["endpoint"]):
        return RunningEmulator(current["endpoint"], current.get("pid"), False)
    return None


def start_background(timeout: float = 60.0) -> RunningEmulator:
    """Start ``python -m etl_local.server`` detached; its output goes to server.log in the state directory."""
    state.STATE_DIR.mkdir(parents=True, exist_ok=True)
    state.clear()
    port = free_port()
    log = open(state.STATE_DIR / "server.log", "ab")  # noqa: SIM115 - handed to the child
    env = {**os.environ, **FAKE_CREDENTIALS, "ETL_LOCAL_DIR": str(state.STATE_DIR)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "etl_local.server", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    log.close()
    _CHILDREN[proc.pid] = proc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = state.read()
        if current and current.get("pid") == proc.pid and ping(current["endpoint"]):
            return RunningEmulator(current["endpoint"], proc.pid, True)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"the local emulator did not start; see {state.STATE_DIR / 'server.log'}")


def stop_background(emulator: RunningEmulator | None = None, timeout: float = 30.0) -> bool:
    """Stop the background emulator recorded in the state file (by its pid)."""
    current = state.read() or {}
    pid = emulator.pid if emulator else current.get("pid")
    if not pid:
        return False
    try:
        os.kill(int(pid), signal.SIGTERM)
    except ProcessLookupError:
        state.clear()
        return False
    child = _CHILDREN.pop(int(pid), None)
    if child is not None:
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    deadline = time.monotonic() + timeout
    while child is None and time.monotonic() < deadline:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    if (state.read() or {}).get("pid") == pid:
        state.clear()
    return True


def ensure_deployed(endpoint: str, suffix: str = LOCAL_SUFFIX, session: Any = None) -> Outputs:
    """The emulated stack's outputs: reuse what the state file says is deployed, else deploy."""
    session = session or local_session()
    current = state.read() or {}
    saved = current.get("outputs")
    if saved and saved.get("endpoint") == endpoint:
        outputs = Outputs.from_json(saved)
        sfn = session.client("stepfunctions", endpoint_url=endpoint, region_name=REGION)
        try:
            sfn.describe_state_machine(stateMachineArn=outputs.state_machine_arn)
            return outputs
        except Exception:
            pass  # the emulator was reset: deploy again
    template = synth_primary_template(suffix)
    outputs = deploy(template, session, endpoint, stack_name=f"local:{suffix}")
    if current.get("endpoint") == endpoint:
        state.update(outputs=outputs.to_json(), default_chunk_size_bytes=outputs.chunk_size_bytes)
    return outputs


def local_stack(
    endpoint: str, chunk_size_bytes: int | None = None, *, for_run: bool = False
) -> tuple[Any, Outputs]:
    """The boto3 session and outputs of the emulated stack (``etl_cli`` makes its Pipeline of them).

    ``for_run``: set the functions' CHUNK_SIZE_BYTES for the coming run to ``chunk_size_bytes``,
    or back to the stack's own value when None (``etl local run --chunk-mb``). Other commands
    leave the configuration alone.
    """
    session = local_session()
    outputs = ensure_deployed(endpoint, session=session)
    if for_run:
        default = (state.read() or {}).get("default_chunk_size_bytes") or outputs.chunk_size_bytes
        wanted = chunk_size_bytes or default
        if wanted and wanted != outputs.chunk_size_bytes:
            set_chunk_size(session, outputs, int(wanted))
            if (state.read() or {}).get("endpoint") == endpoint:
                state.update(outputs=outputs.to_json())
    return session, outputs


def ensure_dr_deployed(
    endpoint: str,
    primary: Outputs,
    suffix: str = LOCAL_SUFFIX,
    session: Any = None,
    on_deploy: Callable[[], None] | None = None,
) -> Outputs:
    """The eu-west-1 stack on the same emulator (DR4), and replication between the two buckets.

    ``on_deploy`` is called before a (slow, ~30 s) deploy: the CLI says what it is doing."""
    from etl_local.deploy import configure_replication, deploy_dr

    session = session or local_session()
    current = state.read() or {}
    saved = current.get("dr_outputs")
    if saved and saved.get("endpoint") == endpoint:
        outputs = Outputs.from_json(saved)
        sfn = session.client("stepfunctions", endpoint_url=endpoint, region_name=outputs.region)
        try:
            sfn.describe_state_machine(stateMachineArn=outputs.state_machine_arn)
            return outputs
        except Exception:
            pass  # the emulator was reset: deploy again
    if on_deploy is not None:
        on_deploy()
    outputs = deploy_dr(session, endpoint, suffix, chunk_size_bytes=primary.chunk_size_bytes)
    configure_replication(session, endpoint, primary, outputs)
    if current.get("endpoint") == endpoint:
        state.update(dr_outputs=outputs.to_json())
    return outputs


def partner_outputs(session: Any, regions: list[Outputs]) -> Outputs:
    """The emulated "partner address" (what the Multi-Region Access Point does on AWS): the
    stack of the region whose role parameter says active (default: the primary)."""
    for outputs in regions:
        if not outputs.region_role_parameter:
            continue
        ssm = session.client("ssm", endpoint_url=outputs.endpoint, region_name=outputs.region)
        try:
            value = ssm.get_parameter(Name=outputs.region_role_parameter)["Parameter"]["Value"]
        except ssm.exceptions.ParameterNotFound:
            value = "active" if outputs.pipeline_role == "primary" else "standby"
        if str(value).strip().lower() == "active":
            return outputs
    return regions[0]
