"""Make moto's Glue ``UpdateTable`` honour ``VersionId`` like AWS Glue does.

Iceberg commits on Glue are optimistic: pyiceberg reads the table (its ``VersionId``), writes
new metadata and calls ``UpdateTable(..., VersionId=<read version>)``; AWS refuses the update
with ``ConcurrentModificationException`` when another commit got in between, and pyiceberg
raises ``CommitFailedException`` (which ``etl.aws.catalog.publish`` retries). moto 5.2 ignores
``VersionId``, so two concurrent commits on the emulator could both "succeed" and one would
silently lose its snapshot. This patch adds the check (atomic under a lock), so the local
pipeline and the e2e tests exercise the real conflict path (SPEC DATA2).

Installed by :class:`etl_local.emulator.Emulator` in the server process;
:func:`check_patch_target` fails loudly if moto reshapes the patched method.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

_LOCK = threading.Lock()
_MARK = "_etl_local_versioned"


def _exception() -> type:
    from moto.glue.exceptions import GlueClientError

    class ConcurrentModificationException(GlueClientError):
        def __init__(self, message: str) -> None:
            super().__init__("ConcurrentModificationException", message)

    return ConcurrentModificationException


def check_patch_target() -> None:
    from moto.glue.responses import GlueResponse

    method = getattr(GlueResponse.update_table, "_etl_local_original", GlueResponse.update_table)
    src = inspect.getsource(method)
    if "self.glue_backend.update_table(database_name, table_name, table_input)" not in src:
        raise RuntimeError("moto's GlueResponse.update_table changed: review etl_local/glue_versions.py")


def install() -> None:
    """Patch ``GlueResponse.update_table`` (idempotent)."""
    from moto.glue.responses import GlueResponse

    if getattr(GlueResponse.update_table, _MARK, False):
        return
    check_patch_target()
    original = GlueResponse.update_table
    conflict = _exception()

    def update_table(self: Any) -> Any:
        params = self.parameters
        expected = params.get("VersionId")
        with _LOCK:  # the check and the update are one step, as on AWS
            if expected is not None:
                table = self.glue_backend.get_table(
                    params.get("DatabaseName"), (params.get("TableInput") or {}).get("Name")
                )
                current = table.as_dict().get("VersionId")
                if str(current) != str(expected):
                    raise conflict(f"table version is {current}, the update expected {expected}")
            return original(self)

    setattr(update_table, _MARK, True)
    update_table._etl_local_original = original  # type: ignore[attr-defined]
    GlueResponse.update_table = update_table  # type: ignore[method-assign]
