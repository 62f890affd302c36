"""How callouts are shown (API, CLI, webhooks), when a self-test shows a fault fixed
(`repair_finding`) and when the unit showed it clear (`repaired_at`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from controller.fleet.selftests import check_verdict
from controller.labels import check_label, fault_label, verdict_words
from controller.store.fleet import Callout, SelfTestRecord
from protocol.faults import FAULT_INFO

__all__ = [
    "CONTROLLER_FAULTS",
    "CalloutEventView",
    "CalloutView",
    "RepairFinding",
    "repair_finding",
    "repaired_at",
]

#: Faults only the controller raises (and clears): the unit knows nothing of them.
CONTROLLER_FAULTS = frozenset(
    code.value for code, info in FAULT_INFO.items() if info.raised_by != "unit"
)


class CalloutEventView(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, from_attributes=True)

    at: datetime
    kind: str
    actor: str
    note: str
    details: dict[str, Any]


class CalloutView(BaseModel):
    """A callout as the API, the CLI and the webhooks show it."""

    model_config = ConfigDict(extra="forbid", frozen=True, from_attributes=True)

    id: int
    unit_id: str
    fault_code: str
    priority: str
    status: str
    contractor: str | None
    title: str
    check_name: str | None
    detail: str
    facts: dict[str, Any]
    raised_at: datetime
    respond_by: datetime
    repair_by: datetime
    acknowledged_at: datetime | None
    attending_at: datetime | None
    resolved_at: datetime | None
    verified_at: datetime | None
    closed_at: datetime | None
    fault_cleared_at: datetime | None
    respond_breached: bool
    repair_breached: bool
    raise_count: int
    events: list[CalloutEventView] = []


@dataclass(frozen=True, slots=True)
class RepairFinding:
    """What one self-test report shows about a callout's fault: `pass` (the fault is
    clear), `fail` (it still fails) or `open` (the report cannot tell: its checks of the
    fault warn or could not be assessed), with the sentence that says why."""

    outcome: Literal["pass", "fail", "open"]
    sentence: str


_FINDING_WORDS = {
    "fail": "still fails",
    "pass": "passes",
    "warn": "gives a warning, not a pass",
    "not_assessed": "could not be assessed",
}


def _check_words(check: dict[str, Any]) -> str:
    """`Picture brightness still fails: mean luminance 3/255 (picture is black)`."""
    label = check_label(str(check.get("name", "")), check.get("fault"))
    verdict = check_verdict(check)
    message = str(check.get("message") or "").strip()
    words = f"{label.title} {_FINDING_WORDS.get(verdict, verdict)}"
    return f"{words}: {message}" if message else words


def repair_finding(
    callout: Callout, report: SelfTestRecord, *, fault_active: bool | None = None
) -> RepairFinding:
    """Does this self-test report show the callout's fault fixed?

    The checks about the fault (same check name, or carrying the fault's code) decide: any
    failing -> still fails; all passing -> clear; else (a warning, or not assessed) the
    report cannot tell. A fault no check measures (mains, offline, overdue...) is clear once
    it is no longer reported (`fault_active` False) and still fails while the unit reports
    it; one only the controller raises and it still holds (index check) needs a passing
    report."""
    code = callout.fault_code
    relevant = [
        c
        for c in report.checks
        if c.get("name") in (callout.check_name, code) or c.get("fault") == code
    ]
    if relevant:
        verdicts = [check_verdict(c) for c in relevant]
        words = "; ".join(_check_words(c) for c in relevant)
        if "fail" in verdicts:
            return RepairFinding("fail", words)
        if all(v == "pass" for v in verdicts):
            return RepairFinding("pass", words)
        return RepairFinding("open", words)
    title = fault_label(code).title
    if fault_active is False:
        return RepairFinding("pass", f"{title}: no longer reported")
    if fault_active and code not in CONTROLLER_FAULTS:
        return RepairFinding("fail", f"{title}: the unit still reports it")
    if report.verdict == "pass":
        return RepairFinding("pass", "every check the unit could assess passes")
    verdict = verdict_words(report.verdict)
    return RepairFinding("open", f"no check measures {title.lower()}; the report gives {verdict}")


def repaired_at(fault_cleared_at: datetime | None, verified_at: datetime | None) -> datetime | None:
    """When the unit showed the fault clear: its own clear event or the self-test that
    verified the repair, whichever came first (None while it has shown neither). Downtime,
    time to repair and the repair deadline all run until then, not until someone resolves."""
    times = [t for t in (fault_cleared_at, verified_at) if t is not None]
    return min(times) if times else None
