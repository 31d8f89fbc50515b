"""Builds the whole CDK app (both stacks + policy packs). Used by app.py, tests and local mode."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, Environment

from infra.config import DR_REGION, PRIMARY_REGION, EtlConfig
from infra.nag import add_policy_checks
from infra.stack import EtlPipelineStack

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"


def cdk_json_context() -> dict[str, Any]:
    """The ``context`` block of cdk.json (defaults and feature flags)."""
    context: dict[str, Any] = json.loads(CDK_JSON.read_text(encoding="utf-8")).get("context", {})
    return context


def primary_stack_name(suffix: str) -> str:
    return f"EtlPipeline-{suffix}"


def dr_stack_name(suffix: str) -> str:
    return f"EtlPipelineDr-{suffix}"


def add_stacks(app: App) -> EtlConfig:
    """Adds the primary (us-east-1) and warm-standby DR (eu-west-1) stacks to ``app``."""
    config = EtlConfig.from_context(app)
    suffix = config.environment_suffix
    primary = EtlPipelineStack(
        app,
        primary_stack_name(suffix),
        config=config,
        role="primary",
        env=Environment(account=config.account, region=PRIMARY_REGION),
        description=f"Transaction ETL pipeline, primary region ({suffix})",
    )
    # Warm standby (SPEC DR2): the same pipeline, triggered by every replicated file; it
    # announces and pages only while its region-role switch says active (`etl dr promote`).
    dr = EtlPipelineStack(
        app,
        dr_stack_name(suffix),
        config=config,
        role="dr",
        env=Environment(account=config.account, region=DR_REGION),
        description=f"Transaction ETL pipeline, disaster-recovery warm standby ({suffix})",
    )
    # The primary stack owns the cross-region links (replication both ways, the upload access
    # point), which S3 accepts only once both buckets exist: the DR stack deploys first.
    primary.add_stack_dependency(dr, "replication and the access point need the DR bucket")
    return config


def build_app(
    context: Mapping[str, Any] | None = None,
    *,
    outdir: str | None = None,
    policy_checks: bool = True,
) -> App:
    """The app ``cdk synth`` runs, built in-process with ``context`` as ``-c`` values.

    cdk.json's context is the base, so an in-process synth (tests, local mode) uses the same
    feature flags as the CLI; under the CLI, its CDK_CONTEXT_JSON still overrides both.
    """
    kwargs: dict[str, Any] = {"context": {**cdk_json_context(), **dict(context or {})}}
    if outdir is not None:
        kwargs["outdir"] = outdir
    app = App(**kwargs)
    add_stacks(app)
    if policy_checks:
        add_policy_checks(app)
    return app
