"""UX1 on the CDK side: no jsii banner, no feature-flag nag (SPEC UX1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from infra import node_env

from .conftest import Synth

REPO = Path(__file__).resolve().parents[2]
# The CDK CLI skips these when it counts unconfigured flags (aws-cdk lib/commands/flags).
OBSOLETE_FLAGS = {
    "@aws-cdk/core:enableStackNameDuplicates",
    "@aws-cdk/aws-s3:grantWriteWithoutAcl",
    "@aws-cdk/aws-kms:defaultKeyPolicies",
}


def test_UX1_every_feature_flag_that_needs_a_decision_is_configured(default_synth: Synth) -> None:
    """`cdk synth` prints "N feature flags are not configured" for flags with no value in cdk.json
    whose default differs from the recommended value; cdk.json pins each to today's behaviour."""
    manifest = json.loads((default_synth.outdir / "manifest.json").read_text())
    reports = [a for a in manifest["artifacts"].values() if a["type"] == "cdk:feature-flag-report"]
    assert reports, "the CDK library no longer writes a feature-flag report"
    flags = reports[0]["properties"]["flags"]
    unconfigured = sorted(
        name
        for name, flag in flags.items()
        if name not in OBSOLETE_FLAGS
        and "userValue" not in flag
        and (flag.get("unconfiguredBehavesLike") or {}).get("v2", False) != flag["recommendedValue"]
    )
    assert unconfigured == [], f"configure in cdk.json (then review the template diff): {unconfigured}"


def test_UX1_jsii_value_lists_the_running_node_major() -> None:
    major = node_env.node_major()
    assert major and major.isdigit()
    env = node_env.jsii_quiet_env({node_env.END_OF_LIFE: "1"})
    assert major in env[node_env.END_OF_LIFE].split(",")
    assert node_env.with_major("", "20") == "20"
    assert node_env.with_major("18, 20", "20") == "18, 20".replace(" ", "")


def test_UX1_synth_in_a_fresh_process_prints_no_banner_or_bytes() -> None:
    """A process that loads the CDK with the Makefile's old value ("1") stays quiet."""
    env = {**os.environ, node_env.END_OF_LIFE: "1"}
    code = (
        "from infra.template_tools import synth_templates; "
        "t = synth_templates({'environmentSuffix': 'uxq'}); print(len(t))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    assert "end-of-life" not in output
    assert "b'" not in output
    assert proc.stdout.strip() == "2"
