"""The real edge agent and the real controller through the real broker: a camera that goes
black becomes a P1 callout; after the repair, the unit's own self-test verifies it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controller.config import ControllerSettings
from controller.fleet.commands import selftest_now
from controller.store import Database
from controller.store.fleet import Callout
from protocol.messages import Heartbeat
from tests.controller.conftest import eventually, running_controller
from tests.edge_agent.test_agent_service import watch
from tests.harness.agent import AgentProcess

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_real_agent_black_camera_to_verified_callout(
    db: Database,
    fresh_fleet: Any,
    make_broker: Any,
    controller_settings: Callable[..., ControllerSettings],
    tmp_path: Path,
) -> None:
    fleet = fresh_fleet(units=("cam-01",))
    broker = make_broker(fleet)
    fault_file = tmp_path / "camera-fault"
    fault_file.write_text("")
    camera = f"synthetic:?width=640&height=360&fps=10&fault_file={fault_file}"
    agent = AgentProcess(fleet, "cam-01", broker, tmp_path, camera=camera,
                         selftest={"at_boot": True})  # fmt: skip
    settings = controller_settings(broker)
    try:
        async with running_controller(settings, db) as service, watch(broker) as w:
            agent.start()

            async def reports() -> list[Any]:
                return [m for m in w.of(object) if getattr(m, "kind", "") == "selftest"]

            first = await eventually(reports, within=40)
            assert first[0].verdict in ("pass", "warn"), first[0].checks
            fault_file.write_text("black")
            await asyncio.sleep(13)  # the picture checks look at the last 12 s of samples

            async def command() -> None:
                async with db.session() as session:
                    await selftest_now(service.link, session, "cam-01", actor="operator:test")
                    await session.commit()

            await command()
            raised = await eventually(
                lambda: [e for e in w.events("fault_raised") if e.event.code == "image_black"],  # type: ignore[union-attr]
                within=20,
            )
            seen_at = time.monotonic()

            async def callout() -> Any:
                async with db.session() as session:
                    rows = await service.callouts.list(session, open_only=True)
                return [c for c in rows if c.fault_code == "image_black"]

            (row,) = await eventually(callout, within=5)
            print(f"fault event -> callout: {time.monotonic() - seen_at:.2f} s")
            assert row.priority == "P1" and raised
            cs = service.callouts
            async with db.session() as session:
                for step in ("acknowledged", "attending", "resolved"):
                    await cs.lifecycle.transition(session, row.id, step, actor="contractor:bob",
                                                  note=f"lens cleaned: {step}")  # fmt: skip
                await session.commit()
            fault_file.write_text("")  # repaired
            await asyncio.sleep(13)
            for _ in range(2):  # the unit clears a fault after two passes (no flapping)
                await command()
                await asyncio.sleep(4)
            await eventually(
                lambda: [e for e in w.events("fault_cleared") if e.event.code == "image_black"],  # type: ignore[union-attr]
                within=15,
            )

            async def verified() -> bool:
                async with db.session() as session:
                    current = await session.get(Callout, row.id)
                    return current is not None and current.status == "verified"

            await eventually(verified, within=10)
            async with db.session() as session:
                await cs.lifecycle.transition(session, row.id, "closed", actor="manager:ann")
                await session.commit()
            assert await asyncio.to_thread(agent.terminate) == 0
    finally:
        agent.kill()


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_real_ups_mains_failure_to_callout_with_ups_facts(
    db: Database,
    fresh_fleet: Any,
    make_broker: Any,
    controller_settings: Callable[..., ControllerSettings],
    tmp_path: Path,
) -> None:
    from tests.harness.nut import NutServer, nut_binaries

    nut_binaries()
    fleet = fresh_fleet(units=("cam-01",))
    broker = make_broker(fleet)
    settings = controller_settings(broker)
    with NutServer(tmp_path / "ups") as nut:
        power = nut.agent_power()
        agent = AgentProcess(fleet, "cam-01", broker, tmp_path, power=power,
                             camera="synthetic:?width=320&height=180&fps=5")  # fmt: skip
        try:
            async with running_controller(settings, db) as service:
                agent.start()

                async def online() -> bool:
                    async with db.session() as session:
                        rows = await service.callouts.list(session, unit_id="cam-01")
                    return rows is not None and agent.log().count("link up") > 0

                await eventually(online, within=30)
                await asyncio.to_thread(nut.set_state, ups_status="OB DISCHRG",
                                        battery_charge=71, battery_runtime=1800,
                                        input_voltage=0)  # fmt: skip
                started = time.monotonic()

                async def mains_callout() -> Any:
                    async with db.session() as session:
                        rows = await service.callouts.list(session, open_only=True)
                    return [c for c in rows if c.fault_code == "mains_failure"]

                (row,) = await eventually(mains_callout, within=15)
                print(f"upsd on battery -> callout: {time.monotonic() - started:.2f} s")
                async with db.session() as session:
                    stored = await session.get(Callout, row.id)
                assert stored is not None and stored.priority == "P2"
                ups = stored.facts["ups"]
                assert ups["on_battery"] is True and ups["ups_status"].startswith("OB")
                assert ups["charge_pct"] == 71.0 and ups["runtime_s"] == 1800
                assert await asyncio.to_thread(agent.terminate) == 0
        finally:
            agent.kill()


@pytest.mark.dates
@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_manager_approval_starts_the_real_unit_and_revocation_stops_it(
    db: Database,
    fresh_fleet: Any,
    make_broker: Any,
    controller_settings: Callable[..., ControllerSettings],
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime, timedelta

    from controller.deployments import DeploymentRequest, DeploymentWorkflow, LocationIn
    from controller.deployments import locations as loc
    from tests.controller.test_deployments import MAX, MIA, OLLY, pia

    fleet = fresh_fleet(units=("cam-01",))
    broker = make_broker(fleet)
    agent = AgentProcess(fleet, "cam-01", broker, tmp_path)
    settings = controller_settings(broker)
    try:
        async with running_controller(settings, db) as service, watch(broker) as w:
            agent.start()
            await eventually(lambda: w.of(Heartbeat), within=30)
            assert not w.of(Heartbeat)[-1].recording
            flow = DeploymentWorkflow(db, signer=service.link.signer, link=service.link)
            site = await loc.add_location(flow, OLLY, LocationIn(
                name="Mill Lane underpass", address="Mill Lane", lat=51.5, lon=-0.12,
                geofence_radius_m=150, notes=""))  # fmt: skip
            now = datetime.now(UTC)
            start, end = now - timedelta(minutes=1), now + timedelta(days=30)
            request = DeploymentRequest.model_validate({
                "unit_id": "cam-01", "location_id": site.id,
                "planned_start": start.isoformat(), "planned_end": end.isoformat(),
                "pia": pia(start=start.date(), end=end.date()),
            })  # fmt: skip
            dep = await flow.create(OLLY, request)
            await flow.submit(OLLY, dep.id)
            sent = time.monotonic()
            await flow.approve(MIA, dep.id)
            await eventually(lambda: w.events("recording_started"), within=5)
            print(f"manager approval -> unit recording: {time.monotonic() - sent:.2f} s")
            sent = time.monotonic()
            await flow.revoke(MAX, dep.id, "Signage found missing on inspection.")
            await eventually(lambda: w.events("recording_stopped"), within=5)
            print(f"manager revocation -> unit stopped: {time.monotonic() - sent:.2f} s")
            assert await asyncio.to_thread(agent.terminate) == 0
    finally:
        agent.kill()
