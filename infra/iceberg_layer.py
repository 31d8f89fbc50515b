"""DATA7: the pyiceberg layer, built from uv.lock without Docker (infra/iceberg_layer_build.py).

The asset is bundled locally: the bundler copies the build for the configured runtime and
architecture from ``.build/layers/`` (``make layer`` builds it; a missing build is built on the
spot, which needs PyPI). Its hash is the build's key (exported requirements + recipe), so the
layer version changes only when the lock or the recipe does. Synths that never upload assets
(tests, local mode) skip bundling through CDK's ``aws:cdk:bundling-stacks`` context, which keeps
them free of network and of the build.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import jsii
from aws_cdk import Annotations, AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra import iceberg_layer_build as build
from infra.config import EtlConfig

# The asset's source: only hashed when bundling is skipped, never shipped.
SOURCE_DIR = Path(__file__).resolve().parent / "layer_source"


def _available(python_version: str) -> bool:
    return tuple(int(p) for p in python_version.split(".")) >= build.MIN_LAMBDA_PYTHON


@jsii.implements(ILocalBundling)
class _FromBuildCache:
    def __init__(self, python_version: str, arch: str) -> None:
        self.python_version = python_version
        self.arch = arch

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_: object) -> bool:
        # Raises build.LayerUnavailable for runtimes below python3.12 (no wheels in the lock).
        layer = build.build(self.python_version, self.arch)
        shutil.copytree(layer.content, output_dir, dirs_exist_ok=True)
        return True


def asset_hash(config: EtlConfig) -> str:
    if not _available(config.python_version):
        # Synth (templates, tests) still works; bundling for a deploy fails with the reason.
        return f"pyiceberg-unavailable-py{config.python_version}-{config.architecture}"
    return build.plan(config.python_version, config.architecture).key


class IcebergLayer(Construct):
    """``etl-pyiceberg-<suffix>``: pyiceberg + Powertools (tracer) for the Iceberg functions."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EtlConfig) -> None:
        super().__init__(scope, construct_id)
        if not _available(config.python_version):
            Annotations.of(self).add_warning_v2(
                "etl:no-pyiceberg-layer",
                f"lambdaRuntime={config.lambda_runtime}: the pyiceberg layer needs python3.12+ on Lambda "
                "(wheels in uv.lock); synth works, but bundling it for a deploy fails (DATA7).",
            )
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            layer_version_name=config.name("pyiceberg"),
            description="pyiceberg and Powertools for AWS Lambda (tracer), locked versions from uv.lock",
            compatible_runtimes=[config.runtime],
            compatible_architectures=[config.lambda_architecture],
            code=lambda_.Code.from_asset(
                str(SOURCE_DIR),
                asset_hash_type=AssetHashType.CUSTOM,
                asset_hash=asset_hash(config),
                bundling=BundlingOptions(
                    # Never pulled: the local bundler always succeeds or raises.
                    image=DockerImage.from_registry(f"public.ecr.aws/sam/build-{config.lambda_runtime}"),
                    local=_FromBuildCache(config.python_version, config.architecture),
                ),
            ),
        )
