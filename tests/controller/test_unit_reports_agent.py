"""Real agents, the real broker and the real controller: every heartbeat field arrives
(uptime, dropped messages, the clock offset the boot self-test measured against a local
NTP server, the temperature of a configured sensor) or is not sent (no sensor: no
temperature); the recording index the agent reports is kept with verified signatures;
a remote self-test's acknowledgements reach its command record. The API and the unit page
show them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from controller.accounts import Accounts
from controller.api.app import create_app
from controller.api.auth import Role
from controller.config import ControllerSettings
from controller.fleet.command_log import recent_commands
from controller.fleet.commands import selftest_now
from controller.store import Database
from controller.store.fleet import UnitStatus
from controller.store.reports import ChainEntryRecord, CheckpointRecord
from protocol.messages import Heartbeat, RecordingIndex, utcnow
from tests.controller.conftest import eventually, running_controller
from tests.controller.test_unit_reports import FAST, PASSWORD, signed_in
from tests.edge_agent.test_agent_service import publish_authz, watch
from tests.edge_agent.test_selftest_system import ntp_server
from tests.harness.agent import AgentProcess, authorization

pytestmark = pytest.mark.slow

CAMERA = "synthetic:?width=320&height=180&fps=5"


async def status_of(db: Database, unit_id: str) -> UnitStatus | None:
    async with db.session() as session:
        return await session.get(UnitStatus, unit_id, populate_existing=True)


@pytest.mark.parametrize("db", ["sqlite", "postgresql"], indirect=True)
async def test_real_agents_report_health_index_and_command_answers(
    db: Database,
    fresh_fleet: Any,
    make_broker: Any,
    controller_settings: Callable[..., ControllerSettings],
    tmp_path: Path,
) -> None:
    fleet = fresh_fleet(units=("cam-01", "cam-02"))
    broker = make_broker(fleet)
    sensor = tmp_path / "thermal"
    (sensor / "thermal_zone0").mkdir(parents=True)
    (sensor / "thermal_zone0" / "temp").write_text("41500\n")
    no_sensor = tmp_path / "no-thermal"
    no_sensor.mkdir()
    agents: list[AgentProcess] = []
    try:
        async with (
            ntp_server(0.75) as (ntp_port, ntp),
            running_controller(controller_settings(broker), db) as service,
            watch(broker) as w,
        ):
            measured = {"at_boot": True, "thermal_root": str(sensor),
                        "ntp_server": f"127.0.0.1:{ntp_port}"}  # fmt: skip
            agents = [
                AgentProcess(fleet, "cam-01", broker, tmp_path, camera=CAMERA, selftest=measured),
                AgentProcess(fleet, "cam-02", broker, tmp_path, camera=CAMERA,
                             selftest={"at_boot": True, "thermal_root": str(no_sensor)}),
            ]  # fmt: skip
            for agent in agents:
                agent.start()

            def heartbeats(unit: str) -> list[Heartbeat]:
                return [h for h in w.of(Heartbeat) if h.unit_id == unit]

            await w.wait(
                lambda: any(h.clock_offset_s is not None for h in heartbeats("cam-01")),
                40,
                "a heartbeat with the measured clock offset",
            )
            await w.wait(lambda: len(heartbeats("cam-02")) >= 3, 20, "cam-02 heartbeats")
            assert ntp.requests >= 1
            await publish_authz(w, fleet, "cam-01", authorization(fleet, "cam-01"))

            async def measured_status() -> UnitStatus | None:
                status = await status_of(db, "cam-01")
                return status if status and status.clock_offset_s is not None else None

            one = await eventually(measured_status, within=10)
            assert one.temperature_c == 41.5
            assert one.clock_offset_s == pytest.approx(0.75, abs=0.05)
            assert one.uptime_s is not None and one.uptime_s > 0
            assert one.outbox_dropped == 0
            assert one.position_lat is None and one.position_lon is None
            two = await status_of(db, "cam-02")
            assert two is not None and two.uptime_s is not None and two.uptime_s > 0
            assert two.temperature_c is None and two.clock_offset_s is None
            assert all(h.temperature_c is None for h in heartbeats("cam-02"))
            assert all(h.temperature_c == 41.5 for h in heartbeats("cam-01"))

            async def verified_reports() -> list[CheckpointRecord]:
                async with db.session() as session:
                    rows = await session.execute(
                        select(CheckpointRecord).where(CheckpointRecord.unit_id == "cam-01")
                    )
                    found = list(rows.scalars())
                return found if len(found) >= 2 else []

            reports = await eventually(verified_reports, within=40, every=0.5)
            async with db.session() as session:
                await selftest_now(service.link, session, "cam-01", actor="operator:otto")
                await session.commit()

            async def answered() -> Any:
                async with db.session() as session:
                    views = await recent_commands(session, "cam-01", now=utcnow())
                return views if views and views[0].state == "done" else None

            (command,) = await eventually(answered, within=30, every=0.25)
            for agent in agents:
                assert await asyncio.to_thread(agent.terminate) == 0
            await asyncio.sleep(0.5)
            await service.ingest.idle()
        sent = [m for m in w.of(RecordingIndex) if m.unit_id == "cam-01"]
    finally:
        for agent in agents:
            agent.kill()

    assert all(r.status == "verified" and r.problems == [] for r in reports)
    assert [a.status for a in command.acks] == ["accepted", "done"]
    assert command.acks[-1].result["verdict"] in ("pass", "warn", "fail")
    async with db.session() as session:
        chain = list(
            (
                await session.execute(
                    select(ChainEntryRecord)
                    .where(ChainEntryRecord.unit_id == "cam-01")
                    .order_by(ChainEntryRecord.seq)
                )
            ).scalars()
        )
        statuses = (await session.execute(select(CheckpointRecord.status))).scalars().all()
    assert set(statuses) == {"verified"}
    last = sent[-1].checkpoint
    assert last is not None and [e.seq for e in chain] == list(range(1, last.count + 1))
    assert chain[-1].chain_hash == last.head

    accounts = Accounts(db, FAST)
    await accounts.add_user("mia", Role.MANAGER, PASSWORD, contractor=None, actor="test")
    app = create_app(ControllerSettings(database_url=db.url), db, auth=FAST)
    async with signed_in(app, "mia") as mia:
        detail = (await mia.get("/api/units/cam-01")).json()
        assert detail["status"]["temperature_c"] == 41.5
        assert detail["status"]["uptime_s"] > 0
        assert detail["recording_index"]["flagged"] == []
        assert detail["recording_index"]["verified_head"]["count"] == last.count
        assert [c["state"] for c in detail["commands"]] == ["done"]
        page = (await mia.get("/units/cam-01")).text
        assert "41.5 °C" in page and "s behind the time server" in page
        assert "Agent up for" in page and "done" in page
        other = (await mia.get("/units/cam-02")).text
        assert "Agent up for" in other
        # No temperature or clock among its health facts (the self-test table may still
        # state the temperature limit of a check it could not assess).
        assert 'data-testid="temperature"' not in other and "Temperature</dt>" not in other
        assert "Clock</dt>" not in other
        assert 'data-testid="temperature"' in page
