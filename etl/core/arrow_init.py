"""Keep pandas off the chunk path (SPEC PERF4).

pyarrow decides lazily whether pandas is around: the first ``pa.array``/``pa.scalar`` from a
Python or numpy object (and every compute call given a plain Python value, e.g.
``pc.equal(col, 0)``) asks its pandas shim, which imports pandas when it is installed. The AWS
SDK for pandas layer installs it, so a chunk function paid ~0.6 s of init and ~40 MiB for a
library the chunk path never uses.

:func:`prime` answers that question once, with pandas hidden: the shim records "no pandas" for
its *implicit* checks (is this a Series? a Categorical?), which the chunk path only ever answers
"no" anyway (it passes numpy arrays, lists and Arrow objects), so the Parquet bytes are the same.
An *explicit* pandas use (``Table.to_pandas()``) still imports pandas and works: the shim
retries the import when asked with ``raise_=True``.

Call :func:`prime` before the first ``pa.array``/``pa.scalar`` of the process (the schema loader
and the chunk modules do). It does nothing when pandas is already imported, and hides pandas only
for the duration of one tiny call on the importing thread (Lambda init is single-threaded).
Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import sys
import threading

_DONE = False
_LOCK = threading.Lock()


def prime() -> None:
    """Make pyarrow's pandas shim settle on "no pandas" without importing pandas (idempotent)."""
    global _DONE
    if _DONE:
        return
    with _LOCK:
        if _DONE:
            return
        _DONE = True
        if "pandas" in sys.modules:
            return  # already paid for (or hidden by someone else): nothing to save
        import numpy as np
        import pyarrow as pa

        blocker = _Blocker()
        sys.meta_path.insert(0, blocker)  # `import pandas` -> ImportError, for this one call
        try:
            # Two lazy lookups, one per layer: converting a numpy array asks the Python shim
            # whether it is a pandas object; inferring the type of a Python value makes the C++
            # converter look pandas up (pd.NA, Timestamp). Both try, fail, and remember.
            pa.array(np.zeros(0, dtype=np.bool_))
            pa.scalar(True)
        finally:
            sys.meta_path.remove(blocker)


class _Blocker:
    """A meta path finder that refuses to find pandas (and only pandas)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas is kept out of the chunk path (etl.core.arrow_init)")
        return None


def restore_pandas() -> None:
    """For code that does use pandas in a process that called :func:`prime` (benchmarks, a
    notebook): import pandas and make pyarrow's shim recognise pandas objects again (an explicit
    shim lookup re-imports pandas and sets it as present)."""
    import pandas  # noqa: F401
    import pyarrow as pa

    pa.lib._pandas_api.pd  # type: ignore[attr-defined]  # noqa: B018  (the lookup re-arms the shim)
