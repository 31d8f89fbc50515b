"""PERF2: the peer benchmark's libraries are benchmark-only: never in the Lambda layer's
package list (the closure of its roots in uv.lock) nor in the runtime requirements."""

from __future__ import annotations

import tomllib
from pathlib import Path

from infra import iceberg_layer_build as build

ROOT = Path(__file__).resolve().parents[2]
BENCH_ONLY = {"polars", "polars-runtime-32"}


def test_PERF2_bench_group_holds_the_peer_libraries() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    bench = {
        build.normalize(d.split("=")[0].split("<")[0].split(">")[0])
        for d in project["dependency-groups"]["bench"]
    }
    assert "polars" in bench
    main = {
        build.normalize(d.split("=")[0].split("<")[0].split(">")[0].split("[")[0])
        for d in project["project"]["dependencies"]
    }
    assert not (BENCH_ONLY & main), "a benchmark-only library became a runtime dependency"


def test_PERF2_peer_libraries_are_not_in_the_lambda_layer() -> None:
    packages = {build.normalize(p) for p in build.layer_packages()}
    assert packages, "the layer's package list is empty: the lock was not read"
    assert not (BENCH_ONLY & packages)
    requirements = "".join(p.read_text() for p in (ROOT / "requirements").glob("*.in")).lower()
    assert "polars" not in requirements
