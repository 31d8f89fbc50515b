"""DATA7: every function that ships pyiceberg, with its layers, fits Lambda's 250 MB unzipped.

Computed from a synth with asset bundling on (the pyiceberg layer as CDK stages it for upload)
and the managed layers' recorded sizes (infra/managed_layer_sizes.json, with sources).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from etl import contracts
from infra import iceberg_layer_build as build
from infra.functions import ICEBERG_STEPS
from infra.size_budget import function_budgets, load_managed, over_budget, table, tree_size

from .conftest import PRIMARY, SUFFIX, Synth, synth

LIMIT = 262_144_000


@pytest.fixture(scope="module")
def bundled() -> Synth:
    """Default settings, layer bundled from `make layer`'s build (no network once built)."""
    layer = build.plan("3.13", "x86_64")
    if not (layer.directory / "manifest.json").exists():
        pytest.fail("the pyiceberg layer is not built: run `make layer`")
    return synth({"environmentSuffix": SUFFIX}, policy_checks=False, bundling=True)


def test_DATA7_limit_and_managed_sizes_are_recorded_with_sources() -> None:
    managed = load_managed()
    assert managed["lambda_unzipped_limit_bytes"] == LIMIT
    for name, spec in managed["layers"].items():
        assert spec["assumed_unzipped_bytes"] > 0, name
        assert spec["known"] and all(k.get("source") or k.get("proxy") for k in spec["known"]), name
    # The assumption for the pandas layer is the largest published figure.
    pandas = managed["layers"]["aws-sdk-pandas"]
    assert pandas["assumed_unzipped_bytes"] == max(k.get("bytes_upper_bound", 0) for k in pandas["known"])


def test_DATA7_every_function_with_its_layers_fits_250_mb(bundled: Synth) -> None:
    managed = load_managed()
    budgets = function_budgets(bundled.templates[PRIMARY], bundled.outdir, managed)
    print("\n" + table(budgets, LIMIT))
    by_name = {b.name: b for b in budgets}
    iceberg = {f"etl-{contracts.ALL_FUNCTIONS[step][0]}-{SUFFIX}" for step in ICEBERG_STEPS}
    iceberg.add(f"etl-ensure-tables-{SUFFIX}")
    # every function (workflow steps, StartFiles, reconcile) + ensure-tables
    assert iceberg <= set(by_name) and len(budgets) == len(contracts.ALL_FUNCTIONS) + 1
    assert f"etl-{contracts.RECONCILE_FUNCTION[0]}-{SUFFIX}" in by_name
    for name in iceberg:
        layers = dict(by_name[name].layers)
        assert set(layers) == {"aws-sdk-pandas", f"etl-pyiceberg-{SUFFIX}"}, name
        assert layers[f"etl-pyiceberg-{SUFFIX}"] > 20_000_000  # the real build, not a placeholder
    for name in set(by_name) - iceberg:
        assert [n for n, _ in by_name[name].layers] == ["aws-sdk-pandas", "powertools"], name
    assert over_budget(budgets, LIMIT) == []


def test_DATA7_bundled_layer_is_the_lock_build(bundled: Synth) -> None:
    """The staged layer asset is `make layer`'s build: pyiceberg and Powertools under python/."""
    template = bundled.templates[PRIMARY]
    (layer,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::LayerVersion"]
    key = layer["Properties"]["Content"]["S3Key"]
    staged = bundled.outdir / f"asset.{key.removesuffix('.zip')}"
    build_dir = build.plan("3.13", "x86_64").content
    assert (staged / "python" / "pyiceberg" / "__init__.py").is_file()
    assert (staged / "python" / "aws_lambda_powertools" / "__init__.py").is_file()
    assert tree_size(staged) == tree_size(build_dir)
    assert not list(staged.rglob("__pycache__")) and not list((staged / "python").glob("boto*"))


def test_DATA7_budget_check_fails_when_a_layer_grows(bundled: Synth, tmp_path: Path) -> None:
    """The check can fail: 10 MB more in a temp copy of the staged layer breaks the budget."""
    outdir = tmp_path / "assembly"
    shutil.copytree(bundled.outdir, outdir, symlinks=True)
    template: dict[str, Any] = bundled.templates[PRIMARY]
    (layer,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::LayerVersion"]
    staged = outdir / f"asset.{layer['Properties']['Content']['S3Key'].removesuffix('.zip')}"
    with (staged / "python" / "fat.bin").open("wb") as fat:
        fat.truncate(10_000_000)  # sparse: counts as 10 MB unzipped, costs no disk
    over = over_budget(function_budgets(template, outdir, load_managed()), LIMIT)
    assert {b.name for b in over} == {
        f"etl-finalize-{SUFFIX}",
        f"etl-ensure-tables-{SUFFIX}",
        f"etl-maintain-tables-{SUFFIX}",  # TBL6: the pyiceberg layers too
        f"etl-mark-failed-{SUFFIX}",  # TBL4: failing a file checks (and may undo) a commit
        f"etl-reconcile-{SUFFIX}",
    }
    assert all(b.total > LIMIT for b in over)
