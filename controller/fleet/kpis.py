"""Key performance figures of the fleet over a period, for the KPI page (managers and
auditors) and for partner reports.

- **availability** of a unit: the share of the period it was not down, where down means an
  urgent (P1) fault was open: from the callout's raise until the unit cleared the fault, or
  failing that until the callout was resolved (still open: until the end of the period).
  Overlapping faults count once. The fleet's figure is the mean over the units in service.
- **mean time to repair**: raise -> resolve of the callouts resolved within the period.
- **SLA compliance**: of the P1/P2 callouts raised within the period, the share that breached
  neither the respond nor the repair deadline.
- **self-test pass rate**: reports finished within the period whose verdict was `pass`.
- **callouts by priority and contractor**: raised within the period.

    report = await kpi_report(session, start, end, contractor=None)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.store.fleet import Callout, SelfTestRecord, Unit

__all__ = ["KpiReport", "UnitAvailability", "downtime", "kpi_report"]

Interval = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class UnitAvailability:
    unit_id: str
    site: str | None
    contractor: str | None
    availability: float
    down_hours: float


@dataclass(frozen=True, slots=True)
class KpiReport:
    start: datetime
    end: datetime
    units: list[UnitAvailability]
    fleet_availability: float | None
    mttr_hours: float | None
    repaired: int
    sla_total: int
    sla_met: int
    respond_breaches: int
    repair_breaches: int
    selftests: int
    selftests_passed: int
    selftests_warned: int
    selftests_failed: int
    by_priority: dict[str, int] = field(default_factory=dict)
    by_contractor: dict[str, dict[str, int]] = field(default_factory=dict)

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


def _down_interval(callout: Callout, end: datetime) -> Interval:
    finish = callout.fault_cleared_at or callout.resolved_at or callout.closed_at or end
    return callout.raised_at, max(finish, callout.raised_at)


def _in_service(unit: Unit, start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
    begin = max(unit.registered_at, start)
    finish = min(unit.retired_at, end) if unit.retired_at is not None else end
    return (begin, finish) if finish > begin else None


async def kpi_report(
    session: AsyncSession, start: datetime, end: datetime, *, contractor: str | None = None
) -> KpiReport:
    """The figures of [start, end) for the whole fleet, or one contractor's units."""
    if end <= start:
        raise ValueError("the period must end after it starts")
    units_q = select(Unit).order_by(Unit.unit_id)
    callouts_q = select(Callout).where(
        Callout.raised_at < end,
        or_(
            Callout.raised_at >= start,
            Callout.resolved_at.is_(None),
            Callout.resolved_at >= start,
        ),
    )
    tests_q = select(SelfTestRecord.unit_id, SelfTestRecord.verdict).where(
        SelfTestRecord.finished_at >= start, SelfTestRecord.finished_at < end
    )
    if contractor is not None:
        units_q = units_q.where(Unit.contractor == contractor)
        callouts_q = callouts_q.where(Callout.contractor == contractor)
    units: Sequence[Unit] = (await session.execute(units_q)).scalars().all()
    callouts: Sequence[Callout] = (await session.execute(callouts_q)).scalars().all()
    unit_ids = {u.unit_id for u in units}
    verdicts = Counter(
        verdict
        for unit_id, verdict in (await session.execute(tests_q)).all()
        if unit_id in unit_ids
    )
    return summarise(units, callouts, verdicts, start, end)


def summarise(
    units: Sequence[Unit],
    callouts: Sequence[Callout],
    verdicts: Counter[str],
    start: datetime,
    end: datetime,
) -> KpiReport:
    down: dict[str, list[Interval]] = {}
    for callout in callouts:
        if callout.priority == "P1":
            down.setdefault(callout.unit_id, []).append(_down_interval(callout, end))
    rows = []
    for unit in units:
        service = _in_service(unit, start, end)
        if service is None:
            continue
        seconds = (service[1] - service[0]).total_seconds()
        lost = downtime(down.get(unit.unit_id, []), *service)
        rows.append(
            UnitAvailability(
                unit.unit_id, unit.site, unit.contractor, 1 - lost / seconds, lost / 3600
            )
        )
    raised = [c for c in callouts if start <= c.raised_at < end]
    repaired = [c for c in callouts if c.resolved_at is not None and start <= c.resolved_at < end]
    repair_hours = [
        (c.resolved_at - c.raised_at).total_seconds() / 3600 for c in repaired if c.resolved_at
    ]
    sla = [c for c in raised if c.priority in ("P1", "P2")]
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
        fleet_availability=sum(r.availability for r in rows) / len(rows) if rows else None,
        mttr_hours=sum(repair_hours) / len(repair_hours) if repair_hours else None,
        repaired=len(repaired),
        sla_total=len(sla),
        sla_met=sum(1 for c in sla if not (c.respond_breached or c.repair_breached)),
        respond_breaches=sum(1 for c in sla if c.respond_breached),
        repair_breaches=sum(1 for c in sla if c.repair_breached),
        selftests=sum(verdicts.values()),
        selftests_passed=verdicts.get("pass", 0),
        selftests_warned=verdicts.get("warn", 0),
        selftests_failed=verdicts.get("fail", 0),
        by_priority={p: priorities.get(p, 0) for p in ("P1", "P2", "P3")},
        by_contractor=dict(sorted(by_contractor.items())),
    )
