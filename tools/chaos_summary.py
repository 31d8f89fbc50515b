"""`make chaos`'s closing figures: reads the test run's output on stdin, echoes the schedule
lines, and totals schedules run, faults injected and violations (SPEC TBL4)."""

from __future__ import annotations

import re
import sys

LINE = re.compile(r"^chaos seed (\d+): .* fired (\d+), violations (\d+)$")


def main() -> int:
    schedules = fired = violations = 0
    tail = ""
    for raw in sys.stdin:
        line = raw.rstrip("\n")
        m = LINE.match(line)
        if m:
            print(line)
            schedules += 1
            fired += int(m.group(2))
            violations += int(m.group(3))
        elif re.search(r"\d+ (passed|failed)", line):
            tail = line
    print(f"schedules run {schedules}, faults injected {fired}, violations {violations}")
    if tail:
        print(tail)
    return 1 if violations or schedules == 0 or "failed" in tail else 0


if __name__ == "__main__":
    sys.exit(main())
