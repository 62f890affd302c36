"""KPIs say what they count: the period (whole local days) and each figure's denominator in
words; availability over the period from each unit's own time in service. On SQLite and
PostgreSQL, the page served by the real app."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from controller.accounts import Accounts, AuthSettings
from controller.api.app import create_app
from controller.callouts import CalloutService
from controller.config import ControllerSettings
from controller.fleet.kpis import kpi_report
from controller.localtime import day_start
from controller.store import Database
from controller.store.fleet import Unit
from protocol.faults import FaultCode

FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PASSWORD = "a long test password"
LONDON = ZoneInfo("Europe/London")


async def test_availability_is_over_each_units_time_in_service(db: Database) -> None:
    today = datetime.now(UTC).astimezone(LONDON).date()
    first = today - timedelta(days=10)
    start = day_start(first, LONDON)
    end = day_start(first + timedelta(days=10), LONDON)
    span = (end - start).total_seconds() / 3600  # 240 h, or 239/241 across a clock change
    async with db.session() as session:
        whole = Unit(unit_id="cam-01", registered_at=start - timedelta(days=30))
        late = Unit(unit_id="cam-02", registered_at=end - timedelta(hours=24))
        gone = Unit(
            unit_id="cam-03",
            registered_at=start - timedelta(days=30),
            retired_at=start + timedelta(hours=48),
        )
        session.add_all([whole, late, gone])
        await session.flush()
        # cam-02 is down 12 of its 24 hours in service: an urgent fault never cleared.
        service = CalloutService(ControllerSettings(), now=lambda: end - timedelta(hours=12))
        await service.faults.fault_raised(session, late, FaultCode.CAMERA_NO_SIGNAL)
        await session.commit()
    async with db.session() as session:
        report = await kpi_report(session, start, end)
    rows = {r.unit_id: r for r in report.units}
    assert rows["cam-01"].service_hours == pytest.approx(span)
    assert rows["cam-02"].service_hours == pytest.approx(24)
    assert rows["cam-02"].availability == pytest.approx(0.5)
    assert rows["cam-03"].service_hours == pytest.approx(48)
    assert report.service_hours == pytest.approx(span + 24 + 48)
    assert report.down_hours == pytest.approx(12)
    # unit-hours up over unit-hours in service, not a mean of the three ratios
    assert report.fleet_availability == pytest.approx(1 - 12 / (span + 72))
    assert report.sla_pending == 0 and report.sla_total == 1 and report.sla_met == 0
    assert report.respond_breaches == 1  # nobody attended within 4 h of the fault


async def test_the_kpi_page_states_its_period_and_denominators(db: Database) -> None:
    accounts = Accounts(db, FAST)
    await accounts.add_user("mia", "manager", PASSWORD, contractor=None, actor="t")
    now = datetime.now(UTC)
    async with db.session() as session:
        unit = Unit(unit_id="cam-01", registered_at=now - timedelta(days=40))
        session.add(unit)
        await session.flush()
        service = CalloutService(ControllerSettings(), now=lambda: now - timedelta(hours=3))
        await service.faults.fault_raised(session, unit, FaultCode.FROZEN)
        await session.commit()
    app = create_app(ControllerSettings(database_url=db.url), db, auth=FAST)
    today = now.astimezone(LONDON).date()
    first = today - timedelta(days=6)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (
            await c.post("/api/login", json={"username": "mia", "password": PASSWORD})
        ).status_code == 200
        page = await c.get(f"/kpis?from={first.isoformat()}&to={today.isoformat()}")
        wrong = await c.get(f"/kpis?from={today.isoformat()}&to={first.isoformat()}")
        future = await c.get(f"/kpis?from={(today + timedelta(days=2)).isoformat()}")
    assert page.status_code == 200
    words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.text))
    begins = datetime.combine(first, time(), LONDON)
    assert f"Whole days in Europe/London time: from {begins:%d %b %Y} 00:00 {begins:%Z}" in words
    assert "(now)" in words
    counted = re.search(
        r"([\d,.]+) of ([\d,.]+) unit-hours in service without an urgent fault open, "
        r"over 1 unit\.",
        words,
    )
    assert counted is not None, words
    up, hours = (float(n.replace(",", "")) for n in counted.groups())
    assert hours == pytest.approx((now - day_start(first, LONDON)).total_seconds() / 3600, abs=0.1)
    assert up == pytest.approx(hours - 3, abs=0.1)  # down since the fault, 3 h ago
    assert "over the 0 callouts the unit verified in the period" in words
    assert "0 of 0 urgent and non-urgent (P1, P2) callouts raised in the period met both" in words
    assert "1 more still within their deadlines are not counted yet" in words
    assert "0 of 0 self-test reports in the period passed every check the unit could assess" in (
        words
    )
    assert wrong.status_code == 422 and "must end on or after the day it starts" in wrong.text
    assert future.status_code == 422 and "cannot start after today" in future.text
