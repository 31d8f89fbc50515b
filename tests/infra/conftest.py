"""Synthesizes the app once per session per context; every infra test reads these templates."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")

SUFFIX = "pr42"
PRIMARY = f"EtlPipeline-{SUFFIX}"
DR = f"EtlPipelineDr-{SUFFIX}"


@dataclass
class Synth:
    """One in-process synth: templates, regions and the cloud assembly directory."""

    templates: dict[str, dict[str, Any]]
    regions: dict[str, str]
    outdir: Path
    app: Any
    assembly: Any

    @property
    def primary(self) -> dict[str, Any]:
        return self.templates[PRIMARY]

    @property
    def dr(self) -> dict[str, Any]:
        return self.templates[DR]


def synth(context: dict[str, Any], *, policy_checks: bool = True, bundling: bool = False) -> Synth:
    """Build and synthesize the real app (same code path as app.py) into a temp dir.

    Asset bundling (the pyiceberg layer, built from the lock) is skipped unless ``bundling``:
    the templates are the same, and synth stays free of the layer build and of network.
    """
    from infra.application import build_app
    from infra.template_tools import SKIP_BUNDLING

    outdir = Path(tempfile.mkdtemp(prefix="etl-infra-test-"))
    if not bundling:
        context = {SKIP_BUNDLING: [], **context}
    app = build_app(context, outdir=str(outdir), policy_checks=policy_checks)
    assembly = app.synth()
    return Synth(
        templates={s.stack_name: dict(s.template) for s in assembly.stacks},
        regions={s.stack_name: s.environment.region for s in assembly.stacks},
        outdir=outdir,
        app=app,
        assembly=assembly,
    )


@pytest.fixture(scope="session")
def default_synth() -> Synth:
    """Suffix pr42, every other setting at its default, cdk-nag packs on."""
    return synth({"environmentSuffix": SUFFIX})


@pytest.fixture(scope="session")
def templates(default_synth: Synth) -> dict[str, dict[str, Any]]:
    return default_synth.templates


@pytest.fixture(scope="session")
def primary(default_synth: Synth) -> dict[str, Any]:
    return default_synth.primary


@pytest.fixture(scope="session")
def dr(default_synth: Synth) -> dict[str, Any]:
    return default_synth.dr


@pytest.fixture(scope="session")
def variant_synth() -> Synth:
    """Non-default knobs, cdk-nag on: arm64, python3.14, 64 MB chunks, alarm e-mail, stale bound."""
    return synth(
        {
            "environmentSuffix": "qa-7",
            "lambdaRuntime": "python3.14",
            "architecture": "arm64",
            "chunkSizeMb": "64",
            "maxRecordMb": "8",
            "alarmEmail": "oncall@example.com",
            "staleAfterMinutes": "45",
        }
    )
