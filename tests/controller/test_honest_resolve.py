"""Honest resolve: resolving a callout does not end it. The callout stays "resolved,
awaiting verification" until the unit shows the fault clear; a self-test after the repair
that still fails sends it back to attending; downtime, time to repair and the repair
deadline run until the unit shows the fault clear, not until someone clicks resolve.

The rules on SQLite and PostgreSQL with a controlled clock; then the real agent with a
black picture, through the real broker, with the contractor in Chromium."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from controller.accounts import AuthSettings
from controller.api.app import create_app
from controller.callouts import CalloutService
from controller.callouts.verification import resolve
from controller.config import ControllerSettings
from controller.fleet.kpis import kpi_report
from controller.store import Database
from controller.store.fleet import Callout, SelfTestRecord, Unit
from protocol.faults import FaultCode
from tests.controller.conftest import eventually, running_controller
from tests.controller.pages_harness import shot
from tests.edge_agent.test_agent_service import watch
from tests.harness import free_port
from tests.harness.agent import AgentProcess

CONTRACTOR = "Test Maintenance Ltd"
PASSWORD = "a long test password"
FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)


class Clock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> datetime:
        self.at += timedelta(**delta)
        return self.at


def _report(unit_id: str, at: datetime, verdict: str, value: float) -> SelfTestRecord:
    check = {
        "name": "image_black",
        "verdict": verdict,
        "value": value,
        "threshold": 12.0,
        "unit": "luma",
        "message": f"mean luminance {value:.0f}/255",
        "fault": "image_black",
    }
    clock = {
        "name": "clock",
        "verdict": "not_assessed",
        "value": None,
        "threshold": 2.0,
        "unit": "s",
        "message": "not assessed: no NTP server configured",
        "fault": "clock_drift",
    }
    return SelfTestRecord(
        unit_id=unit_id,
        report_id=uuid.uuid4().hex[:12],
        trigger="command",
        command_id=None,
        started_at=at - timedelta(seconds=5),
        finished_at=at,
        verdict="fail" if verdict == "fail" else "pass",
        checks=[check, clock],
        received_at=at,
    )


async def _selftest(db: Database, service: CalloutService, report: SelfTestRecord) -> None:
    async with db.session() as session:
        session.add(report)
        await session.flush()
        await service.faults.on_selftest(session, report)
        await session.commit()


async def _status(db: Database, callout_id: int) -> Callout:
    async with db.session() as session:
        row = await session.get(Callout, callout_id)
        assert row is not None
        return row


async def test_downtime_and_repair_run_until_the_unit_shows_the_fault_clear(
    db: Database,
) -> None:
    clock = Clock()
    service = CalloutService(ControllerSettings(), now=clock)
    start = clock.at - timedelta(hours=1)
    async with db.session() as session:
        unit = Unit(unit_id="cam-05", contractor=CONTRACTOR, registered_at=start)
        session.add(unit)
        await session.flush()
        callout = await service.faults.fault_raised(
            session, unit, FaultCode.IMAGE_BLACK, check="image_black", at=clock.at
        )
        await session.commit()
    assert callout is not None
    raised = clock.at

    async def step(to: str, note: str = "") -> None:
        async with db.session() as session:
            await service.lifecycle.transition(session, callout.id, to, actor="fixer1", note=note)
            await session.commit()

    clock.advance(minutes=10)
    await step("acknowledged")
    clock.advance(minutes=10)
    await step("attending")
    clock.advance(minutes=10)
    await step("resolved", "cleaned the lens")  # at +30 min, the picture still black
    assert (await _status(db, callout.id)).status == "resolved"

    # A report from before the resolve says nothing about the repair.
    await _selftest(db, service, _report("cam-05", clock.at - timedelta(minutes=1), "fail", 2))
    assert (await _status(db, callout.id)).status == "resolved"
    # The unit's self-test after the repair: still black. Back to attending.
    await _selftest(db, service, _report("cam-05", clock.advance(minutes=1), "fail", 2))
    row = await _status(db, callout.id)
    assert row.status == "attending" and row.verified_at is None
    assert row.attending_at == raised + timedelta(minutes=20)  # first attended, kept

    at_one_hour = clock.advance(minutes=29)  # +60 min
    async with db.session() as session:
        report = await kpi_report(session, start, at_one_hour)
    (unit_row,) = report.units
    assert unit_row.down_hours == pytest.approx(1.0)  # still down: not the 30 min to resolve
    assert report.mttr_hours is None and report.repaired == 0
    assert report.sla_total == 0 and report.sla_pending == 1  # within the 8 h repair
    assert report.fleet_availability == pytest.approx(1 - 1.0 / 2.0)
    assert report.service_hours == pytest.approx(2.0)

    clock.advance(minutes=10)
    await step("resolved", "replaced the IR lamp")  # +70 min
    await _selftest(db, service, _report("cam-05", clock.advance(minutes=1), "pass", 96))
    row = await _status(db, callout.id)
    assert row.status == "verified" and row.verified_at == raised + timedelta(minutes=71)

    end = clock.advance(minutes=49)  # +2 h
    async with db.session() as session:
        report = await kpi_report(session, start, end)
    (unit_row,) = report.units
    assert unit_row.down_hours == pytest.approx(71 / 60)
    assert report.mttr_hours == pytest.approx(71 / 60) and report.repaired == 1
    assert report.sla_total == 1 and report.sla_met == 1
    assert (report.selftests, report.selftests_passed) == (3, 1)

    async with db.session() as session:
        view = await service.get(session, callout.id)
    kinds = [e.kind for e in view.events]
    assert kinds == [
        "raised",
        "acknowledged",
        "attending",
        "resolved",
        "repair_failed",
        "resolved",
        "verified",
    ]
    assert "Picture brightness still fails" in view.events[4].note
    assert "Picture brightness passes" in view.events[6].note


async def test_the_repair_deadline_is_missed_while_a_resolved_fault_is_unverified(
    db: Database,
) -> None:
    clock = Clock()
    service = CalloutService(ControllerSettings(), now=clock)
    async with db.session() as session:
        unit = Unit(unit_id="cam-06", contractor=CONTRACTOR, registered_at=clock.at)
        session.add(unit)
        await session.flush()
        callout = await service.faults.fault_raised(
            session, unit, FaultCode.VIEW_OBSTRUCTED, check="view_obstructed"
        )
        await session.commit()
    assert callout is not None
    async with db.session() as session:
        for to in ("acknowledged", "attending", "resolved"):
            clock.advance(minutes=5)
            await service.lifecycle.transition(session, callout.id, to, actor="fixer1", note="x")
        await session.commit()
    clock.advance(hours=8)  # past the 8 h repair deadline, never verified
    async with db.session() as session:
        breached = await service.sweep_breaches(session)
        await session.commit()
    assert [c.id for c in breached] == [callout.id]
    row = await _status(db, callout.id)
    assert row.repair_breached and not row.respond_breached
    async with db.session() as session:
        events = (await service.get(session, callout.id)).events
    assert "the unit did not show the fault clear by" in events[-1].note
    assert events[-1].note.endswith(("GMT", "BST"))

    # The unit's own clear event after a resolve verifies the callout.
    clock.advance(minutes=1)
    async with db.session() as session:
        await service.faults.fault_cleared(session, "cam-06", FaultCode.VIEW_OBSTRUCTED)
        await session.commit()
    row = await _status(db, callout.id)
    assert row.status == "verified" and row.fault_cleared_at == clock.at


# -- the real unit, the real broker, the contractor in Chromium --------------------------------


async def _serve(app: Any) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve(), name="test-http")
    async with asyncio.timeout(10):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
    return server, task, f"http://127.0.0.1:{port}"


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_resolving_while_the_picture_is_black_says_it_still_fails(
    db: Database,
    browser: Any,
    fresh_fleet: Any,
    make_broker: Any,
    controller_settings: Callable[..., ControllerSettings],
    tmp_path: Path,
) -> None:
    fleet = fresh_fleet(units=("cam-01",))
    broker = make_broker(fleet)
    cover = tmp_path / "lens-cover"
    cover.write_text("")
    camera = f"synthetic:?width=640&height=360&fps=10&fault_file={cover}"
    agent = AgentProcess(fleet, "cam-01", broker, tmp_path, camera=camera,
                         selftest={"at_boot": True})  # fmt: skip
    settings = controller_settings(broker)
    try:
        async with running_controller(settings, db) as service, watch(broker) as w:
            async with db.session() as session:
                unit = await session.get(Unit, "cam-01")
                assert unit is not None
                unit.contractor = CONTRACTOR
                await session.commit()
            app = create_app(settings, db, service.link, auth=FAST)
            await app.state.accounts.add_user(
                "fixer1", "contractor", PASSWORD, contractor=CONTRACTOR, actor="test"
            )
            server, task, base = await _serve(app)
            try:
                agent.start()
                await eventually(
                    lambda: [m for m in w.of(object) if m.kind == "selftest"], within=40
                )
                cover.write_text("black")  # the lens covered: a black picture
                await asyncio.sleep(13)  # the picture checks look at the last 12 s
                async with db.session() as session:
                    await resolve_selftest(service, session)

                async def black_callout() -> list[Any]:
                    async with db.session() as session:
                        rows = await service.callouts.list(session, open_only=True)
                    return [c for c in rows if c.fault_code == "image_black"]

                (row,) = await eventually(black_callout, within=30)
                raised_at = row.raised_at

                context = await browser.new_context(viewport={"width": 1366, "height": 900})
                page = await context.new_page()
                page.set_default_timeout(15_000)
                await page.goto(f"{base}/login?next=/callouts/{row.id}")
                await page.get_by_label("Username").fill("fixer1")
                await page.get_by_label("Password").fill(PASSWORD)
                await page.get_by_role("button", name="Sign in").click()
                await page.wait_for_url(f"**/callouts/{row.id}")
                await page.get_by_role("button", name="Acknowledge").click()
                await page.get_by_role("button", name="Attending").click()
                await page.get_by_label("What was done").fill("Wiped the dome")
                await page.get_by_role("button", name="Resolve").click()

                # At once: resolved, awaiting verification, and the check pending.
                status = page.get_by_test_id("callout-status")
                await page.get_by_test_id("verification").wait_for()
                first = await page.get_by_test_id("verification").inner_text()
                assert await status.inner_text() == "resolved, awaiting verification" or (
                    "did not hold" in first
                ), first
                assert "Checking the repair" in first or "did not hold" in first, first
                await shot(page, "callout-resolve-pending")
                # Then, without a reload: the unit's self-test says it still fails.
                failed = page.locator("[data-testid='verification'][data-state='failed']")
                await failed.wait_for(timeout=40_000)
                words = await failed.inner_text()
                assert "The repair did not hold" in words
                assert "Picture brightness still fails" in words, words
                assert await status.inner_text() == "attending"
                await shot(page, "callout-resolve-still-fails")

                # The KPIs keep counting the downtime.
                async with db.session() as session:
                    now = datetime.now(UTC)
                    kpi = await kpi_report(session, raised_at - timedelta(minutes=1), now)
                    stored = await session.get(Callout, row.id)
                assert stored is not None and stored.verified_at is None
                down = next(u for u in kpi.units if u.unit_id == "cam-01").down_hours
                assert down * 3600 == pytest.approx((now - raised_at).total_seconds(), abs=2)
                assert kpi.repaired == 0 and kpi.mttr_hours is None

                # The real repair: the cover comes off; resolve again and the unit agrees.
                cover.write_text("")
                await asyncio.sleep(13)
                await page.get_by_label("What was done").fill("Removed the cover from the lens")
                await page.get_by_role("button", name="Resolve").click()
                verified = page.locator("[data-testid='verification'][data-state='verified']")
                await verified.wait_for(timeout=40_000)
                assert "Picture brightness passes" in await verified.inner_text()
                assert await status.inner_text() == "verified by the unit"
                await shot(page, "callout-resolve-verified")
                async with db.session() as session:
                    stored = await session.get(Callout, row.id)
                    assert stored is not None and stored.verified_at is not None
                    kpi = await kpi_report(
                        session, raised_at - timedelta(minutes=1), datetime.now(UTC)
                    )
                down = next(u for u in kpi.units if u.unit_id == "cam-01").down_hours
                repaired = (stored.verified_at - raised_at).total_seconds()
                assert down * 3600 == pytest.approx(repaired, abs=1)
                assert kpi.repaired == 1 and kpi.mttr_hours == pytest.approx(repaired / 3600)
                await context.close()
            finally:
                server.should_exit = True
                async with asyncio.timeout(10):
                    await task
            assert await asyncio.to_thread(agent.terminate) == 0
    finally:
        agent.kill()


async def resolve_selftest(service: Any, session: Any) -> None:
    """Ask the unit for a self-test (as the control room's button does)."""
    from controller.fleet.commands import selftest_now

    await selftest_now(service.link, session, "cam-01", actor="operator1")
    await session.commit()


async def test_resolve_without_a_broker_link_says_the_check_was_not_sent(db: Database) -> None:
    service = CalloutService(ControllerSettings())
    async with db.session() as session:
        unit = Unit(unit_id="cam-07", contractor=CONTRACTOR, registered_at=datetime.now(UTC))
        session.add(unit)
        await session.flush()
        callout = await service.faults.fault_raised(session, unit, FaultCode.FROZEN)
        for to in ("acknowledged", "attending"):
            assert callout is not None
            await service.lifecycle.transition(session, callout.id, to, actor="fixer1")
        await session.commit()
    assert callout is not None
    done = await resolve(service, db, None, callout.id, actor="fixer1", note="restarted encoder")
    assert done.command_id is None and done.not_sent is not None
    async with db.session() as session:
        view = await service.get(session, callout.id)
    assert view.status == "resolved"
    assert view.events[-1].kind == "verification_not_sent"
    assert "the unit's next self-test verifies it" in view.events[-1].note
