"""Key performance figures of the fleet over a period, for the KPI page (managers and
auditors) and for partner reports. Each figure carries what it counts, so the page can say
so beside it.

- **availability**: a unit is down while an urgent (P1) fault of it is open: from the
  callout's raise until the unit shows the fault clear (`callouts.repaired_at`: its own
  clear event, or the self-test that verified the repair), never merely until someone
  resolves the callout; still not clear: until the end of the period. Overlapping faults
  count once. Each unit counts over its own time in service within the period (from its
  registration, until it was retired); the fleet's figure is the unit-hours up over the
  unit-hours in service.
- **mean time to repair**: raise -> the unit showed the fault clear, over the callouts
  verified within the period.
- **SLA compliance**: of the P1/P2 callouts raised within the period whose outcome is
  known by its end, the share that met both deadlines. Respond is met when someone first
  attended by the respond deadline; repair when the unit showed the fault clear by the
  repair deadline. Callouts still within both deadlines are counted apart (`sla_pending`).
- **self-test pass rate**: of the reports finished within the period, the share whose
  verdict is pass. A check that could not be assessed counts neither way (unless the
  unit's contract or site requires it: see `fleet.selftests`).
- **callouts by priority and contractor**: raised within the period.

    report = await kpi_report(session, start, end, contractor=None)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.callouts.views import repaired_at
from controller.store.fleet import Callout, SelfTestRecord, Unit

__all__ = [
    "CalloutTimes",
    "KpiReport",
    "UnitAvailability",
    "downtime",
    "kpi_report",
    "sla_outcome",
    "summarise",
]

Interval = tuple[datetime, datetime]


class UnitAvailability(NamedTuple):
    """One unit's figure. (A tuple: a report makes one per unit, 10,000 for a fleet.)"""

    unit_id: str
    site: str | None
    contractor: str | None
    availability: float
    down_hours: float
    #: Hours the unit was in service within the period (the denominator of its figure).
    service_hours: float


@dataclass(frozen=True, slots=True)
class CalloutTimes:
    """The columns of a callout the figures need."""

    unit_id: str
    contractor: str | None
    priority: str
    raised_at: datetime
    respond_by: datetime
    repair_by: datetime
    attending_at: datetime | None
    fault_cleared_at: datetime | None
    verified_at: datetime | None
    respond_breached: bool
    repair_breached: bool

    @property
    def cleared_at(self) -> datetime | None:
        return repaired_at(self.fault_cleared_at, self.verified_at)


SlaOutcome = Literal["met", "breached", "pending"]


@dataclass(frozen=True, slots=True)
class KpiReport:
    start: datetime
    end: datetime
    units: list[UnitAvailability]
    #: Unit-hours in service and down within the period, over every unit counted.
    service_hours: float
    down_hours: float
    mttr_hours: float | None
    #: Callouts whose repair the unit verified within the period (MTTR's denominator).
    repaired: int
    #: P1/P2 callouts raised within the period with a known outcome (met or breached).
    sla_total: int
    sla_met: int
    #: P1/P2 callouts raised within the period still within their deadlines.
    sla_pending: int
    respond_breaches: int
    repair_breaches: int
    selftests: int
    selftests_passed: int
    selftests_warned: int
    selftests_failed: int
    by_priority: dict[str, int] = field(default_factory=dict)
    by_contractor: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def fleet_availability(self) -> float | None:
        """Unit-hours up over unit-hours in service (None when no unit was in service)."""
        if self.service_hours <= 0:
            return None
        return 1 - self.down_hours / self.service_hours

    @property
    def up_hours(self) -> float:
        return self.service_hours - self.down_hours

    @property
    def sla_compliance(self) -> float | None:
        return None if self.sla_total == 0 else self.sla_met / self.sla_total

    @property
    def selftest_pass_rate(self) -> float | None:
        return None if self.selftests == 0 else self.selftests_passed / self.selftests

    @property
    def callouts(self) -> int:
        return sum(self.by_priority.values())


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for begin, finish in sorted(intervals):
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], finish))
        else:
            merged.append((begin, finish))
    return merged


def downtime(intervals: Iterable[Interval], start: datetime, end: datetime) -> float:
    """Seconds of [start, end) covered by the union of `intervals`."""
    clipped = [(max(b, start), min(f, end)) for b, f in intervals]
    return sum((f - b).total_seconds() for b, f in _merge(i for i in clipped if i[1] > i[0]))


def _down_interval(callout: CalloutTimes, end: datetime) -> Interval:
    finish = callout.cleared_at or end
    return callout.raised_at, max(finish, callout.raised_at)


def _in_service(
    registered_at: datetime, retired_at: datetime | None, start: datetime, end: datetime
) -> Interval | None:
    begin = max(registered_at, start)
    finish = min(retired_at, end) if retired_at is not None else end
    return (begin, finish) if finish > begin else None


def sla_outcome(callout: CalloutTimes, as_of: datetime) -> tuple[SlaOutcome, bool, bool]:
    """(outcome, respond breached, repair breached) of a P1/P2 callout as known at
    `as_of`."""
    attended = callout.attending_at
    respond_late = callout.respond_breached or (
        attended > callout.respond_by if attended is not None else as_of > callout.respond_by
    )
    cleared = callout.cleared_at
    repair_late = callout.repair_breached or (
        cleared > callout.repair_by if cleared is not None else as_of > callout.repair_by
    )
    if respond_late or repair_late:
        return "breached", respond_late, repair_late
    if attended is not None and cleared is not None:
        return "met", False, False
    return "pending", False, False


_CALLOUT_COLUMNS = (
    Callout.unit_id,
    Callout.contractor,
    Callout.priority,
    Callout.raised_at,
    Callout.respond_by,
    Callout.repair_by,
    Callout.attending_at,
    Callout.fault_cleared_at,
    Callout.verified_at,
    Callout.respond_breached,
    Callout.repair_breached,
)


async def kpi_report(
    session: AsyncSession, start: datetime, end: datetime, *, contractor: str | None = None
) -> KpiReport:
    """The figures of [start, end) for the whole fleet, or one contractor's units."""
    if end <= start:
        raise ValueError("the period must end after it starts")
    units_q = select(
        Unit.unit_id, Unit.site, Unit.contractor, Unit.registered_at, Unit.retired_at
    ).order_by(Unit.unit_id)
    # Every callout that may touch the period: raised before its end, and not closed
    # before its start (a closed callout was cleared before it was closed).
    callouts_q = select(*_CALLOUT_COLUMNS).where(
        Callout.raised_at < end,
        or_(Callout.closed_at.is_(None), Callout.closed_at >= start),
    )
    tests_q = (
        select(SelfTestRecord.verdict, func.count())
        .where(SelfTestRecord.finished_at >= start, SelfTestRecord.finished_at < end)
        .group_by(SelfTestRecord.verdict)
    )
    if contractor is not None:
        units_q = units_q.where(Unit.contractor == contractor)
        callouts_q = callouts_q.where(Callout.contractor == contractor)
        tests_q = tests_q.join(Unit, Unit.unit_id == SelfTestRecord.unit_id).where(
            Unit.contractor == contractor
        )
    units = (await session.execute(units_q)).all()
    callouts = [CalloutTimes(*row) for row in (await session.execute(callouts_q)).all()]
    verdicts = Counter({str(v): int(n) for v, n in (await session.execute(tests_q)).all()})
    return summarise(units, callouts, verdicts, start, end)


def summarise(
    units: Sequence[Any],
    callouts: Sequence[CalloutTimes],
    verdicts: Counter[str],
    start: datetime,
    end: datetime,
) -> KpiReport:
    """The figures from plain rows: `units` carry unit_id, site, contractor,
    registered_at and retired_at."""
    down: dict[str, list[Interval]] = {}
    for callout in callouts:
        if callout.priority == "P1":
            down.setdefault(callout.unit_id, []).append(_down_interval(callout, end))
    rows = []
    for unit in units:
        service = _in_service(unit.registered_at, unit.retired_at, start, end)
        if service is None:
            continue
        seconds = (service[1] - service[0]).total_seconds()
        # Most units had no urgent fault: nothing to merge (10,000 units a report).
        lost = downtime(down[unit.unit_id], *service) if unit.unit_id in down else 0.0
        rows.append(
            UnitAvailability(
                unit.unit_id,
                unit.site,
                unit.contractor,
                1 - lost / seconds,
                lost / 3600,
                seconds / 3600,
            )
        )
    raised = [c for c in callouts if start <= c.raised_at < end]
    repaired = [c for c in callouts if c.verified_at is not None and start <= c.verified_at < end]
    repair_hours = [
        (cleared - c.raised_at).total_seconds() / 3600
        for c in repaired
        if (cleared := c.cleared_at) is not None
    ]
    outcomes = [sla_outcome(c, end) for c in raised if c.priority in ("P1", "P2")]
    by_contractor: dict[str, dict[str, int]] = {}
    for callout in raised:
        name = callout.contractor or "no contractor"
        row = by_contractor.setdefault(name, {"P1": 0, "P2": 0, "P3": 0})
        row[callout.priority] = row.get(callout.priority, 0) + 1
    priorities = Counter(c.priority for c in raised)
    return KpiReport(
        start=start,
        end=end,
        units=rows,
        service_hours=sum(r.service_hours for r in rows),
        down_hours=sum(r.down_hours for r in rows),
        mttr_hours=sum(repair_hours) / len(repair_hours) if repair_hours else None,
        repaired=len(repair_hours),
        sla_total=sum(1 for o, _, _ in outcomes if o != "pending"),
        sla_met=sum(1 for o, _, _ in outcomes if o == "met"),
        sla_pending=sum(1 for o, _, _ in outcomes if o == "pending"),
        respond_breaches=sum(1 for _, late, _ in outcomes if late),
        repair_breaches=sum(1 for _, _, late in outcomes if late),
        selftests=sum(verdicts.values()),
        selftests_passed=verdicts.get("pass", 0),
        selftests_warned=verdicts.get("warn", 0),
        selftests_failed=verdicts.get("fail", 0),
        by_priority={p: priorities.get(p, 0) for p in ("P1", "P2", "P3")},
        by_contractor=dict(sorted(by_contractor.items())),
    )
