"""DATA7: what each function ships, unzipped, against Lambda's 250 MB (function + layers).

Sizes come from a synthesized cloud assembly: the function's code asset (the etl/ package as
filtered by infra/functions.py ASSET_EXCLUDES) and our own layer assets as staged by CDK (the
pyiceberg layer bundled from its build), plus the managed layers' recorded sizes
(infra/managed_layer_sizes.json, with sources). ``make size-budget`` prints the table.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANAGED_SIZES = Path(__file__).resolve().parent / "managed_layer_sizes.json"


def load_managed(path: Path = MANAGED_SIZES) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def tree_size(root: Path) -> int:
    """Unzipped bytes of a directory (what Lambda counts)."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@dataclass
class FunctionBudget:
    name: str
    code_bytes: int
    layers: list[tuple[str, int]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.code_bytes + sum(size for _, size in self.layers)


def _ref(value: Any) -> str:
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    raise ValueError(f"layer is not a Ref: {value!r}")


def _asset_dir(outdir: Path, code: dict[str, Any]) -> Path:
    """The staged directory of a zip asset: S3Key ``<hash>.zip`` -> ``<outdir>/asset.<hash>``."""
    key = code.get("S3Key")
    if not isinstance(key, str) or not key.endswith(".zip"):
        raise ValueError(f"not a file asset: {code!r}")
    staged = outdir / f"asset.{key[: -len('.zip')]}"
    if not staged.is_dir():
        raise ValueError(f"{staged} was not staged (synthesized with asset bundling skipped?)")
    return staged


def function_budgets(template: dict[str, Any], outdir: Path, managed: dict[str, Any]) -> list[FunctionBudget]:
    """One entry per Python function of ``template`` (CDK's Node.js helpers are not ours)."""
    resources = template["Resources"]
    parameters = template.get("Parameters", {})
    budgets = []
    for lid, resource in resources.items():
        props = resource.get("Properties", {})
        if resource["Type"] != "AWS::Lambda::Function" or not str(props.get("Runtime", "")).startswith(
            "python"
        ):
            continue
        budget = FunctionBudget(
            str(props.get("FunctionName", lid)), tree_size(_asset_dir(outdir, props["Code"]))
        )
        for layer in props.get("Layers", []):
            ref = _ref(layer)
            if ref in parameters:
                path = str(parameters[ref].get("Default", ""))
                matches = [
                    (name, spec)
                    for name, spec in managed["layers"].items()
                    if path.startswith(spec["ssm_parameter_prefix"])
                ]
                if len(matches) != 1:
                    raise ValueError(f"{lid}: no recorded size for the managed layer {path!r}")
                name, spec = matches[0]
                budget.layers.append((name, int(spec["assumed_unzipped_bytes"])))
            else:
                layer_resource = resources[ref]
                if layer_resource["Type"] != "AWS::Lambda::LayerVersion":
                    raise ValueError(f"{lid}: layer {ref} is a {layer_resource['Type']}")
                name = str(layer_resource["Properties"].get("LayerName", ref))
                budget.layers.append(
                    (name, tree_size(_asset_dir(outdir, layer_resource["Properties"]["Content"])))
                )
        budgets.append(budget)
    return budgets


def over_budget(budgets: list[FunctionBudget], limit: int) -> list[FunctionBudget]:
    return [b for b in budgets if b.total > limit]


def table(budgets: list[FunctionBudget], limit: int) -> str:
    """Markdown table for docs/infrastructure.md."""
    lines = ["| function | code | layers | total | headroom |", "|---|---:|---|---:|---:|"]
    for b in sorted(budgets, key=lambda b: -b.total):
        layers = " + ".join(f"{name} {size / 1e6:.1f}" for name, size in b.layers)
        lines.append(
            f"| {b.name} | {b.code_bytes / 1e6:.2f} | {layers} | {b.total / 1e6:.1f} "
            f"| {(limit - b.total) / 1e6:.1f} |"
        )
    return "\n".join(lines) + f"\n\nMB = 10^6 bytes; limit {limit:,} bytes ({limit / 1e6:.1f} MB)."


def main() -> int:
    import tempfile

    from infra.application import build_app

    outdir = Path(tempfile.mkdtemp(prefix="etl-size-budget-"))
    app = build_app({}, outdir=str(outdir), policy_checks=False)
    assembly = app.synth()
    managed = load_managed()
    limit = int(managed["lambda_unzipped_limit_bytes"])
    stack = assembly.stacks[0]
    budgets = function_budgets(dict(stack.template), outdir, managed)
    print(f"{stack.stack_name}:\n{table(budgets, limit)}")
    return 1 if over_budget(budgets, limit) else 0


if __name__ == "__main__":
    sys.exit(main())
