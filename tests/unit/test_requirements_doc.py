"""DX5: every requirement id cited in code, tests, benchmarks, docs and the README is defined in
docs/requirements.md (and the document defines each id once)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "requirements.md"
# An id is a known family followed by a number, not glued to other letters or digits
# (`test_INF6_...` and "RUN4:" count; "HTML5" or "sha256" do not).
ID = re.compile(r"(?<![A-Za-z0-9])((?:INF|RUN|LOC|PERF|DATA|OPS|DX|UX|DR|SEC|TBL|L)[0-9]+)(?![0-9])")
DEFINITION = re.compile(r"^- \*\*([A-Z]+[0-9]+)\*\* — \S", re.MULTILINE)
SCANNED_DIRS = ("etl", "infra", "etl_cli", "etl_local", "tests", "benchmarks", "docs", "tools")
SCANNED_FILES = ("README.md", "app.py", "Makefile", "pyproject.toml", "cdk.json")
SELF = {DOC, Path(__file__).resolve()}  # this file names lookalikes on purpose
SUFFIXES = {".py", ".md", ".json", ".toml", ".txt", ".in", ".cfg", ".yml", ".yaml", ".sh"}


def defined_ids() -> list[str]:
    return DEFINITION.findall(DOC.read_text(encoding="utf-8"))


def cited_ids() -> dict[str, set[str]]:
    """id -> the files citing it."""
    files = [ROOT / name for name in SCANNED_FILES if (ROOT / name).exists()]
    for directory in SCANNED_DIRS:
        files += [
            f
            for f in sorted((ROOT / directory).rglob("*"))
            if f.is_file() and f.suffix in SUFFIXES and "__pycache__" not in f.parts and f not in SELF
        ]
    cited: dict[str, set[str]] = {}
    for f in files:
        for match in ID.finditer(f.read_text(encoding="utf-8", errors="replace")):
            cited.setdefault(match.group(1), set()).add(str(f.relative_to(ROOT)))
    return cited


def test_DX5_every_cited_requirement_id_is_defined() -> None:
    defined = set(defined_ids())
    missing = {rid: sorted(files)[:3] for rid, files in cited_ids().items() if rid not in defined}
    assert missing == {}, f"cited but not defined in docs/requirements.md: {missing}"


def test_DX5_each_id_is_defined_once_and_the_doc_is_found() -> None:
    ids = defined_ids()
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert all(ID.fullmatch(i) for i in ids)
    # The families the project cites, so a broken pattern cannot make the check vacuous.
    assert {"L2", "INF6", "RUN4", "LOC1", "PERF2", "DATA1", "OPS1", "DX5", "UX1", "DR1"} <= set(ids)
    assert len(cited_ids()) >= 20


def test_DX5_the_id_pattern_ignores_lookalikes() -> None:
    text = "test_INF6_roles, RUN4: counts, (PERF2), HTML5, sha256, DRAFT1, XL2, INF61x"
    assert [m.group(1) for m in ID.finditer(text)] == ["INF6", "RUN4", "PERF2", "INF61"]
