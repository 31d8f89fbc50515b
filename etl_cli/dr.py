"""``etl dr status | promote --region R | demote``: the DR3 runtime switch, from the operator.

Each region has its own SSM parameter ``/transaction-etl/<suffix>/region-role`` (``active`` or
``standby``; absent = the region's default: primary active, DR standby). Promote sets the new
region active and, best effort (the old region may be unreachable: that is why you promote),
the other standby; turns the alarm actions on where active and off where standby (a standby
pages nobody); then drains the newly active region's outbox: every SUCCEEDED file whose result
was never sent and that the announcement ledger does not hold is announced once
(``{"mode": "drain"}`` of the reconcile function). On AWS, when the stack has a Multi-Region
Access Point output, the failover routes send partners' uploads to the active region.
Idempotent: a second run changes nothing and says so (the drain finds nothing to announce).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from etl.stack_outputs import Outputs, region_role_parameter

PRIMARY_REGION = "us-east-1"
DR_REGION = "eu-west-1"
ACTIVE, STANDBY = "active", "standby"
# The reconcile function caches the role for etl/aws/role.py ROLE_CACHE_SECONDS (10 s).
DRAIN_WAIT_SECONDS = 30.0


class DrError(RuntimeError):
    """A switch that could not be made (the message says which step)."""


@dataclass
class Region:
    """One region's stack as the DR commands see it."""

    name: str  # "primary" or "dr"
    region: str
    session: Any
    outputs: Outputs
    suffix: str
    endpoint: str | None = None

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name=self.region, endpoint_url=self.endpoint)

    @property
    def parameter(self) -> str:
        return self.outputs.region_role_parameter or region_role_parameter(self.suffix)

    @property
    def default_role(self) -> str:
        return ACTIVE if self.name == "primary" else STANDBY

    def role(self) -> tuple[str, str]:
        """(role, "parameter" or "default")."""
        ssm = self.client("ssm")
        try:
            value = ssm.get_parameter(Name=self.parameter)["Parameter"]["Value"]
        except ssm.exceptions.ParameterNotFound:
            return self.default_role, "default"
        value = str(value).strip().lower()
        return (value if value in (ACTIVE, STANDBY) else self.default_role), "parameter"

    def set_role(self, role: str) -> bool:
        """True when it changed (an explicit parameter equal to the wanted role is no change)."""
        current, source = self.role()
        if current == role and source == "parameter":
            return False
        self.client("ssm").put_parameter(
            Name=self.parameter, Value=role, Type="String", Overwrite=True, Description="DR3 region role"
        )
        return True

    def alarms(self) -> list[dict[str, Any]]:
        cw = self.client("cloudwatch")
        found = []
        for page in cw.get_paginator("describe_alarms").paginate():
            found += [a for a in page.get("MetricAlarms", []) if a["AlarmName"].endswith(f"-{self.suffix}")]
        return found

    def set_alarm_actions(self, enabled: bool) -> int:
        """Turn the stack's alarm actions on/off; how many alarms changed."""
        changing = [a["AlarmName"] for a in self.alarms() if bool(a.get("ActionsEnabled")) != enabled]
        cw = self.client("cloudwatch")
        for i in range(0, len(changing), 100):
            names = changing[i : i + 100]
            (cw.enable_alarm_actions if enabled else cw.disable_alarm_actions)(AlarmNames=names)
        return len(changing)

    def drain(self, wait: float = DRAIN_WAIT_SECONDS) -> dict[str, Any]:
        """Announce the outbox (the reconcile function's drain), once the function sees the
        region active (its role cache expires within seconds)."""
        function = self.outputs.reconcile_function
        if not function:
            raise DrError(f"{self.name}: the stack has no reconcile function output")
        deadline = time.monotonic() + wait
        while True:
            resp = self.client("lambda").invoke(FunctionName=function, Payload=b'{"mode": "drain"}')
            payload = json.loads(resp["Payload"].read() or b"null")
            if resp.get("FunctionError"):
                raise DrError(f"{self.name}: outbox drain failed: {payload}")
            if payload.get("drained") or time.monotonic() > deadline:
                return dict(payload)
            time.sleep(1.0)


def status(regions: list[Region]) -> list[dict[str, Any]]:
    out = []
    for r in regions:
        entry: dict[str, Any] = {"name": r.name, "region": r.region, "parameter": r.parameter}
        try:
            entry["role"], entry["source"] = r.role()
            alarms = r.alarms()
            entry["alarms"] = len(alarms)
            entry["alarm_actions_enabled"] = sum(1 for a in alarms if a.get("ActionsEnabled"))
        except Exception as exc:  # an unreachable region is a status, not an error
            entry["role"], entry["error"] = "unknown", f"{type(exc).__name__}: {exc}"
        out.append(entry)
    return out


def switch(regions: list[Region], active_region: str) -> dict[str, Any]:
    """Make ``active_region`` active and every other region standby (promote and demote)."""
    target = [r for r in regions if r.region == active_region]
    if not target:
        raise DrError(f"no stack in {active_region} (regions: {', '.join(r.region for r in regions)})")
    new = target[0]
    report: dict[str, Any] = {"active": new.region, "changes": [], "warnings": []}
    if new.set_role(ACTIVE):
        report["changes"].append(f"{new.region}: role -> active")
    for other in regions:
        if other is new:
            continue
        try:
            if other.set_role(STANDBY):
                report["changes"].append(f"{other.region}: role -> standby")
            if other.set_alarm_actions(False):
                report["changes"].append(f"{other.region}: alarm actions off")
        except Exception as exc:  # the old region may be down: that is why we switch
            report["warnings"].append(
                f"{other.region} unreachable ({type(exc).__name__}); set it standby when it returns"
            )
    if new.set_alarm_actions(True):
        report["changes"].append(f"{new.region}: alarm actions on")
    routes = mrap_routes(new, regions)
    if routes:
        report["changes"].append(routes)
    report["drain"] = new.drain()
    if report["drain"].get("resent"):
        report["changes"].append(
            f"{new.region}: announced {len(report['drain']['resent'])} file(s) from the outbox"
        )
    report["changed"] = bool(report["changes"])
    return report


def mrap_routes(new: Region, regions: list[Region]) -> str | None:
    """Point the Multi-Region Access Point's failover routes at ``new`` (AWS only: the stack
    output exists; the emulator has no MRAP). Its control plane is in us-west-2."""
    arn = new.outputs.access_point_arn or next(
        (r.outputs.access_point_arn for r in regions if r.outputs.access_point_arn), None
    )
    if not arn or new.endpoint:
        return None
    account = arn.split(":")[4]
    control = new.session.client("s3control", region_name="us-west-2")
    routes = [{"Bucket": r.outputs.bucket, "TrafficDialPercentage": 100 if r is new else 0} for r in regions]
    control.submit_multi_region_access_point_routes(AccountId=account, Mrap=arn, RouteUpdates=routes)
    return f"access point {arn}: uploads -> {new.region}"
