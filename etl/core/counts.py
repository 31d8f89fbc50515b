"""Row-count conservation (SPEC RUN4): every record read is either valid or rejected.

The one check, used where counts are produced or combined: the chunk core
(``etl.core.process``), the chunk handler before it writes anything, Finalize over the chunk
items, and the manifest. A violation is a bug; it is raised as the permanent
:class:`etl.errors.ConservationViolation` so the file fails instead of publishing wrong rows.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

from etl.errors import ConservationViolation


def check_conservation(where: str, rows_in: int, rows_valid: int, rows_rejected: int) -> None:
    """Raise ConservationViolation unless ``rows_in == rows_valid + rows_rejected``; ``where``
    (a chunk id, ``file <id>``, ``chunk at line <n>``) starts the message."""
    if rows_in != rows_valid + rows_rejected:
        raise ConservationViolation(
            f"{where}: rows_in {rows_in} != rows_valid {rows_valid} + rows_rejected {rows_rejected}"
        )
