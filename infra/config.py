"""Typed settings for the CDK app, read once from CDK context.

Every knob the infrastructure has is here, validated with an error that names the context key,
so a typo in ``-c key=value`` fails the synth instead of deploying something unexpected.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from aws_cdk import Annotations
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from etl import contracts
from etl.core.schema import partner_schemas

PRIMARY_REGION = "us-east-1"
DR_REGION = "eu-west-1"
# Context keys that no longer exist; passing one fails the synth with what replaced it.
RETIRED_CONTEXT_KEYS = {
    "drActive": (
        "drActive is retired: the eu-west-1 stack is a warm standby whose trigger is always "
        "enabled (it processes every replicated file), and which region is active is a runtime "
        "switch a deploy never touches (SPEC DR3). Fail over with `etl dr promote --region "
        "eu-west-1`, fail back with `etl dr demote`; remove -c drActive (and any drActive in "
        "cdk.json)."
    ),
}

# python3.9 was deprecated by AWS Lambda on 2025-12-15; 3.10 and 3.11 are next in line.
SUPPORTED_RUNTIMES = (
    "python3.9",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "python3.14",
)
LATEST_PYTHON = SUPPORTED_RUNTIMES[-1]
DEPRECATED_OR_AGING_RUNTIMES = ("python3.9", "python3.10", "python3.11")
ARCHITECTURES = ("x86_64", "arm64")

# AWS SDK for pandas release whose managed layer the functions use (pandas 3, pyarrow, numpy).
# Its SSM parameter path carries this version; change it with -c sdkPandasVersion=...
DEFAULT_SDK_PANDAS_VERSION = "3.17.1"

_SUFFIX_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Bucket names are the tightest limit: "etl-data-" / "etl-logs-" (infra/storage.py) + suffix + "-"
# + 12-digit account + "-" + region (up to 14 chars) must stay within 63 characters, i.e. a
# suffix of at most 26; 16 leaves room for a longer bucket prefix later.
MAX_SUFFIX_LENGTH = 16
# DATA1: per-query data-scanned limit of the Athena workgroup. Athena's minimum is 10 MB; 100 GB
# is ~50x a full scan of a year of daily 1 GB files compressed to Parquet, and costs ~$0.50.
DEFAULT_ATHENA_SCAN_CUTOFF_GB = 100
MAX_ATHENA_SCAN_CUTOFF_GB = 100_000

# OPS2 admission control. Lambda's default per-region account concurrency is 1,000 and AWS keeps
# at least 100 of it unreserved. Each file in flight runs at most MAP_MAX_CONCURRENCY (10) chunk
# functions at once, so the chunk function reserves maxFilesInFlight x 10 and the starter
# reserves 1: 50 x 10 + 1 = 501 reserved, 499 left for the other steps (at most one per file in
# flight: 50) and the rest of the account. The largest value a 1,000 account allows is
# (1,000 - 100 - 1) // 10 = 89; raise `lambdaConcurrencyLimit` after a quota increase.
DEFAULT_MAX_FILES_IN_FLIGHT = 50
DEFAULT_LAMBDA_CONCURRENCY_LIMIT = 1000
UNRESERVED_CONCURRENCY_MINIMUM = 100
CHUNKS_PER_FILE = 10  # the Map state's MaxConcurrency (infra/workflow.py asserts they agree)
STARTER_RESERVED_CONCURRENCY = 1
# OPS1: the sweep reconciles an in-flight file whose execution ended this long ago (default:
# two sweep periods, so the status-change event had every chance first). At most the execution
# timeout: a bound longer than any execution could run hides nothing more.
DEFAULT_STALE_AFTER_MINUTES = contracts.STALE_AFTER_SECONDS // 60
MAX_STALE_AFTER_MINUTES = contracts.EXECUTION_TIMEOUT_SECONDS // 60


class ConfigError(ValueError):
    """A context value is missing, malformed or out of range."""


# SEC1: partner names become a key prefix (incoming/<name>/), a role name and a schema file
# name (etl/schemas/<name>.json), so they are plain lowercase identifiers.
_PARTNER_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,39}$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]{1,512}$")
_EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
PARTNER_SCHEMA_OWN = "own"
PARTNER_SCHEMA_DEFAULT = "default"


@dataclass(frozen=True)
class Partner:
    """SEC1: one partner from context ``partners``: who may assume its upload role.

    ``principal`` is an AWS account id (any principal of that account the partner allows) or
    one role ARN; ``external_id`` guards the confused deputy (default ``etl-<suffix>-<name>``);
    ``schema`` is ``own`` (etl/schemas/<name>.json) or ``default`` (SEC2: the partner is known
    and uses the default schema).
    """

    name: str
    principal: str
    external_id: str | None = None
    schema: str = PARTNER_SCHEMA_OWN

    @property
    def account(self) -> str:
        match = _ROLE_ARN_RE.match(self.principal)
        return match.group(1) if match else self.principal

    def external_id_for(self, suffix: str) -> str:
        return self.external_id or f"etl-{suffix}-{self.name}"


def _parse_partner(name: Any, value: Any) -> Partner:
    where = f"partners[{name!r}]"
    if not isinstance(name, str) or not _PARTNER_NAME_RE.match(name):
        raise ConfigError(
            f"{where}: a partner name is 1-40 characters of [a-z0-9_], starting with a letter or digit"
        )
    if isinstance(value, str):
        value = {"principal": value}
    if not isinstance(value, dict) or set(value) - {"principal", "externalId", "schema"}:
        raise ConfigError(
            f"{where} must be an account id, a role ARN or an object with principal, externalId, schema"
        )
    principal = str(value.get("principal", "")).strip()
    if not (_ACCOUNT_RE.match(principal) or _ROLE_ARN_RE.match(principal)):
        raise ConfigError(
            f"{where}: principal must be a 12-digit account id or an IAM role ARN; got {principal!r}"
        )
    external_id = value.get("externalId")
    if external_id is not None and not (isinstance(external_id, str) and _EXTERNAL_ID_RE.match(external_id)):
        raise ConfigError(f"{where}: externalId must be 2-1224 characters of [\\w+=,.@:/-]")
    schema = value.get("schema", PARTNER_SCHEMA_OWN)
    if schema not in (PARTNER_SCHEMA_OWN, PARTNER_SCHEMA_DEFAULT):
        raise ConfigError(f"{where}: schema must be {PARTNER_SCHEMA_OWN!r} or {PARTNER_SCHEMA_DEFAULT!r}")
    return Partner(name=name, principal=principal, external_id=external_id, schema=schema)


def parse_partners(raw: Any) -> tuple[Partner, ...]:
    """Context ``partners``: an object (cdk.json) or its JSON text (``-c partners='{...}'``)."""
    if raw is None or raw == "":
        return ()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"partners is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError('partners must be an object: {"<name>": "<account id or role ARN>", ...}')
    return tuple(_parse_partner(name, value) for name, value in sorted(raw.items()))


@dataclass(frozen=True)
class EtlConfig:
    """Settings shared by both stacks (primary and DR)."""

    environment_suffix: str = "dev"
    lambda_runtime: str = "python3.13"
    architecture: str = "x86_64"
    chunk_size_mb: int = 50
    max_record_mb: int = 16
    alarm_email: str | None = None
    sdk_pandas_version: str = DEFAULT_SDK_PANDAS_VERSION
    max_files_in_flight: int = DEFAULT_MAX_FILES_IN_FLIGHT
    stale_after_minutes: int = DEFAULT_STALE_AFTER_MINUTES
    lambda_concurrency_limit: int = DEFAULT_LAMBDA_CONCURRENCY_LIMIT
    athena_scan_cutoff_gb: int = DEFAULT_ATHENA_SCAN_CUTOFF_GB
    account: str | None = None
    partners: tuple[Partner, ...] = ()

    def __post_init__(self) -> None:
        if not (1 <= len(self.environment_suffix) <= MAX_SUFFIX_LENGTH) or not _SUFFIX_RE.match(
            self.environment_suffix
        ):
            raise ConfigError(
                f"environmentSuffix must be 1-{MAX_SUFFIX_LENGTH} characters of [a-z0-9-], not "
                "starting or ending with '-' (it goes into bucket, queue and function names); "
                f"got {self.environment_suffix!r}"
            )
        if self.lambda_runtime not in SUPPORTED_RUNTIMES:
            raise ConfigError(
                "lambdaRuntime must be one of {}; got {!r}".format(
                    ", ".join(SUPPORTED_RUNTIMES), self.lambda_runtime
                )
            )
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(
                "architecture must be one of {}; got {!r}".format(", ".join(ARCHITECTURES), self.architecture)
            )
        if not 1 <= self.chunk_size_mb <= 1024:
            raise ConfigError(f"chunkSizeMb must be 1-1024; got {self.chunk_size_mb!r}")
        if not 1 <= self.max_record_mb <= self.chunk_size_mb:
            raise ConfigError(
                f"maxRecordMb must be 1..chunkSizeMb ({self.chunk_size_mb}); got {self.max_record_mb!r}"
            )
        if self.alarm_email is not None and not _EMAIL_RE.match(self.alarm_email):
            raise ConfigError(f"alarmEmail is not an e-mail address: {self.alarm_email!r}")
        if not _VERSION_RE.match(self.sdk_pandas_version):
            raise ConfigError(f"sdkPandasVersion must look like 3.17.1; got {self.sdk_pandas_version!r}")
        least = UNRESERVED_CONCURRENCY_MINIMUM + CHUNKS_PER_FILE + STARTER_RESERVED_CONCURRENCY
        if self.lambda_concurrency_limit < least:
            raise ConfigError(
                f"lambdaConcurrencyLimit must be at least {least} (AWS keeps "
                f"{UNRESERVED_CONCURRENCY_MINIMUM} unreserved); got {self.lambda_concurrency_limit!r}"
            )
        if not 1 <= self.max_files_in_flight <= self.max_files_in_flight_allowed:
            raise ConfigError(
                f"maxFilesInFlight must be 1-{self.max_files_in_flight_allowed}: each file reserves "
                f"{CHUNKS_PER_FILE} chunk functions and {UNRESERVED_CONCURRENCY_MINIMUM} of "
                f"lambdaConcurrencyLimit ({self.lambda_concurrency_limit}) stay unreserved; "
                f"got {self.max_files_in_flight!r}"
            )
        if not 1 <= self.stale_after_minutes <= MAX_STALE_AFTER_MINUTES:
            raise ConfigError(
                f"staleAfterMinutes must be 1-{MAX_STALE_AFTER_MINUTES} (the execution timeout); "
                f"got {self.stale_after_minutes!r}"
            )
        self._check_partners()
        if not 1 <= self.athena_scan_cutoff_gb <= MAX_ATHENA_SCAN_CUTOFF_GB:
            raise ConfigError(
                f"athenaScanCutoffGb must be 1-{MAX_ATHENA_SCAN_CUTOFF_GB}; "
                f"got {self.athena_scan_cutoff_gb!r}"
            )

    def _check_partners(self) -> None:
        """SEC2 at synth time: a partner declared with its own schema has one."""
        with_schema = set(partner_schemas())
        for partner in self.partners:
            if partner.schema == PARTNER_SCHEMA_OWN and partner.name not in with_schema:
                raise ConfigError(
                    f"partners[{partner.name!r}] has no schema file etl/schemas/{partner.name}.json: "
                    f'add one, or declare {{"principal": ..., "schema": "default"}} to use the default schema'
                )

    # ---- derived values -------------------------------------------------------------------
    @property
    def default_schema_partners(self) -> tuple[str, ...]:
        """SEC2: the partners declared to use the default schema."""
        return tuple(p.name for p in self.partners if p.schema == PARTNER_SCHEMA_DEFAULT)

    @property
    def runtime(self) -> lambda_.Runtime:
        """The CDK runtime constant, e.g. ``Runtime.PYTHON_3_13`` for ``python3.13``."""
        runtime: lambda_.Runtime = getattr(lambda_.Runtime, "PYTHON_" + self.python_version.replace(".", "_"))
        return runtime

    @property
    def lambda_architecture(self) -> lambda_.Architecture:
        return lambda_.Architecture.ARM_64 if self.architecture == "arm64" else lambda_.Architecture.X86_64

    @property
    def python_version(self) -> str:
        """``3.13`` for ``python3.13``."""
        return self.lambda_runtime[len("python") :]

    @property
    def chunk_size_bytes(self) -> int:
        return self.chunk_size_mb * 1024 * 1024

    @property
    def max_record_bytes(self) -> int:
        return self.max_record_mb * 1024 * 1024

    @property
    def max_files_in_flight_allowed(self) -> int:
        """The largest maxFilesInFlight whose reservations leave AWS's unreserved minimum."""
        spare = self.lambda_concurrency_limit - UNRESERVED_CONCURRENCY_MINIMUM - STARTER_RESERVED_CONCURRENCY
        return spare // CHUNKS_PER_FILE

    @property
    def chunk_reserved_concurrency(self) -> int:
        """OPS2: the chunk function's reserved concurrency, maxFilesInFlight x MaxConcurrency."""
        return self.max_files_in_flight * CHUNKS_PER_FILE

    @property
    def athena_scan_cutoff_bytes(self) -> int:
        """The workgroup's BytesScannedCutoffPerQuery (GiB)."""
        return self.athena_scan_cutoff_gb * 1024**3

    @property
    def sdk_pandas_layer_parameter(self) -> str:
        """Public SSM parameter holding the AWS SDK for pandas layer ARN in the deploy region.

        Format from the AWS SDK for pandas install guide ("Layer ARNs can also be obtained from
        SSM public parameters"): /aws/service/aws-sdk-pandas/<version>/py<X.Y>/<arch>/layer-arn
        """
        return (
            f"/aws/service/aws-sdk-pandas/{self.sdk_pandas_version}"
            f"/py{self.python_version}/{self.architecture}/layer-arn"
        )

    @property
    def powertools_layer_parameter(self) -> str:
        """Public SSM parameter holding the latest Powertools for AWS Lambda (Python) v3 layer.

        Format from Powertools' own SSM publishing workflow and install guide:
        /aws/service/powertools/python/<arch>/<pythonX.Y>/latest
        """
        return f"/aws/service/powertools/python/{self.architecture}/{self.lambda_runtime}/latest"

    def data_bucket_name(self, account: str, region: str) -> str:
        """The data bucket's name in ``region`` (INF1: suffix, account, region).

        A plain function of its inputs so the primary stack can name the DR bucket (replication
        destination, access point member) without a cross-region reference (SPEC DR1).
        """
        return f"etl-data-{self.environment_suffix}-{account}-{region}"

    def name(self, base: str) -> str:
        """``etl-<base>-<suffix>``: the naming rule of INF1."""
        return f"etl-{base}-{self.environment_suffix}"

    def warn_about_runtime(self, scope: Construct) -> None:
        """L2: an old runtime still synthesizes, with a warning annotation on ``scope``."""
        if self.lambda_runtime in DEPRECATED_OR_AGING_RUNTIMES:
            Annotations.of(scope).add_warning_v2(
                "etl:deprecated-runtime",
                f"lambdaRuntime={self.lambda_runtime}: AWS Lambda deprecated python3.9 on "
                "2025-12-15 (no security patches; cfn-lint and checkov reject it) and "
                "python3.10/3.11 follow; use python3.12, python3.13 or python3.14. Also check that "
                f"AWS SDK for pandas {self.sdk_pandas_version} publishes a py{self.python_version} "
                "layer (recent releases dropped py3.9).",
            )

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def from_context(cls, scope: Construct) -> EtlConfig:
        """Read and validate every setting from CDK context (``cdk.json`` or ``-c``)."""

        def ctx(key: str) -> Any:
            return scope.node.try_get_context(key)

        for key, message in RETIRED_CONTEXT_KEYS.items():
            if ctx(key) is not None:
                raise ConfigError(message)

        def as_int(key: str, default: int) -> int:
            raw = ctx(key)
            if raw is None or raw == "":
                return default
            if isinstance(raw, bool):
                raise ConfigError(f"{key} must be an integer; got {raw!r}")
            try:
                return int(str(raw), 10)
            except ValueError:
                raise ConfigError(f"{key} must be an integer; got {raw!r}") from None

        def as_str(key: str, default: str | None) -> str | None:
            raw = ctx(key)
            if raw is None or raw == "":
                return default
            return str(raw).strip()

        account = os.environ.get("CDK_DEFAULT_ACCOUNT") or None
        return cls(
            environment_suffix=as_str("environmentSuffix", "dev") or "dev",
            lambda_runtime=as_str("lambdaRuntime", "python3.13") or "python3.13",
            architecture=as_str("architecture", "x86_64") or "x86_64",
            chunk_size_mb=as_int("chunkSizeMb", 50),
            max_record_mb=as_int("maxRecordMb", 16),
            alarm_email=as_str("alarmEmail", None),
            sdk_pandas_version=as_str("sdkPandasVersion", DEFAULT_SDK_PANDAS_VERSION)
            or DEFAULT_SDK_PANDAS_VERSION,
            max_files_in_flight=as_int("maxFilesInFlight", DEFAULT_MAX_FILES_IN_FLIGHT),
            lambda_concurrency_limit=as_int("lambdaConcurrencyLimit", DEFAULT_LAMBDA_CONCURRENCY_LIMIT),
            stale_after_minutes=as_int("staleAfterMinutes", DEFAULT_STALE_AFTER_MINUTES),
            athena_scan_cutoff_gb=as_int("athenaScanCutoffGb", DEFAULT_ATHENA_SCAN_CUTOFF_GB),
            account=account,
            partners=parse_partners(ctx("partners")),
        )
