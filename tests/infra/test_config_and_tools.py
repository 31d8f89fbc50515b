"""infra.config (context parsing and validation) and infra.template_tools (intrinsic resolver)."""

from __future__ import annotations

from typing import Any

import pytest

from infra.config import ConfigError, EtlConfig
from infra.template_tools import (
    UnresolvableIntrinsic,
    placeholder_resolver,
    resolve_intrinsics,
    state_machine_definition,
)


class FakeScope:
    """Just enough of a construct for EtlConfig.from_context."""

    def __init__(self, context: dict[str, Any]) -> None:
        self.node = self
        self._context = context

    def try_get_context(self, key: str) -> Any:
        return self._context.get(key)


def test_config_defaults() -> None:
    config = EtlConfig.from_context(FakeScope({}))  # type: ignore[arg-type]
    assert (config.environment_suffix, config.lambda_runtime, config.architecture) == (
        "dev",
        "python3.13",
        "x86_64",
    )
    assert (config.chunk_size_bytes, config.max_record_bytes) == (50 * 1024 * 1024, 16 * 1024 * 1024)
    assert config.alarm_email is None
    assert config.name("status") == "etl-status-dev"


@pytest.mark.parametrize("raw", ["true", "false", True, False, "maybe"])
def test_DR3_drActive_is_retired_with_a_pointer_to_etl_dr_promote(raw: Any) -> None:
    """The old deploy-time switch fails the synth (any value): a deploy must never decide which
    region is active; the error names the runtime switch that replaced it."""
    with pytest.raises(ConfigError, match=r"drActive is retired.*etl dr promote --region eu-west-1"):
        EtlConfig.from_context(FakeScope({"drActive": raw}))  # type: ignore[arg-type]


def test_DR3_cdk_json_no_longer_sets_drActive() -> None:
    from infra.application import cdk_json_context

    assert "drActive" not in cdk_json_context()


@pytest.mark.parametrize(
    ("context", "key"),
    [
        ({"chunkSizeMb": "fifty"}, "chunkSizeMb"),
        ({"chunkSizeMb": 0}, "chunkSizeMb"),
        ({"maxRecordMb": 64}, "maxRecordMb"),
        ({"architecture": "sparc"}, "architecture"),
        ({"alarmEmail": "not-an-address"}, "alarmEmail"),
        ({"sdkPandasVersion": "latest"}, "sdkPandasVersion"),
        ({"environmentSuffix": "Prod"}, "environmentSuffix"),
    ],
)
def test_config_rejects_bad_context_naming_the_key(context: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        EtlConfig.from_context(FakeScope(context))  # type: ignore[arg-type]


def test_config_reads_account_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDK_DEFAULT_ACCOUNT", "111122223333")
    assert EtlConfig.from_context(FakeScope({})).account == "111122223333"  # type: ignore[arg-type]
    monkeypatch.delenv("CDK_DEFAULT_ACCOUNT")
    assert EtlConfig.from_context(FakeScope({})).account is None  # type: ignore[arg-type]


def resolver(logical_id: str, attribute: str | None) -> str:
    known = {("Fn", "Arn"): "arn:aws:lambda:us-east-1:1:function:f", ("AWS::Region", None): "us-east-1"}
    if (logical_id, attribute) not in known:
        raise UnresolvableIntrinsic(logical_id)
    return known[(logical_id, attribute)]


def test_resolve_intrinsics_joins_refs_and_getatts() -> None:
    value = {
        "Fn::Join": ["", ['{"R":"', {"Fn::GetAtt": ["Fn", "Arn"]}, '","G":"', {"Ref": "AWS::Region"}, '"}']]
    }
    assert (
        resolve_intrinsics(value, resolver) == '{"R":"arn:aws:lambda:us-east-1:1:function:f","G":"us-east-1"}'
    )
    assert resolve_intrinsics({"a": [{"Ref": "AWS::Region"}, 1]}, resolver) == {"a": ["us-east-1", 1]}


@pytest.mark.parametrize(
    "value",
    [
        {"Fn::Sub": "arn:${AWS::Partition}:x"},
        {"Fn::If": ["C", "a", "b"]},
        {"Fn::Join": ["", [{"Ref": "Unknown"}]]},
        {"Fn::GetAtt": ["Fn", "Unknown"]},
        {"Fn::Join": ["", [{"Fn::Select": [0, ["a"]]}]]},
    ],
)
def test_resolve_intrinsics_fails_on_anything_unknown(value: Any) -> None:
    with pytest.raises(UnresolvableIntrinsic):
        resolve_intrinsics(value, resolver)


def test_resolver_must_return_strings() -> None:
    with pytest.raises(UnresolvableIntrinsic):
        resolve_intrinsics({"Ref": "X"}, lambda _lid, _attr: None)  # type: ignore[arg-type,return-value]


def test_definition_resolves_with_a_custom_resolver(primary: dict[str, Any]) -> None:
    """What the local harness does: its own resolver maps logical ids to emulator ARNs."""
    base = placeholder_resolver(primary, region="us-east-1", account="000000000000")
    seen: list[tuple[str, str | None]] = []

    def emulated(logical_id: str, attribute: str | None) -> str:
        seen.append((logical_id, attribute))
        return base(logical_id, attribute)

    asl = state_machine_definition(primary, emulated)
    assert asl["States"]["RegisterFile"]["Resource"].startswith(
        "arn:aws:lambda:us-east-1:000000000000:function:"
    )
    kinds = {primary["Resources"][lid]["Type"] for lid, _ in seen if lid in primary["Resources"]}
    assert {"AWS::Lambda::Function", "AWS::SQS::Queue", "AWS::SNS::Topic"} <= kinds


def test_DX_every_mutation_names_code_that_exists_once() -> None:
    """`make mutate` (tools/mutate.py) stops with exit 2 on an entry whose snippet the code no
    longer has; this catches such an entry in CI, at the change that rewrote the code."""
    import importlib.util
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("etl_tools_mutate", root / "tools" / "mutate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    stale = [
        (m.name, m.path)
        for m in module.MUTATIONS
        if (root / m.path).read_text(encoding="utf-8").count(m.original) != 1
        or not all((root / t.split("::")[0]).exists() for t in m.tests)
    ]
    assert len(module.MUTATIONS) >= 18 and stale == []
