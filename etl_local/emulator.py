"""The AWS emulator: moto's server on loopback with Step Functions execution on.

Everything that must happen in the *server* process lives here: the Lambda patch (Step
Functions invokes Lambda inside the server), the retry clock, ``MOTO_PORT`` (the parser's own
boto client calls ``localhost:$MOTO_PORT``) and the EventBridge relay.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import urllib.request
from dataclasses import dataclass, field

from etl.aws import clients
from etl_local import faults, glue_versions, iam, lambda_runtime, retry_clock
from etl_local.relay import Relay
from etl_local.replication import ReplicationRelay

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
# moto accepts any credentials; set them so nothing ever looks for real ones.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def moto_api(endpoint: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{endpoint}/moto-api/{path}", data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else {}


def ping(endpoint: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/config", timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except OSError:
        return False


@dataclass
class Emulator:
    """moto in this process, patched to run the real handlers. Use as a context manager."""

    port: int = 0
    host: str = "127.0.0.1"
    retry_sleep: object = None  # callable(seconds) or None to really sleep
    retry_jitter: str = "random"
    relay_interval: float = 0.2
    # How often the relay fires schedule rules (rate(1 minute) on AWS; compressed locally).
    schedule_interval: float = 1.0
    _server: object = field(default=None, init=False, repr=False)
    # What this emulator replaced in process-wide state, put back by stop(): another emulator
    # may be running in this process (a test's session emulator while `etl local run` runs
    # in-process), and it must find MOTO_PORT and the handlers' endpoint pointing at itself again.
    _replaced: dict[str, str | None] = field(default_factory=dict, init=False, repr=False)
    relay: Relay | None = field(default=None, init=False)
    replication: ReplicationRelay | None = field(default=None, init=False)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Emulator:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        lambda_runtime.install()
        faults.install()  # TBL2: named fault points; armed by ETL_LOCAL_FAULTS or --fault
        faults.arm_from_env()
        # Every handler call and state machine integration is authorized against its role from
        # the synthesized template (docs/local-mode.md, "IAM is enforced locally").
        iam.install(loopback_only=True)
        glue_versions.install()  # optimistic Glue commits, as on AWS (Iceberg conflicts)
        retry_clock.install(sleep=self.retry_sleep, jitter=self.retry_jitter)  # type: ignore[arg-type]
        if not self.port:
            self.port = free_port()
        for key, value in FAKE_CREDENTIALS.items():
            os.environ.setdefault(key, value)
        self._replaced = {
            "MOTO_PORT": os.environ.get("MOTO_PORT"),
            "AWS_ENDPOINT_URL": lambda_runtime.STATE.extra_env.get("AWS_ENDPOINT_URL"),
        }
        # moto's Step Functions interpreter calls Lambda/SQS/SNS at localhost:$MOTO_PORT.
        os.environ["MOTO_PORT"] = str(self.port)
        # The handlers talk to the emulator: set for the duration of each invocation only, so
        # nothing else in this process (e.g. other tests) is redirected.
        lambda_runtime.STATE.extra_env["AWS_ENDPOINT_URL"] = self.endpoint
        # The handlers' boto3 clients are cached per process with the endpoint they were created
        # for (etl.aws.clients): forget any made for another emulator.
        clients.reset_clients()
        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        server.start()
        self._server = server
        moto_api(self.endpoint, "config", {"stepfunctions": {"execute_state_machine": True}})
        self.relay = Relay(
            self.endpoint, interval=self.relay_interval, schedule_interval=self.schedule_interval
        )
        self.relay.start()
        # DR4: S3 replication between the two regions' buckets (emulation; idle until both
        # stacks are deployed and etl_local.deploy.configure_replication names the buckets).
        self.replication = ReplicationRelay(self.endpoint, interval=min(self.relay_interval, 0.1))
        self.replication.start()
        return self

    def reset(self) -> None:
        """Forget every resource (moto-api reset) and every recorded invocation/fault."""
        moto_api(self.endpoint, "reset", {})
        moto_api(self.endpoint, "config", {"stepfunctions": {"execute_state_machine": True}})
        lambda_runtime.STATE.clear()
        faults.arm(faults.parse(os.environ.get(faults.ENV, "")))  # a test arms its own
        retry_clock.CLOCK.clear()
        if self.relay:
            self.relay.clear()
        if self.replication:
            self.replication.clear()
        lambda_runtime.restore_environment()

    def stop(self) -> None:
        if self.replication:
            self.replication.stop()
        if self.relay:
            self.relay.stop()
        if self._server is not None:
            self._server.stop()  # type: ignore[attr-defined]
            self._server = None
            iam.uninstall()
            self._restore_process_state()
        lambda_runtime.restore_environment()

    def _restore_process_state(self) -> None:
        """MOTO_PORT and the handlers' endpoint as they were before start(); no cached client
        keeps pointing at this (stopped) server."""
        port, endpoint = self._replaced.get("MOTO_PORT"), self._replaced.get("AWS_ENDPOINT_URL")
        if port is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = port
        if endpoint is None:
            lambda_runtime.STATE.extra_env.pop("AWS_ENDPOINT_URL", None)
        else:
            lambda_runtime.STATE.extra_env["AWS_ENDPOINT_URL"] = endpoint
        clients.reset_clients()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
