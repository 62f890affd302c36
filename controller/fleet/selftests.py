"""A unit's self-test report as the control room reads it.

Each check is `pass`, `warn`, `fail` or `not_assessed` (it could not judge: no picture to
look at, no time server, no temperature sensor). Not assessed is neutral: it counts
neither for nor against the unit, so a unit whose assessed checks all pass reads `pass`,
unless its contract or site requires that check (`ControllerSettings.required_checks`):
a required check not assessed is a warning. The report's verdict (kept with the report,
read by the fleet page and the KPIs) is the worst of these.

Units before protocol 1.2 reported a check that could not judge as `warn` with no value
and a message starting "not assessed"; those read as not assessed here too.

    reading = read_report(report.checks, required=frozenset({"clock"}))
    reading.verdict          # "pass" | "warn" | "fail"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ReportReading", "check_verdict", "read_report"]

Verdict = Literal["pass", "warn", "fail"]


def check_verdict(check: Mapping[str, Any]) -> str:
    """The check's verdict, `not_assessed` included (also as older units wrote it)."""
    verdict = str(check.get("verdict", ""))
    if (
        verdict == "warn"
        and check.get("value") is None
        and str(check.get("message", "")).lower().startswith("not assessed")
    ):
        return "not_assessed"
    return verdict


@dataclass(frozen=True, slots=True)
class ReportReading:
    verdict: Verdict
    failed: list[str]
    warned: list[str]
    not_assessed: list[str]
    #: Checks the unit's contract or site requires that were not assessed (or not in the
    #: report at all): each is a warning.
    required_missing: list[str]


def read_report(
    checks: Iterable[Mapping[str, Any]], required: frozenset[str] = frozenset()
) -> ReportReading:
    """The report's verdict over its assessed checks, with the checks behind it. A report
    where no check could judge is a warning: it does not show the unit working."""
    failed: list[str] = []
    warned: list[str] = []
    not_assessed: list[str] = []
    names: set[str] = set()
    for check in checks:
        name = str(check.get("name", ""))
        names.add(name)
        found = check_verdict(check)
        if found == "fail":
            failed.append(name)
        elif found == "warn":
            warned.append(name)
        elif found == "not_assessed":
            not_assessed.append(name)
    missing = sorted(n for n in required if n in not_assessed or n not in names)
    nothing_assessed = bool(names) and names <= set(not_assessed)
    verdict: Verdict = (
        "fail" if failed else "warn" if warned or missing or nothing_assessed else "pass"
    )
    return ReportReading(verdict, failed, warned, not_assessed, missing)
