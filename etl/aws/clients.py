"""boto3 clients shared by every handler in one process.

Clients are created lazily, once per process, behind a lock: on Lambda that keeps connection
pools warm across invocations; locally the harness runs Map iterations on threads, and boto3
*clients* (unlike resources and sessions) are safe to share between threads once created.

The endpoint comes from boto3 itself: since botocore 1.31 ``AWS_ENDPOINT_URL`` (and
``AWS_ENDPOINT_URL_S3`` etc.) is honoured by every client, so the same code talks to AWS on
Lambda and to the emulator locally without any parameter here.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config

# Parallel ranged reads (etl.aws.s3.iter_blocks) use up to 8-16 threads per client; the pool
# must be at least that large or urllib3 discards connections and logs warnings.
MAX_POOL_CONNECTIONS = 32

_lock = threading.Lock()
# Keyed by (service, region): on Lambda the region never changes; the local emulator runs the
# functions of both regions' stacks (DR4) in one process, each invocation with its AWS_REGION.
_clients: dict[tuple[str, str], Any] = {}
# Callbacks run on every client this module creates (and the existing ones when added): local
# mode's fault points and IAM checks register botocore hooks through it. Empty on Lambda.
_client_hooks: list[Callable[[str, Any], None]] = []


def current_region() -> str:
    """The region this code runs in (Lambda sets ``AWS_REGION``)."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""


def _config(service: str) -> Config:
    """Retry and pool settings: standard retry mode (exponential backoff with jitter, retries
    throttling and 5xx), a few more attempts than the default because our callers turn the
    final failure into ``TransientError`` and the state machine retries again on top."""
    kwargs: dict[str, Any] = {
        "retries": {"mode": "standard", "total_max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", "5"))},
        "max_pool_connections": MAX_POOL_CONNECTIONS,
        "connect_timeout": 10,
        "read_timeout": 60,
    }
    if service == "s3" and (os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")):
        # An emulator on loopback: virtual-hosted addressing would need <bucket>.localhost to
        # resolve; path style always works there. On AWS (no endpoint override) keep the default.
        kwargs["s3"] = {"addressing_style": "path"}
    return Config(**kwargs)


def client(service: str) -> Any:
    """The process-wide boto3 client for ``service`` (created on first use)."""
    region = current_region()
    found = _clients.get((service, region))
    if found is not None:
        return found
    with _lock:
        found = _clients.get((service, region))
        if found is None:
            # A private Session: boto3.client() uses the module-level default session, whose
            # lazy initialisation is not thread-safe.
            session = boto3.session.Session()
            found = session.client(service, config=_config(service), region_name=region or None)
            for hook in _client_hooks:
                hook(service, found)
            _clients[(service, region)] = found
        return found


def commit_client(service: str) -> Any:
    """A client for calls that must never be replayed by botocore (Glue ``UpdateTable``, an
    Iceberg commit). A replay of a request that landed but whose response was lost fails with
    ConcurrentModificationException, which pyiceberg takes as "did not land" and answers by
    deleting the commit's manifests: the table would reference files that no longer exist.
    With one attempt, a lost response surfaces as a transport error, "outcome unknown", and the
    caller looks for its commit token (etl/aws/catalog.py)."""
    region = current_region()
    key = (service + "#commit", region)
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(key)
        if found is None:
            config = _config(service).merge(Config(retries={"mode": "standard", "total_max_attempts": 1}))
            session = boto3.session.Session()
            found = session.client(service, config=config, region_name=region or None)
            for hook in _client_hooks:
                hook(service, found)
            _clients[key] = found
        return found


def add_client_hook(hook: Callable[[str, Any], None]) -> None:
    """Run ``hook(service, client)`` on every client, existing and future (local mode)."""
    with _lock:
        if hook in _client_hooks:
            return
        _client_hooks.append(hook)
        existing = list(_clients.items())
    for (service, _), found in existing:
        hook(service.split("#")[0], found)


def remove_client_hook(hook: Callable[[str, Any], None]) -> None:
    """Stop running ``hook`` on new clients (hooks already registered on clients stay; local
    mode's hooks are no-ops once their configuration is cleared)."""
    with _lock:
        if hook in _client_hooks:
            _client_hooks.remove(hook)


def s3() -> Any:
    """The S3 client."""
    return client("s3")


def dynamodb() -> Any:
    """The DynamoDB (low-level) client."""
    return client("dynamodb")


def on_client_created(hook: Callable[[str, Any], None]) -> None:
    """Call ``hook(service, client)`` for every client created from now on (idempotent)."""
    with _lock:
        if hook not in _client_hooks:
            _client_hooks.append(hook)


def reset_clients() -> None:
    """Forget every client (tests: after changing env vars or entering a new moto mock)."""
    with _lock:
        _clients.clear()
