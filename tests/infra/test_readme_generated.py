"""SPEC UX9: the README's figures that come from a run are generated (`make docs`,
tools/readme_blocks.py) and this test fails when the code would now write other figures for
the same seed (the data generator, the rules or the counts changed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_blocks", ROOT / "tools" / "readme_blocks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return _tool()


@pytest.fixture(scope="module")
def expected(tool: ModuleType) -> dict[str, str]:
    """Generate the 160 MB seed-42 file and validate it (about a minute on two cores)."""
    lines: dict[str, str] = tool.expected_lines()
    return lines


def test_UX9_readme_demo_block_holds_the_figures_the_code_computes(
    tool: ModuleType, expected: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tool, "expected_lines", lambda: expected)
    assert tool.check((ROOT / "README.md").read_text(encoding="utf-8")) == []


def test_UX9_a_drifted_figure_fails_the_check(
    tool: ModuleType, expected: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tool, "expected_lines", lambda: expected)
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("generated", "rows", "published"):
        drifted = text.replace(expected[name], expected[name].replace("1", "7", 1))
        assert drifted != text
        problems = tool.check(drifted)
        assert [p.split(":", 1)[0] for p in problems] == [name], problems
    assert tool.check(text.replace("published   snapshot", "published   snap")) != []
