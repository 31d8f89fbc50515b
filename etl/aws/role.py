"""The region's role in disaster recovery: ``active`` or ``standby`` (SPEC DR2, DR3).

A runtime switch, not a deployment setting: one SSM String parameter per region (its name in
``REGION_ROLE_PARAMETER``, ``/transaction-etl/<suffix>/region-role``) that ``etl dr promote`` /
``etl dr demote`` set and CloudFormation does not own, so a routine ``cdk deploy`` never flips
it. While the parameter does not exist the region's default applies (``DEFAULT_REGION_ROLE``:
the primary is active, the DR region standby). A standby region processes every file into its
own tables but sends no result message and publishes no alert (it records what it would have
sent on the file item).

Read through a short cache (``ROLE_CACHE_SECONDS``): a flip reaches every function within that
time, and a burst of chunk steps does not hammer SSM. Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import os
import threading
import time

from botocore.exceptions import ClientError

from etl import observability as obs
from etl.aws import clients
from etl.aws.errors import error_code, transient_errors

ACTIVE = "active"
STANDBY = "standby"
ROLES = (ACTIVE, STANDBY)
PARAMETER_ENV = "REGION_ROLE_PARAMETER"
DEFAULT_ENV = "DEFAULT_REGION_ROLE"
ROLE_CACHE_SECONDS = 10.0

_lock = threading.Lock()
_cache: dict[str, tuple[float, str]] = {}


def default_role() -> str:
    """The region's role while no parameter exists (``active`` when the variable is unset:
    a stack deployed before the switch existed keeps announcing)."""
    value = os.environ.get(DEFAULT_ENV, ACTIVE).strip().lower()
    return value if value in ROLES else ACTIVE


def region_role(now: float | None = None) -> str:
    """``active`` or ``standby`` for the region this function runs in.

    A value other than the two roles is logged and the region default used (a typo must not
    silence a region nor make both announce). Throttling raises TransientError (retried)."""
    name = os.environ.get(PARAMETER_ENV)
    if not name:
        return default_role()
    now = time.monotonic() if now is None else now
    cache_key = "{}|{}".format(os.environ.get("AWS_REGION", ""), name)
    with _lock:
        hit = _cache.get(cache_key)
        if hit is not None and hit[0] > now:
            return hit[1]
    try:
        with transient_errors(f"GetParameter {name}"):
            value = str(clients.client("ssm").get_parameter(Name=name)["Parameter"]["Value"])
    except ClientError as exc:
        if error_code(exc) != "ParameterNotFound":
            raise
        value = default_role()
    role = value.strip().lower()
    if role not in ROLES:
        obs.logger.error(
            "region role parameter %s holds %r; using the default %s", name, value, default_role()
        )
        role = default_role()
    with _lock:
        _cache[cache_key] = (now + ROLE_CACHE_SECONDS, role)
    return role


def is_active() -> bool:
    return region_role() == ACTIVE


def clear_cache() -> None:
    """Forget cached roles (tests; the local harness after a switch)."""
    with _lock:
        _cache.clear()
