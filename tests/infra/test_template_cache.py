"""DX4: the local template cache key covers every file the synthesized template depends on.

Edits a copy of the repository's template inputs and checks the key changes (and that files
the template does not depend on leave it alone).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from etl_local.deploy import REPO_ROOT, _infra_fingerprint

CONTEXT = {"environmentSuffix": "local"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("app.py", "cdk.json", "README.md"):
        shutil.copy2(REPO_ROOT / name, tmp_path / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for tree in ("infra", "etl", "docs"):
        shutil.copytree(REPO_ROOT / tree, tmp_path / tree, ignore=ignore)
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("relpath", "old", "new"),
    [
        # RETRYABLE_ERRORS feed the state machine's Retry lists (the bug the issue names).
        ("etl/errors.py", "RETRYABLE_ERRORS", "RETRYABLE_ERRORS_"),
        ("etl/contracts.py", '"', "'"),
        ("etl/handlers/process_chunk.py", "def ", "def  "),
        ("etl/schemas/default.json", "{", "{ "),
        ("infra/workflow.py", "def ", "def  "),
        ("app.py", "build_app", "build_app "),
        ("cdk.json", '"dev"', '"dev2"'),
    ],
)
def test_DX4_cache_key_covers_every_template_input(root: Path, relpath: str, old: str, new: str) -> None:
    before = _infra_fingerprint(CONTEXT, root)
    _edit(root / relpath, old, new)
    assert _infra_fingerprint(CONTEXT, root) != before


def test_DX4_cache_key_changes_with_a_new_file_under_etl(root: Path) -> None:
    before = _infra_fingerprint(CONTEXT, root)
    (root / "etl" / "core" / "new_module.py").write_text("X = 1\n")
    assert _infra_fingerprint(CONTEXT, root) != before


def test_DX4_cache_key_changes_with_context(root: Path) -> None:
    assert _infra_fingerprint(CONTEXT, root) != _infra_fingerprint({"environmentSuffix": "other"}, root)


def test_DX4_cache_key_ignores_files_outside_the_template_inputs(root: Path) -> None:
    before = _infra_fingerprint(CONTEXT, root)
    (root / "README.md").write_text("changed\n")
    (root / "docs" / "notes.md").write_text("changed\n")
    (root / "etl" / "__pycache__").mkdir(exist_ok=True)
    (root / "etl" / "__pycache__" / "x.cpython-313.pyc").write_bytes(b"\0")
    assert _infra_fingerprint(CONTEXT, root) == before
    assert _infra_fingerprint(CONTEXT, root) == _infra_fingerprint(CONTEXT, root)
