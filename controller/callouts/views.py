"""How callouts are shown (API, CLI, webhooks) and when a self-test shows a fault fixed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from controller.store.fleet import Callout, SelfTestRecord

__all__ = ["CalloutEventView", "CalloutView", "check_passes"]


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


def check_passes(callout: Callout, report: SelfTestRecord) -> bool:
    """Does this self-test report show the callout's fault fixed?

    The checks about the fault (same check name, or carrying the fault's code) must all
    pass; a fault no check measures (mains, offline, overdue...) needs a passing report."""
    code = callout.fault_code
    relevant = [
        c
        for c in report.checks
        if c.get("name") in (callout.check_name, code) or c.get("fault") == code
    ]
    if relevant:
        return all(c.get("verdict") == "pass" for c in relevant)
    return report.verdict == "pass"
