"""The README's figures that come from a run are generated, and checked (SPEC UX9).

    make docs                                   # run the demo (seed 42, 160 MB), rewrite the block
    .venv/bin/python tools/readme_blocks.py --check   # offline: do the README's figures still hold?

The block between ``<!-- generated:demo-run -->`` and ``<!-- /generated:demo-run -->`` in
README.md is the output of ``etl local demo --size-mb 160 --seed 42`` as a log shows it (stdout
not a terminal), with the state directory written as ``~/.local/state/etl-local``. Its
deterministic figures (the generated file's size, rows and bad rows; the rows total, valid and
rejected; the rows in the table) depend only on the seed and the code, so ``--check`` recomputes
them offline, with the data generator and ``etl validate``'s engine (the pipeline's own code,
whose counts equal the pipeline's: tests/e2e/test_cli_query.py), and reports every line that
differs. tests/infra/test_readme_generated.py runs the check: a change to the generator or the
rules that moves a figure fails it until ``make docs`` is run.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BEGIN, END = "<!-- generated:demo-run -->", "<!-- /generated:demo-run -->"
SEED, SIZE_MB = 42, 160
SHOWN_STATE = "~/.local/state/etl-local"


def block_of(text: str) -> str:
    """The generated block's content (between the markers)."""
    try:
        start = text.index(BEGIN) + len(BEGIN)
        return text[start : text.index(END, start)]
    except ValueError:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block") from None


def run_demo() -> str:
    """The demo's output as a log shows it, the state directory written as SHOWN_STATE."""
    with tempfile.TemporaryDirectory() as tmp:
        state = str(Path(tmp) / "etl-local")
        env = {**os.environ, "ETL_LOCAL_DIR": state, "COLUMNS": "110"}
        etl = Path(sys.executable).with_name("etl")
        cmd = [str(etl), "local", "demo", "--size-mb", str(SIZE_MB), "--seed", str(SEED)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=3600)
        if proc.returncode != 0:
            raise SystemExit(f"etl local demo exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        return proc.stdout.replace(state, SHOWN_STATE)


def expected_lines() -> dict[str, str]:
    """The demo's deterministic lines for SEED and SIZE_MB, computed offline."""
    from etl_cli.main import demo_intro
    from etl_cli.pipeline import FileReport
    from etl_cli.render import report_rows
    from etl_cli.validate import validate_file
    from etl_local.datagen import generate_csv

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"demo-{SIZE_MB}mb-seed{SEED}.csv"
        stats = generate_csv(
            path, size_bytes=SIZE_MB * 1024 * 1024, seed=SEED, bad_row_share=0.005, schema="default"
        )
        result = validate_file(path, str(ROOT / "etl" / "schemas" / "default.json"))
    rep = FileReport(
        status=result.status,
        file_id="-",
        bucket="-",
        rows_total=result.rows_total,
        rows_valid=result.rows_valid,
        rows_rejected=result.rows_rejected,
    )
    rows = dict(report_rows(rep))
    return {
        "generated": demo_intro(Path(SHOWN_STATE) / path.name, stats, SEED),
        "rows": f"{'rows':<11} {rows['rows']}",
        "published": f"({result.rows_valid:,} rows in the table)",
        "status": f"{'status':<11} {result.status}",
    }


def check(text: str) -> list[str]:
    """Every figure of the README's block that the code no longer produces."""
    block = block_of(text)
    problems = []
    for name, line in expected_lines().items():
        if line not in block:
            found = [ln for ln in block.splitlines() if ln.startswith(name) or name in ln]
            problems.append(f"{name}: README has {found[:1] or 'nothing'}, the code gives {line!r}")
    if not re.search(r"^published\s+snapshot \d+", block, re.MULTILINE):
        problems.append("published: no `published snapshot <id>` line")
    return problems


def rewrite(text: str, output: str) -> str:
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END, start)
    return text[:start] + "\n```\n" + output.rstrip("\n") + "\n```\n" + text[end:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare offline, write nothing")
    args = parser.parse_args()
    text = README.read_text(encoding="utf-8")
    if args.check:
        problems = check(text)
        for p in problems:
            print(f"README.md drifted: {p}", file=sys.stderr)
        return 1 if problems else 0
    README.write_text(rewrite(text, run_demo()), encoding="utf-8")
    print(f"rewrote the demo-run block of {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
