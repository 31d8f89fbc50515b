"""DX4: the package dependency graph is acyclic and runs one way.

infra -> etl, etl_local -> {etl, infra}, etl_cli -> {etl, etl_local, infra}; etl imports none of them
(it ships to Lambda) and etl.core imports no AWS code. Read from the source with ``ast`` (every
import, including those inside functions), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("etl", "infra", "etl_local", "etl_cli")
CDK_AND_TOOLS = {"aws_cdk", "constructs", "cdk_nag", "jsii", "click", "rich", "moto"}
AWS_SDK = {"boto3", "botocore"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            yield target
            for alias in node.names:  # `from etl import contracts` imports etl.contracts
                yield f"{target}.{alias.name}"


def _module_imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    files: list[Path] = [ROOT / "app.py"]
    for package in PACKAGES:
        files += sorted((ROOT / package).rglob("*.py"))
    for path in files:
        graph[_module_name(path)] = set(_imports(path))
    return graph


def _package_edges() -> set[tuple[str, str]]:
    edges = set()
    for module, imported in _module_imports().items():
        source = module.split(".")[0]
        for name in imported:
            target = name.split(".")[0]
            if target in PACKAGES and source in PACKAGES and target != source:
                edges.add((source, target))
    return edges


def _find_cycle(edges: set[tuple[str, str]]) -> list[str]:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_DX4_package_graph_is_acyclic() -> None:
    edges = _package_edges()
    assert _find_cycle(edges) == [], f"package cycle: {' -> '.join(_find_cycle(edges))}"


def test_DX4_package_graph_runs_one_way() -> None:
    allowed = {
        ("infra", "etl"),
        ("etl_local", "etl"),
        ("etl_local", "infra"),
        ("etl_cli", "etl"),
        ("etl_cli", "etl_local"),
        ("etl_cli", "infra"),
    }
    assert _package_edges() <= allowed


def test_DX4_lambda_code_imports_no_infra_cli_or_cdk() -> None:
    forbidden = {"infra", "etl_local", "etl_cli"} | CDK_AND_TOOLS
    offenders = sorted(
        f"{module} imports {name}"
        for module, imported in _module_imports().items()
        if module.split(".")[0] == "etl"
        for name in imported
        if name.split(".")[0] in forbidden
    )
    assert offenders == []


def test_DX4_core_imports_no_aws_code() -> None:
    offenders = sorted(
        f"{module} imports {name}"
        for module, imported in _module_imports().items()
        if module.startswith("etl.core")
        for name in imported
        if name.split(".")[0] in AWS_SDK or name.startswith(("etl.aws", "etl.handlers"))
    )
    assert offenders == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _find_cycle({("a", "b"), ("b", "c"), ("c", "a")}) == ["a", "b", "c", "a"]
    assert _find_cycle({("a", "b"), ("b", "c")}) == []
