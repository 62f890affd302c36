"""Periodic jobs: the offline sweep, overdue function checks, SLA breach flags, and the
fleet gauges. `FleetJobs.run()` repeats `sweep_once()` every `sweep_interval_s`.

- A unit heard from last more than `offline_timeout_s` ago goes offline ("missed
  heartbeats"). A unit that is offline (by its will, a clean offline message or that
  silence) and has not been heard for `offline_timeout_s` gets a `unit_offline` callout:
  a short 4G dropout or a reboot does not call a contractor out.
- An online unit whose last passing function check is older than `selftest_overdue_h`
  (default 13 h: checks run twice a day) gets a `selftest_overdue` callout.
With PostgreSQL and several controllers, one sweep runs at a time fleet-wide (advisory
lock); the others skip that round.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from controller.callouts import CalloutBatch, CalloutService, Notifier
from controller.config import ControllerSettings
from controller.fleet.rollup import rollup_counts
from controller.fleet.state import set_online
from controller.localtime import when as local_when
from controller.metrics import ControllerMetrics
from controller.store.base import Database, utcnow
from controller.store.fleet import Unit, UnitFault, UnitStatus
from protocol.faults import FaultCode

__all__ = ["FleetJobs", "SweepResult"]

log = logging.getLogger(__name__)

_SWEEP_LOCK = 0x43435456_5357
GAUGE_PERIOD_S = 30.0


@dataclass(frozen=True, slots=True)
class SweepResult:
    went_offline: list[str]
    offline_callouts: list[str]
    overdue_callouts: list[str]
    breaches: list[int]


class FleetJobs:
    def __init__(
        self,
        db: Database,
        settings: ControllerSettings,
        callouts: CalloutService,
        *,
        metrics: ControllerMetrics,
        notifier: Notifier | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.settings = settings
        self.callouts = callouts
        self.metrics = metrics
        self.notifier = notifier
        self.now = now
        self._gauges_at = 0.0

    async def run(self) -> None:
        while True:
            try:
                await self.sweep_once()
                if time.monotonic() - self._gauges_at >= GAUGE_PERIOD_S:
                    await self.update_gauges()
            except Exception:  # the next round tries again; never stop the service
                log.exception("periodic sweep failed")
            await asyncio.sleep(self.settings.sweep_interval_s)

    async def update_gauges(self) -> None:
        async with self.db.session() as session:
            self.metrics.set_units(await rollup_counts(session))
            self.metrics.set_open_callouts(await self.callouts.open_counts(session))
        self._gauges_at = time.monotonic()

    async def _active(self, session: AsyncSession, code: FaultCode) -> set[str]:
        rows = await session.execute(
            select(UnitFault.unit_id).where(UnitFault.code == code.value, UnitFault.active)
        )
        return set(rows.scalars())

    async def sweep_once(self) -> SweepResult:
        now = self.now()
        cutoff = now - timedelta(seconds=self.settings.offline_timeout_s)
        went_offline, offline_callouts, overdue = [], [], []
        batch = CalloutBatch()
        async with self.db.session() as session:
            if not self.db.is_sqlite:
                got = await session.scalar(
                    text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _SWEEP_LOCK}
                )
                if not got:
                    return SweepResult([], [], [], [])
            in_service = (
                select(Unit, UnitStatus)
                .join(UnitStatus, UnitStatus.unit_id == Unit.unit_id)
                .where(Unit.retired_at.is_(None))
            )
            silent = await session.execute(
                in_service.where(UnitStatus.online.is_(True), UnitStatus.last_seen_at < cutoff)
            )
            for _unit, status in silent.all():
                quiet = int(self.settings.offline_timeout_s)
                await set_online(
                    session,
                    self.callouts,
                    status,
                    False,
                    f"no message for {quiet} s",
                    now,
                    batch=batch,
                )
                went_offline.append(status.unit_id)
                log.warning("unit=%s offline: missed heartbeats", status.unit_id)
            already = await self._active(session, FaultCode.UNIT_OFFLINE)
            offline = await session.execute(
                in_service.where(UnitStatus.online.is_(False), UnitStatus.last_seen_at <= cutoff)
            )
            for unit, status in offline.all():
                if unit.unit_id in already:
                    continue
                since = status.online_changed_at or now
                await self.callouts.faults.fault_raised(
                    session,
                    unit,
                    FaultCode.UNIT_OFFLINE,
                    at=now,
                    origin="controller",
                    detail=f"offline since {local_when(since, self.settings.zone)} "
                    f"({status.online_reason or 'no reason given'})",
                    batch=batch,
                )
                offline_callouts.append(unit.unit_id)
            already = await self._active(session, FaultCode.SELFTEST_OVERDUE)
            overdue_before = now - timedelta(hours=self.settings.selftest_overdue_h)
            reference = func.coalesce(UnitStatus.last_pass_at, Unit.registered_at)
            late = await session.execute(
                in_service.where(UnitStatus.online.is_(True), reference < overdue_before)
            )
            for unit, status in late.all():
                last = status.last_pass_at or unit.registered_at
                if unit.unit_id in already:
                    continue
                await self.callouts.faults.fault_raised(
                    session,
                    unit,
                    FaultCode.SELFTEST_OVERDUE,
                    at=now,
                    origin="controller",
                    detail="no passing function check since "
                    f"{local_when(last, self.settings.zone)}",
                    batch=batch,
                )
                overdue.append(unit.unit_id)
            breaches = [c.id for c in await self.callouts.sweep_breaches(session, batch=batch)]
            await session.commit()
        if batch.queued and self.notifier is not None:
            self.notifier.wake()
        return SweepResult(went_offline, offline_callouts, overdue, breaches)
