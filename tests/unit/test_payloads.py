"""DX1/DX2: etl/payloads.py, the typed shapes and the one file-item builder."""

from __future__ import annotations

import ast
from pathlib import Path

from etl import payloads
from etl.core.identity import file_id_for

ROOT = Path(__file__).resolve().parents[2]


def test_DX2_new_file_builds_the_identity_attributes() -> None:
    file = payloads.new_file("b", "incoming/acme/Tx.CSV.GZ", "v1", "e1", 12)
    assert file == {
        "file_id": file_id_for("incoming/acme/Tx.CSV.GZ", "v1", "e1"),
        "bucket": "b",
        "key": "incoming/acme/Tx.CSV.GZ",
        "original_key": "incoming/acme/Tx.CSV.GZ",
        "version_id": "v1",
        "size": 12,
        "etag": "e1",
        "partner": "acme",
        "compression": "gzip",
    }
    assert payloads.new_file("b", "incoming/p/a.csv", None, "e", 0)["compression"] == "none"


def test_DX1_file_ref_keeps_only_the_documented_keys() -> None:
    item: payloads.FileItem = {
        **payloads.new_file("b", "failed/p/f/a.csv", None, "e", 3),  # type: ignore[typeddict-item]
        "original_key": "incoming/p/a.csv",
        "status": "FAILED",
        "attempts": 2,
    }
    ref = payloads.file_ref(item, duplicate=False, force=True)
    assert set(ref) == set(payloads.FileRef.__annotations__)
    assert ref["key"] == "failed/p/f/a.csv" and ref["original_key"] == "incoming/p/a.csv"
    assert ref["force"] is True and ref["duplicate"] is False


def _builds_a_file_item(node: ast.AST) -> bool:
    """A dict display with the identity keys: a second file-item builder."""
    if not isinstance(node, ast.Dict):
        return False
    keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
    return {"file_id", "original_key", "compression"} <= keys


def test_DX2_one_file_item_builder() -> None:
    builders = sorted(
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in (ROOT / "etl").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if _builds_a_file_item(node)
    )
    # new_file (the file item) and file_ref ($.file, built from an item).
    assert [b.rsplit(":", 1)[0] for b in builders] == ["etl/payloads.py", "etl/payloads.py"], builders
