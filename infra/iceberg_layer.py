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
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra import iceberg_layer_build as build
from infra.config import EtlConfig

# The asset's source: only hashed when bundling is skipped, never shipped.
SOURCE_DIR = Path(__file__).resolve().parent / "layer_source"
# Lowest runtime the lock resolves pyiceberg for (uv.lock requires-python >= 3.11).
MIN_LAYER_PYTHON = (3, 11)


class LayerUnavailable(RuntimeError):
    """No pyiceberg build exists (or can exist) for this runtime."""


@jsii.implements(ILocalBundling)
class _FromBuildCache:
    def __init__(self, python_version: str, arch: str) -> None:
        self.python_version = python_version
        self.arch = arch

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_: object) -> bool:
        if tuple(int(p) for p in self.python_version.split(".")) < MIN_LAYER_PYTHON:
            raise LayerUnavailable(
                f"pyiceberg in uv.lock is resolved for Python >= 3.11 only; no layer can be built for "
                f"python{self.python_version}. Use lambdaRuntime python3.12 or later."
            )
        layer = build.build(self.python_version, self.arch)
        shutil.copytree(layer.content, output_dir, dirs_exist_ok=True)
        return True


def asset_hash(config: EtlConfig) -> str:
    if tuple(int(p) for p in config.python_version.split(".")) < MIN_LAYER_PYTHON:
        return f"pyiceberg-unavailable-py{config.python_version}-{config.architecture}"
    return build.plan(config.python_version, config.architecture).key


class IcebergLayer(Construct):
    """``etl-pyiceberg-<suffix>``: pyiceberg + Powertools (tracer) for the Iceberg functions."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EtlConfig) -> None:
        super().__init__(scope, construct_id)
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
