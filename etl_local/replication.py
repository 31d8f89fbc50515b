"""S3 replication between the two emulated regions' buckets (SPEC DR1, DR4) -- emulation.

moto has no S3 replication. This relay copies, as S3 replication would: every new object
version under the replicated prefixes of a source bucket is written to the destination bucket
with the **same key and version id** (S3 replication keeps version ids, and ``file_id`` is
derived from key + version id, so both regions agree on every file's id, SPEC RUN1/DR2), and
the destination bucket emits its ``Object Created`` event for it (a replica under ``incoming/``
starts the standby's workflow, as on AWS). Replicas are never replicated back (S3 does not
replicate replicas either), and a version deleted before the relay saw it is not replicated.

How the version id is kept: the relay runs in the emulator's process (etl_local/emulator.py,
etl_local/server.py) and writes through moto's in-process S3 backend: ``put_object`` with the
notification disabled, the new key's version id set to the source's, then moto's own
``send_event`` -- so the event and every later read carry the source's version id.

Which buckets replicate: the rules are an SSM parameter of the emulator
(``REPLICATION_PARAMETER``, JSON), written by ``etl_local.deploy.configure_replication`` when
both stacks are deployed. A region listed in the outage parameter (etl_local/relay.py) neither
sends nor receives until the outage ends; its backlog is replicated then (DR4's game day).
Differences from AWS: polling every ``interval`` seconds instead of S3's internal queue (RTC's
15-minute bound is AWS's), no delete-marker replication, no replication metrics.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from etl_local.relay import OUTAGE_PARAMETER, regions_in_outage

REPLICATION_PARAMETER = "/etl-local/replication"
ACCOUNT_ID = "123456789012"


@dataclass
class ReplicationRule:
    source: str
    destination: str
    source_region: str
    destination_region: str
    prefixes: tuple[str, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplicationRule:
        return cls(
            str(data["source"]),
            str(data["destination"]),
            str(data["source_region"]),
            str(data["destination_region"]),
            tuple(data["prefixes"]),
        )


@dataclass
class Replicated:
    rule: str
    key: str
    version_id: str


@dataclass
class ReplicationRelay:
    endpoint: str
    interval: float = 0.1
    copies: list[Replicated] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _seen: set[tuple[str, str, str]] = field(default_factory=set)
    _replicas: set[tuple[str, str, str]] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ssm: Any = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="etl-local-replication", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def clear(self) -> None:
        with self._lock:
            self.copies.clear()
            self.errors.clear()
            self._seen.clear()
            self._replicas.clear()

    def _client(self) -> Any:
        if self._ssm is None:
            import boto3

            self._ssm = boto3.session.Session(
                aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
            ).client("ssm", endpoint_url=self.endpoint)
        return self._ssm

    def rules(self) -> list[ReplicationRule]:
        try:
            raw = self._client().get_parameter(Name=REPLICATION_PARAMETER)["Parameter"]["Value"]
        except Exception:  # not configured (one region deployed) or resetting
            return []
        return [ReplicationRule.from_json(r) for r in json.loads(raw)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.replicate_once()
            except Exception as exc:  # keep going; the emulator may be resetting
                with self._lock:
                    self.errors.append(repr(exc))
            self._stop.wait(self.interval)

    def replicate_once(self) -> int:
        """Copy every not yet replicated version; the number copied."""
        rules = self.rules()
        if not rules:
            return 0
        down = regions_in_outage(self._client())
        copied = 0
        for rule in rules:
            if rule.source_region in down or rule.destination_region in down:
                continue
            copied += self._replicate(rule)
        return copied

    def _replicate(self, rule: ReplicationRule) -> int:
        from moto.s3 import notifications
        from moto.s3.models import FakeKey, s3_backends

        backend = s3_backends[ACCOUNT_ID]["global"]
        source = backend.get_bucket(rule.source)
        copied = 0
        for key, versions in list(source.keys.iterlists()):
            if not key.startswith(rule.prefixes):
                continue
            for version in list(versions):
                if not isinstance(version, FakeKey):
                    continue  # delete markers are not replicated
                ident = (rule.source, key, str(version.version_id))
                if ident in self._seen or ident in self._replicas:
                    continue
                self._seen.add(ident)
                replica = backend.put_object(rule.destination, key, version.value, disable_notification=True)
                replica._version_id = version.version_id  # S3 replication keeps the version id
                replica.set_metadata(dict(version.metadata))
                self._replicas.add((rule.destination, key, str(version.version_id)))
                notifications.send_event(
                    ACCOUNT_ID,
                    notifications.S3NotificationEvent.OBJECT_CREATED_PUT_EVENT,
                    backend.get_bucket(rule.destination),
                    replica,
                )
                with self._lock:
                    self.copies.append(
                        Replicated(f"{rule.source}->{rule.destination}", key, str(version.version_id))
                    )
                copied += 1
        return copied


__all__ = ["OUTAGE_PARAMETER", "REPLICATION_PARAMETER", "ReplicationRelay", "ReplicationRule"]
