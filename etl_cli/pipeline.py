"""Operator operations on one deployed pipeline — the same code against AWS and the emulator.

A :class:`Pipeline` is a boto3 session (region, profile, optional endpoint) plus the stack's
outputs (``describe_stacks`` on AWS; the emulated stack's outputs locally). Everything here
reads the status table and S3 layout of docs/contracts.md; nothing re-implements a step of the
workflow: uploads trigger the real rule, reprocess starts the real state machine.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from etl import contracts
from etl.aws.status import DUPLICATE_CONTENT, SUCCEEDED, TERMINAL_FILE_STATUSES, StatusRepository
from etl.core.identity import file_id_for, partner_from_key
from etl.core.schema import known_partners
from etl.payloads import ChunkItem, FileItem
from etl.stack_outputs import MissingStackOutputs, Outputs

TERMINAL_FILE_STATES = set(TERMINAL_FILE_STATUSES)
# Endings that are not failures (the CLI exits 0): DUPLICATE_CONTENT published nothing on purpose.
OK_FILE_STATES = {SUCCEEDED, DUPLICATE_CONTENT}
TERMINAL_EXECUTION_STATES = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


class PipelineError(RuntimeError):
    """An operator-facing error (missing stack, unknown file...)."""


NO_AWS_HINT = "or use --local for the emulator of `etl local up`"


def make_session(region: str | None = None, profile: str | None = None) -> Any:
    """A boto3 session, or one line saying what to set when there is no AWS configuration
    (SPEC UX7: never botocore's ``NoRegionError`` traceback)."""
    import boto3
    from botocore.exceptions import ProfileNotFound

    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
    except ProfileNotFound as exc:
        raise PipelineError(f"{exc}: check --profile / AWS_PROFILE ({NO_AWS_HINT})") from exc
    if not session.region_name:
        raise PipelineError(
            f"no AWS region: set AWS_REGION, pass --region, or configure a profile ({NO_AWS_HINT})"
        )
    return session


def require_credentials(session: Any) -> None:
    """One line when no credentials are found (env, profile, SSO, instance role)."""
    if session.get_credentials() is None:
        raise PipelineError(
            "no AWS credentials: set AWS_PROFILE (after `aws configure` or `aws sso login`) "
            f"or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY ({NO_AWS_HINT})"
        )


def outputs_from_stack(session: Any, stack_name: str, endpoint: str | None = None) -> Outputs:
    require_credentials(session)
    cfn = session.client("cloudformation", endpoint_url=endpoint)
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except Exception as exc:  # botocore ClientError: the stack does not exist / no access
        raise PipelineError(f"cannot describe stack {stack_name!r}: {exc}") from exc
    raw = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    try:
        return Outputs.from_stack_outputs(
            raw, region=session.region_name or "us-east-1", endpoint=endpoint, stack_name=stack_name
        )
    except MissingStackOutputs as exc:
        raise PipelineError(f"stack {stack_name!r}: {exc}") from exc


@dataclass
class FileReport:
    status: str
    file_id: str | None
    bucket: str
    key: str | None = None
    size_bytes: int | None = None
    rows_total: int | None = None
    rows_valid: int | None = None
    rows_rejected: int | None = None
    chunks: int | None = None
    chunks_succeeded: int | None = None
    error: str | None = None
    duration_s: float | None = None
    throughput_mb_s: float | None = None
    execution_arn: str | None = None
    execution_status: str | None = None
    manifest: str | None = None
    outputs: str | None = None
    rejects: str | None = None
    processed: str | None = None
    failed: str | None = None
    duplicate_of: str | None = None  # DUPLICATE_CONTENT: the file that loaded these bytes
    timings: dict[str, float] | None = None  # local runs: wall seconds per phase
    local_copy: str | None = None  # local runs: where the results were copied on disk
    report: str | None = None  # local runs: the HTML report (etl_cli/html_report.py)
    snapshot_id: int | None = None  # the Iceberg snapshot that published the file (SPEC DATA2)
    rows_live: str | None = None  # TBL5: "live", "superseded" or "not published"
    superseded_by: str | None = None  # TBL5: the file whose rows replaced this file's
    published_rows: int | None = None  # rows of the file in the table, read back (local runs)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Pipeline:
    def __init__(self, session: Any, outputs: Outputs) -> None:
        self.session = session
        self.outputs = outputs
        self._clients: dict[str, Any] = {}
        self._status: StatusRepository | None = None

    def client(self, service: str) -> Any:
        if service not in self._clients:
            kwargs: dict[str, Any] = {"region_name": self.outputs.region}
            if self.outputs.endpoint:
                kwargs["endpoint_url"] = self.outputs.endpoint
            if service == "s3" and self.outputs.endpoint:
                from botocore.config import Config

                kwargs["config"] = Config(s3={"addressing_style": "path"})
            self._clients[service] = self.session.client(service, **kwargs)
        return self._clients[service]

    # -- uploads ---------------------------------------------------------------------------

    def check_partner(self, partner: str) -> None:
        """SEC2: refuse a partner the pipeline would fail with UnknownPartner (no schema file,
        not declared in context ``partners`` to use the default schema)."""
        try:
            declared = json.loads(self.outputs.default_schema_partners or "[]")
        except ValueError:
            declared = []
        known = known_partners(str(name) for name in declared)
        if partner not in known:
            raise PipelineError(
                f"unknown partner {partner!r}: it has no schema (etl/schemas/{partner}.json) and the "
                f"stack does not declare it to use the default schema (context partners); known "
                f"partners: {', '.join(known)}"
            )

    def upload(
        self,
        path: Path,
        partner: str | None = None,
        name: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Put ``path`` under ``incoming/<partner>/``; the bucket's rule starts the workflow.

        ``progress`` is called with the bytes sent since the last call (boto3's ``Callback``).
        """
        partner = partner or contracts.DEFAULT_PARTNER
        self.check_partner(partner)
        key = f"{contracts.INCOMING_PREFIX}{partner}/{name or Path(path).name}"
        s3 = self.client("s3")
        with open(path, "rb") as fh:
            s3.upload_fileobj(fh, self.outputs.bucket, key, Callback=progress)
        head = s3.head_object(Bucket=self.outputs.bucket, Key=key)
        version = head.get("VersionId")
        if version == "null":
            version = None
        etag = head.get("ETag")
        return {
            "bucket": self.outputs.bucket,
            "key": key,
            "version_id": version,
            "etag": etag,
            "size": head.get("ContentLength"),
            "file_id": file_id_for(key, version, etag),
            "partner": partner_from_key(key),
        }

    # -- status ----------------------------------------------------------------------------

    @property
    def status(self) -> StatusRepository:
        """The status table through the handlers' own layer (etl/aws/status.py, SPEC DX2):
        the same reads and the same Decimal -> int/float conversion, on this session's client."""
        if self._status is None:
            self._status = StatusRepository(self.outputs.table, client=self.client("dynamodb"))
        return self._status

    def get_file(self, file_id: str) -> FileItem | None:
        return self.status.get_file(file_id)

    def list_chunks(self, file_id: str) -> list[ChunkItem]:
        return self.status.list_chunks(file_id)

    def resolve_file_id(self, file_id_or_key: str) -> str:
        """A file id, or an S3 key (incoming/, processed/, failed/) of a registered file."""
        if re.fullmatch(r"[0-9a-f]{32}", file_id_or_key):
            if self.get_file(file_id_or_key) is None:  # an unknown id is an error, not UNKNOWN
                raise PipelineError(f"no registered file with id {file_id_or_key}")
            return file_id_or_key
        key = file_id_or_key
        if key.startswith("s3://"):
            key = key.split("/", 3)[3]
        matches = [
            f
            for f in self.list_files()
            if key in (f.get("key"), f.get("original_key"), f.get("processed_key"), f.get("failed_key"))
        ]
        if not matches:
            raise PipelineError(f"no registered file with id or key {file_id_or_key!r}")
        matches.sort(key=lambda f: str(f.get("created_at", "")))
        return str(matches[-1]["file_id"])

    def list_files(self, status: str | None = None, since: datetime | None = None) -> list[FileItem]:
        """File items, oldest first (a scan: fine for operators; see StatusRepository.list_files)."""
        since_iso = None
        if since is not None:
            # created_at is written as utc_now(): ISO 8601 UTC with milliseconds and "Z", so
            # the same form compares as text.
            since_iso = since.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return self.status.list_files(status=status.upper() if status else None, since=since_iso)

    # -- workflow --------------------------------------------------------------------------

    def live_state(self, item: Mapping[str, Any]) -> tuple[str, str | None]:
        """SPEC TBL5: ``("live", None)`` when the file's rows are the live version of its key,
        ``("superseded", <file_id>)`` when another version's rows replaced them, else
        ``("not published", None)``. The live version is the newest registered version whose
        commit landed, unless a rollback made an older one live (docs/dataset.md)."""
        if item.get("status") != SUCCEEDED:
            return "not published", None
        key = str(item.get("original_key") or item.get("key"))
        live = self.status.get_live(str(item.get("partner")), key)
        live_id = str((live or {}).get("live_file_id") or "")
        if not live_id or live_id == item.get("file_id"):
            return "live", None
        return "superseded", live_id

    def newer_live_version(self, item: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The live version of the file's key when it was registered after this file (a
        reprocess would replace its rows with older ones), else None."""
        key = str(item.get("original_key") or item.get("key"))
        live = self.status.get_live(str(item.get("partner")), key)
        if not live or not live.get("live_file_id") or live.get("live_file_id") == item.get("file_id"):
            return None
        return live if str(live.get("live_created_at") or "") > str(item.get("created_at") or "") else None

    def reprocess(self, file_id: str, force: bool = False, rollback: bool = False) -> str:
        """Start the real state machine with a reprocess request (docs/contracts.md).
        ``force``: load a DUPLICATE_CONTENT file anyway (DATA4(a)). ``rollback``: let this
        older version replace the rows of the key's newer, live version (TBL5)."""
        item = self.get_file(file_id)
        if item is None:
            raise PipelineError(f"unknown file {file_id}")
        if item.get("status") == "SUCCEEDED" and not (rollback and self.live_state(item)[0] == "superseded"):
            raise PipelineError(f"file {file_id} already SUCCEEDED and live; nothing to reprocess")
        newer = self.newer_live_version(item)
        if newer is not None and not rollback:
            raise PipelineError(
                f"file {file_id} is an older version of {item.get('original_key')}: file "
                f"{newer.get('live_file_id')} (registered {newer.get('live_created_at')}) is live, and "
                "reprocessing would replace its rows with these; add --rollback to do that on purpose"
            )
        if item.get("status") == "DUPLICATE_CONTENT" and not force:
            raise PipelineError(
                f"file {file_id} is DUPLICATE_CONTENT (same bytes as {item.get('duplicate_of')}); "
                "use --force to load it anyway"
            )
        sfn = self.client("stepfunctions")
        attempt = int(item.get("attempts") or 1) + 1
        name = f"reprocess-{file_id}-{attempt}-{int(time.time())}"
        resp = sfn.start_execution(
            stateMachineArn=self.outputs.state_machine_arn,
            name=name[:80],
            input=json.dumps(
                {
                    "reprocess": {
                        "file_id": file_id,
                        **({"force": True} if force else {}),
                        **({"rollback": True} if rollback else {}),
                    }
                }
            ),
        )
        return str(resp["executionArn"])

    def _reconcile(self, request: dict[str, Any]) -> dict[str, Any]:
        """Invoke the reconcile function (etl/handlers/reconcile.py) and return its answer;
        its error, if any, becomes a PipelineError with the function's message."""
        name = self.outputs.reconcile_function
        if not name:
            raise PipelineError("this stack has no reconcile function (ReconcileFunctionName output)")
        resp = self.client("lambda").invoke(FunctionName=name, Payload=json.dumps(request).encode())
        payload = json.loads(resp["Payload"].read() or b"null")
        if resp.get("FunctionError"):
            message = payload.get("errorMessage") if isinstance(payload, dict) else payload
            kind = payload.get("errorType") if isinstance(payload, dict) else "Error"
            raise PipelineError(f"{kind}: {message}")
        return dict(payload or {})

    def notify(self, file_id: str, force: bool = False) -> dict[str, Any]:
        """Re-send a SUCCEEDED file's result message (OPS4) through the reconcile function."""
        return self._reconcile({"mode": "notify", "file_id": file_id, "force": force})

    def sweep(self) -> dict[str, Any]:
        """Run the scheduled sweep now (stale files, unsent results, partner freshness)."""
        return self._reconcile({"mode": "sweep"})

    def describe_execution(self, arn: str) -> dict[str, Any]:
        return dict(self.client("stepfunctions").describe_execution(executionArn=arn))

    def wait_for_file(
        self,
        file_id: str,
        *,
        timeout: float = 1800,
        poll: float = 0.5,
        on_progress: Callable[[FileItem | None, list[ChunkItem]], None] | None = None,
        execution_arn: str | None = None,
    ) -> FileReport:
        """Poll until the file is terminal *and* its execution has stopped.

        ``execution_arn``: wait for that execution to stop (a reprocess of a FAILED file starts
        from FAILED, so the file's status alone would end the wait too early).
        """
        deadline = time.monotonic() + timeout
        while True:
            item = self.get_file(file_id)
            chunks = self.list_chunks(file_id) if item else []
            if on_progress:
                on_progress(item, chunks)
            exec_arn = execution_arn or (item or {}).get("execution_arn")
            exec_status = None
            if exec_arn:
                exec_status = self.describe_execution(exec_arn)["status"]
            file_done = item is not None and item.get("status") in TERMINAL_FILE_STATES
            if execution_arn and exec_status in TERMINAL_EXECUTION_STATES:
                return self.report(file_id, execution_arn=exec_arn)
            if file_done and (exec_status is None or exec_status in TERMINAL_EXECUTION_STATES):
                return self.report(file_id, execution_arn=exec_arn)
            if time.monotonic() > deadline:
                rep = self.report(file_id, execution_arn=exec_arn)
                rep.error = (rep.error or "") + f" (timed out after {timeout:.0f}s waiting)"
                return rep
            time.sleep(poll)

    def result_keys(self, file_id: str) -> list[str]:
        """Every object this file produced: Parquet parts, rejects and the manifest."""
        item = self.get_file(file_id)
        if not item:
            raise PipelineError(f"no file {file_id} in {self.outputs.table}")
        # Only a SUCCEEDED file keeps its Parquet under output/; every file that got that far
        # keeps its rejects (TBL7: a FAILED file stays diagnosable).
        succeeded = item.get("status") == "SUCCEEDED"
        keys: list[str] = []
        for chunk in self.list_chunks(file_id):
            if succeeded and chunk.get("output_key"):
                keys.append(str(chunk["output_key"]))
            if chunk.get("rejects_key"):
                keys.append(str(chunk["rejects_key"]))
        if item.get("manifest_key"):
            keys.append(str(item["manifest_key"]))
        return keys

    def download_results(self, file_id: str, dest: Path) -> list[Path]:
        """Copy the file's results to ``dest``, keeping their S3 keys as relative paths."""
        s3 = self.client("s3")
        written = []
        for key in self.result_keys(file_id):
            target = dest / key
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(self.outputs.bucket, key, str(target))
            written.append(target)
        return written

    def report(self, file_id: str, execution_arn: str | None = None) -> FileReport:
        item = self.get_file(file_id) or {}
        chunks = self.list_chunks(file_id) if item else []
        bucket = self.outputs.bucket
        rep = FileReport(
            status=str(item.get("status", "UNKNOWN")),
            file_id=file_id,
            bucket=bucket,
            key=item.get("original_key") or item.get("key"),
            size_bytes=item.get("size"),
            rows_total=item.get("rows_total"),
            rows_valid=item.get("rows_valid"),
            rows_rejected=item.get("rows_rejected"),
            chunks=item.get("chunk_count"),
            chunks_succeeded=sum(1 for c in chunks if c.get("status") == "SUCCEEDED"),
            error=item.get("error"),
            execution_arn=execution_arn or item.get("execution_arn"),
            duplicate_of=item.get("duplicate_of"),
            snapshot_id=item.get("snapshot_id"),
        )
        rep.rows_live, rep.superseded_by = self.live_state(item) if item else (None, None)
        started = _parse_time(item.get("created_at"))
        finished = _parse_time(item.get("finished_at") or item.get("updated_at"))
        if rep.execution_arn:
            try:
                ex = self.describe_execution(rep.execution_arn)
                rep.execution_status = ex.get("status")
                if ex.get("startDate") and ex.get("stopDate"):
                    started, finished = ex["startDate"], ex["stopDate"]
                out = json.loads(ex.get("output") or "null") or {}
                result = out.get("result") if isinstance(out, dict) else None
                if isinstance(result, dict):
                    if result.get("output_prefix"):
                        rep.outputs = f"s3://{bucket}/{result['output_prefix']}"
                    if result.get("rejected_prefix"):
                        rep.rejects = f"s3://{bucket}/{result['rejected_prefix']}"
                if ex.get("status") == "FAILED" and not rep.error:
                    rep.error = f"{ex.get('error')}: {ex.get('cause')}"
            except Exception:  # the execution may be gone (AWS retention) or elsewhere
                pass
        if started and finished and finished > started:
            rep.duration_s = round((finished - started).total_seconds(), 3)
            if rep.size_bytes:
                rep.throughput_mb_s = round(rep.size_bytes / 1e6 / rep.duration_s, 2)
        if item.get("manifest_key"):
            rep.manifest = f"s3://{bucket}/{item['manifest_key']}"
        if item.get("processed_key"):
            rep.processed = f"s3://{bucket}/{item['processed_key']}"
        if item.get("failed_key"):
            rep.failed = f"s3://{bucket}/{item['failed_key']}"
        partner = item.get("partner")
        if partner and rep.status == "SUCCEEDED":
            rep.rejects = rep.rejects or (
                f"s3://{bucket}/{contracts.REJECTED_PREFIX}partner={partner}/file_id={file_id}/"
            )
            if not rep.outputs and rep.manifest:
                rep.outputs = f"s3://{bucket}/{contracts.OUTPUT_PREFIX} (see manifest)"
        return rep


def _parse_time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), UTC)
    text = str(value)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_since(text: str) -> datetime:
    """``2026-11-25``, an ISO timestamp, or a relative ``30m`` / ``6h`` / ``2d``."""
    m = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(m.group(1))})
    parsed = _parse_time(text)
    if parsed is None:
        raise PipelineError(f"cannot read time {text!r} (use ISO 8601 or 30m/6h/2d)")
    return parsed
