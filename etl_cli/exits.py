"""The ``etl`` exit codes: one table, the one docs/cli.md shows (a test compares them, SPEC UX8)."""

from __future__ import annotations

OK = 0
FAILED = 1
USAGE = 2
INFRASTRUCTURE = 3
INTERRUPTED = 130

# (code, outcome, when): docs/cli.md "Exit codes" lists exactly these rows.
EXIT_CODES: tuple[tuple[int, str, str], ...] = (
    (OK, "SUCCEEDED", "the file was loaded; any other command that did its job"),
    (OK, "DUPLICATE_CONTENT", "the same bytes were already loaded by another file (`duplicate_of`)"),
    (FAILED, "FAILED", "the file failed (the reason is printed); `etl validate`: the file would fail"),
    (
        USAGE,
        "usage error",
        "bad option or argument, missing file, unknown id, SQL error, no AWS configuration, "
        "no emulator running",
    ),
    (INFRASTRUCTURE, "infrastructure error", "an AWS or emulator call failed (denied, throttled, down)"),
    (INTERRUPTED, "interrupted", "Ctrl-C"),
)
