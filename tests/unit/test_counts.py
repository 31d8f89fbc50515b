"""RUN4/DX2: one row-count conservation check (etl/core/counts.py), used by every place that
produces or combines counts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from etl.core.counts import check_conservation
from etl.errors import ConservationViolation

ROOT = Path(__file__).resolve().parents[2]
USERS = (
    "etl/core/process.py",
    "etl/handlers/process_chunk.py",
    "etl/handlers/finalize.py",
    "etl/core/manifest.py",
)


def test_RUN4_check_conservation() -> None:
    check_conservation("CHUNK#00001", 10, 9, 1)
    check_conservation("file f", 0, 0, 0)
    with pytest.raises(
        ConservationViolation, match=r"^CHUNK#00001: rows_in 10 != rows_valid 8 \+ rows_rejected 1$"
    ):
        check_conservation("CHUNK#00001", 10, 8, 1)
    with pytest.raises(ConservationViolation, match="rows_in 10 != rows_valid 10"):
        check_conservation("x", 10, 10, 1)  # a row counted twice


def _raises_violation(node: ast.AST) -> bool:
    return isinstance(node, ast.Raise) and "ConservationViolation" in ast.unparse(node)


def _calls_and_inline_checks(path: Path) -> tuple[int, list[str]]:
    """(calls of check_conservation, ConservationViolations raised on a rows_in comparison)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = sum(
        1
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check_conservation"
    )
    inline = [
        f"{path.name}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        and "rows_in" in ast.unparse(node.test)
        and any(
            isinstance(n, ast.Raise) and "ConservationViolation" in ast.unparse(n) for n in ast.walk(node)
        )
    ]
    return calls, inline


@pytest.mark.parametrize("module", USERS)
def test_DX2_one_conservation_check(module: str) -> None:
    calls, inline = _calls_and_inline_checks(ROOT / module)
    assert calls >= 1, f"{module} no longer calls etl.core.counts.check_conservation"
    assert inline == [], f"{module} has its own conservation check: {inline}"
