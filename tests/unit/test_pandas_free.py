"""PERF4: nothing on the chunk path imports pandas (pyarrow would, implicitly, on its first
``pa.array``/``pa.scalar`` from Python values: ~0.6 s of a chunk function's init). Each check runs
in a fresh interpreter, the only way to see what a cold Lambda process imports. No timing here:
init time is a benchmark (benchmarks/bench_init.py)."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHUNK_SCRIPT = """
import hashlib, sys
{before}
from etl.core.schema import load_schema
from etl.core.process import process_chunk
from etl_local.datagen import generate_bytes

data, stats = generate_bytes(rows=3000, seed=7, bad_row_share=0.05)
result = process_chunk(data, load_schema("default"), 2)
assert result.rows_rejected > 0 and result.rows_valid > 0
digests = [hashlib.sha256(b).hexdigest() for b in (result.parquet, result.rejects_csv)]
print("pandas" in sys.modules, *digests)
"""


def _run(before: str = "") -> list[str]:
    code = CHUNK_SCRIPT.format(before=before)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_PERF4_processing_a_chunk_never_imports_pandas() -> None:
    pandas_loaded, _, _ = _run()
    assert pandas_loaded == "False", "pandas was imported on the chunk path (schema load + process_chunk)"


def test_PERF4_outputs_are_byte_identical_with_pandas_loaded() -> None:
    # With pandas imported first, pyarrow's pandas integration is fully on: the outputs must be
    # the same bytes, so keeping pandas out changes nothing a reader sees.
    without = _run()
    with_pandas = _run("import pandas")
    assert with_pandas[0] == "True"
    assert without[1:] == with_pandas[1:]


def test_PERF4_explicit_pandas_use_still_works_after_the_chunk_path() -> None:
    code = (
        "from etl.core.schema import load_schema\n"
        "from etl.core.arrow_init import restore_pandas\n"
        "import pyarrow as pa\n"
        "load_schema('default')\n"
        "t = pa.table({'a': pa.array([1, None], pa.int64())})\n"
        "assert t.to_pandas()['a'].isna().sum() == 1\n"
        "restore_pandas()\n"
        "import pandas as pd\n"
        "assert pa.array(pd.Series([1, None], dtype='Int64')).null_count == 1\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
