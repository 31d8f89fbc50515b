"""OPS item 7: every alarm in the synthesized templates has a row in README's "Operate" table
(what it means, what to do), so a new alarm cannot ship without its runbook entry."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .conftest import SUFFIX, Synth

README = Path(__file__).resolve().parents[2] / "README.md"


def runbook_alarms() -> dict[str, list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Operate\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    table = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        table[cells[0].strip("`")] = cells[1:]
    return table


def alarm_names(template: dict[str, Any], suffix: str) -> set[str]:
    names = set()
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            name = resource["Properties"]["AlarmName"]
            names.add(re.sub(f"-{re.escape(suffix)}-", "-<suffix>-", name, count=1))
    return names


def test_OPS_every_alarm_has_a_runbook_row_with_meaning_and_action(
    primary: dict[str, Any], variant_synth: Synth
) -> None:
    table = runbook_alarms()
    alarms = alarm_names(primary, SUFFIX) | alarm_names(variant_synth.templates["EtlPipeline-qa-7"], "qa-7")
    assert len(alarms) >= 7
    missing = sorted(alarms - set(table))
    assert missing == [], "alarms without a row in README's Operate table: " + ", ".join(missing)
    for name in alarms:
        meaning, action = table[name]
        assert len(meaning) > 20 and len(action) > 20, name
