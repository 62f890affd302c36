"""Words for the codes units and the controller use, so people never read a bare code:
every fault code and self-test check (titles and what to check, from `protocol.faults`
and `protocol.checks`), verdicts, callout states, priorities, and measured values with
their units ("not measured" where the unit measured nothing).

The pages (as Jinja filters), the notifications and the sentences the controller writes
into a callout's history all take their words from here.

    fault_label("image_black").title        # "Picture is black"
    check_label("clock").advice             # "Footage would carry the wrong time: ..."
    measured(None, "C")                     # "not measured"
    measured(3.0, "luma")                   # "3 of 255"
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.checks import CHECK_INFO, CheckName
from protocol.faults import FAULT_INFO, FaultCode

__all__ = [
    "CALLOUT_EVENTS",
    "CALLOUT_STATES",
    "PRIORITIES",
    "TRIGGERS",
    "VERDICTS",
    "Label",
    "check_label",
    "event_words",
    "fault_label",
    "measured",
    "priority_words",
    "status_words",
    "trigger_words",
    "verdict_words",
]


@dataclass(frozen=True, slots=True)
class Label:
    """A code in words: `title` names it, `advice` says what to check, `detail` (for a
    check) what it looks at. `known` is False for a code this controller has no words
    for (its title then quotes the code, so nothing is hidden)."""

    code: str
    title: str
    advice: str
    detail: str = ""
    priority: str | None = None
    known: bool = True


#: Callout priorities in words (`protocol.faults`: P1 urgent, P2 non-urgent, P3 routine).
PRIORITIES = {
    "P1": "P1 urgent",
    "P2": "P2 non-urgent",
    "P3": "P3 routine visit",
}
#: Callout states in words: a resolved callout stays open until the unit shows the fault
#: clear.
CALLOUT_STATES = {
    "raised": "raised",
    "acknowledged": "acknowledged",
    "attending": "attending",
    "resolved": "resolved, awaiting verification",
    "verified": "verified by the unit",
    "closed": "closed",
}
#: What started a self-test, in words.
TRIGGERS = {
    "boot": "at start-up",
    "schedule": "scheduled",
    "command": "on request",
    "manual": "by an engineer on site",
}
#: The steps in a callout's history in words.
CALLOUT_EVENTS = {
    "raised": "raised",
    "repeat": "raised again",
    "reopened": "reopened: the fault came back",
    "acknowledged": "acknowledged",
    "attending": "attending",
    "resolved": "resolved",
    "verification_requested": "self-test sent to check the repair",
    "verification_not_sent": "check of the repair not sent",
    "verified": "verified by the unit",
    "repair_failed": "repair did not hold",
    "not_verified": "not verified yet",
    "fault_cleared": "the unit reports the fault clear",
    "unit_online": "the unit is back online",
    "respond_breached": "respond deadline missed",
    "repair_breached": "repair deadline missed",
    "closed": "closed",
}
#: Self-test verdicts in words; `not_assessed` is neutral: the check measured nothing.
VERDICTS = {
    "pass": "pass",
    "warn": "warning",
    "fail": "fail",
    "not_assessed": "not assessed",
}
#: How a measured value reads with its unit (the units checks report in).
_UNITS = {
    "luma": "{} of 255",
    "lum": "{} of 255",
    "fps": "{} frames/s",
    "%": "{}%",
    "grey": "{} grey levels",
    "s": "{} s",
    "C": "{} °C",
    "": "{}",
}


def fault_label(code: str) -> Label:
    """The words for a fault code."""
    try:
        fault = FaultCode(code)
    except ValueError:
        return Label(
            code,
            f"Fault not known to this controller ({code})",
            "Ask the control room to check the unit's agent version.",
            known=False,
        )
    info = FAULT_INFO[fault]
    return Label(fault.value, info.title, info.advice, priority=info.priority.value)


def check_label(name: str, fault: str | None = None) -> Label:
    """The words for a self-test check; `fault` (the fault a result names, e.g. storage
    low rather than failed) picks the advice when given."""
    try:
        check = CheckName(name)
    except ValueError:
        advice = fault_label(fault).advice if fault else ""
        return Label(name, f"Check not known to this controller ({name})", advice, known=False)
    info = CHECK_INFO[check]
    code = fault or (info.fault.value if info.fault else None)
    advice = fault_label(code).advice if code else ""
    return Label(check.value, info.title, advice, detail=info.looks_at)


def measured(value: float | None, unit: str | None = "") -> str:
    """A measured value with its unit in words; "not measured" when there is none."""
    if value is None:
        return "not measured"
    number = float(value)
    text = f"{number:.0f}" if number.is_integer() else f"{number:.3g}"
    return _UNITS.get(unit or "", "{} " + (unit or "")).format(text).strip()


def verdict_words(verdict: str | None) -> str:
    return "no report yet" if verdict is None else VERDICTS.get(verdict, verdict)


def status_words(status: str) -> str:
    return CALLOUT_STATES.get(status, status.replace("_", " "))


def trigger_words(trigger: str) -> str:
    return TRIGGERS.get(trigger, trigger)


def event_words(kind: str) -> str:
    return CALLOUT_EVENTS.get(kind, kind.replace("_", " "))


def priority_words(priority: str) -> str:
    return PRIORITIES.get(priority, priority)
