"""The result of one self-test check, as the unit reports it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from protocol.faults import FaultCode
from protocol.messages import CheckResult

__all__ = ["CheckOutcome", "ReportVerdict", "Verdict", "worst_verdict"]

Verdict = Literal["pass", "warn", "fail", "not_assessed"]
"""A check's verdict: `not_assessed` when it could not judge (nothing was measured)."""
ReportVerdict = Literal["pass", "warn", "fail"]

_RANK: dict[ReportVerdict, int] = {"pass": 0, "warn": 1, "fail": 2}


def worst_verdict(verdicts: Iterable[Verdict]) -> ReportVerdict:
    """The most severe verdict of the checks that were assessed ("pass" for none given);
    a check not assessed counts for nothing, and when no check could be assessed the
    result is "warn": the self-test did not show the unit working."""
    worst: ReportVerdict = "pass"
    seen = assessed = 0
    for verdict in verdicts:
        seen += 1
        if verdict == "not_assessed":
            continue
        assessed += 1
        if _RANK[verdict] > _RANK[worst]:
            worst = verdict
    return "warn" if seen and not assessed else worst


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """One check's measured value against its threshold, with a sentence for people.

    `fault` is the fault this check raises when it fails; it is set on every outcome of the
    check (pass included) so the fault tracker, and the controller verifying a repair, know
    which fault a pass clears.
    """

    name: str
    verdict: Verdict
    value: float | None
    threshold: float | None
    unit: str
    message: str
    fault: FaultCode | None = None

    @property
    def failed(self) -> bool:
        return self.verdict == "fail"

    def to_message(self) -> CheckResult:
        """The protocol model sent to the controller in a self-test report."""
        return CheckResult(
            name=self.name,
            verdict=self.verdict,
            value=self.value,
            threshold=self.threshold,
            unit=self.unit,
            message=self.message[:2000],
            fault=self.fault,
        )
