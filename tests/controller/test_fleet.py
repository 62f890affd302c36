"""Fleet state: offline by last will and by silence, back online, roll-up, inventory."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from controller import audit
from controller.callouts import CalloutService
from controller.config import ControllerSettings
from controller.fleet import (
    fleet_overview,
    import_units,
    retire_unit,
    roll_up,
    rollup_counts,
    unit_detail,
)
from controller.fleet.commands import selftest_now
from controller.fleet.jobs import FleetJobs
from controller.metrics import ControllerMetrics
from controller.store import Database
from controller.store.audit import AuditEntry
from controller.store.fleet import Unit, UnitFault, UnitStatus
from protocol.faults import FaultCode
from protocol.messages import Command, decode, encode
from protocol.signing import Verifier
from protocol.topics import Channel
from provisioning import Fleet
from tests.controller.conftest import UnitVoice, eventually, running_controller, send
from tests.harness import MosquittoBroker, mqtt_client

# A unit process that connects with its will, says it is online, and waits to be killed.
_UNIT_PROCESS = """
import asyncio, ssl, sys, aiomqtt
host, port, ca, cert, key, state_topic, will_payload, online_payload = sys.argv[1:]
async def main():
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    will = aiomqtt.Will(state_topic, will_payload.encode(), qos=1, retain=True)
    async with aiomqtt.Client(host, int(port), tls_context=ctx, will=will, keepalive=10) as c:
        await c.publish(state_topic, online_payload.encode(), qos=1, retain=True)
        print("ready", flush=True)
        await asyncio.sleep(3600)
asyncio.run(main())
"""


async def _callout_events(db: Database, service: object, unit_id: str) -> list[str]:
    async with db.session() as session:
        callouts = await service.callouts.list(session, unit_id=unit_id)  # type: ignore[attr-defined]
        if not callouts:
            return []
        view = await service.callouts.get(session, callouts[0].id)  # type: ignore[attr-defined]
    return [view.fault_code] + [e.kind for e in view.events]


async def _status(db: Database, unit_id: str) -> UnitStatus | None:
    async with db.session() as session:
        return await session.get(UnitStatus, unit_id)


async def test_killed_unit_goes_offline_by_its_will_and_back_online(
    db: Database, broker: MosquittoBroker, controller_settings: Callable[..., ControllerSettings]
) -> None:
    settings = controller_settings(broker, offline_timeout_s=1.5)
    topics = broker.fleet.topics
    identity = broker.fleet.client_identity("cam-02")
    cam = UnitVoice("cam-02", seq=100)
    will_seq = cam.seq = cam.seq + 1  # reserved at connect, as the agent does
    will = cam.state(False, seq=will_seq, reason="connection lost")
    online = cam.state(True)
    async with running_controller(settings, db) as service:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _UNIT_PROCESS,
            broker.host,
            str(broker.port),
            str(identity.ca_file),
            str(identity.cert_file),
            str(identity.key_file),
            topics.unit("cam-02", Channel.STATE),
            encode(will).decode(),
            encode(online).decode(),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 15)
            assert line.strip() == b"ready"

            async def online_now() -> bool:
                status = await _status(db, "cam-02")
                return status is not None and status.online is True

            await eventually(online_now)
            killed_at = asyncio.get_running_loop().time()
            proc.kill()  # SIGKILL, no DISCONNECT: the broker publishes the will
        finally:
            if proc.returncode is None:
                proc.kill()
            await asyncio.wait_for(proc.wait(), 10)

        async def offline_now() -> UnitStatus | None:
            status = await _status(db, "cam-02")
            return status if status is not None and status.online is False else None

        status = await eventually(offline_now, within=5)
        assert status.online_reason == "connection lost"
        assert asyncio.get_running_loop().time() - killed_at < settings.offline_timeout_s + 1
        events = await eventually(lambda: _callout_events(db, service, "cam-02"), within=5)
        assert events[:2] == ["unit_offline", "raised"]
        status = await _status(db, "cam-02")
        assert status is not None and status.missing == 0  # the will filled its seq

        async with mqtt_client(broker, "cam-02") as client:
            cam.seq += 1  # the next connection's will seq
            await send(client, topics, cam.state(True), retain=True)

            async def noted() -> bool:
                return "unit_online" in await _callout_events(db, service, "cam-02")

            await eventually(noted)
        status = await _status(db, "cam-02")
        assert status is not None and status.online is True


async def test_missed_heartbeats_without_will_mark_offline(
    db: Database, broker: MosquittoBroker, controller_settings: Callable[..., ControllerSettings]
) -> None:
    settings = controller_settings(broker, offline_timeout_s=1.0)
    topics = broker.fleet.topics
    cam = UnitVoice("cam-03")
    async with running_controller(settings, db) as service, mqtt_client(broker, "cam-03") as client:
        await send(client, topics, cam.state(True))
        await send(client, topics, cam.heartbeat())
        started = asyncio.get_running_loop().time()

        async def offline_now() -> UnitStatus | None:
            status = await _status(db, "cam-03")
            return status if status is not None and status.online is False else None

        status = await eventually(offline_now, within=5)
        assert asyncio.get_running_loop().time() - started >= 1.0
        assert status.online_reason == "no message for 1 s"
        events = await eventually(lambda: _callout_events(db, service, "cam-03"), within=5)
        assert events[:2] == ["unit_offline", "raised"]
        await send(client, topics, cam.heartbeat())  # heard again

        async def noted() -> bool:
            return "unit_online" in await _callout_events(db, service, "cam-03")

        await eventually(noted)
        async with db.session() as session:
            overview = await fleet_overview(session)
        # Back online, but the unit_offline fault is cleared: ok or fault only by others.
        states = {u.unit_id: u.state for u in overview.units}
        assert states["cam-03"] == "ok"
        assert states["cam-01"] == "fault"  # imported from the fleet dir, never reported


def _status_row(**fields: object) -> UnitStatus:
    values: dict[str, object] = {"unit_id": "u", "online": True, "reported_faults": []}
    values.update(fields)
    return UnitStatus(**values)


def _fault(code: FaultCode) -> UnitFault:
    return UnitFault(unit_id="u", code=code.value, priority=code.priority.value, active=True)


def test_roll_up_rule() -> None:
    assert roll_up(_status_row(), []) == ("ok", [])
    assert roll_up(None, [])[0] == "fault"
    assert roll_up(_status_row(online=False, online_reason="connection lost"), []) == (
        "fault",
        ["offline (connection lost)"],
    )
    assert roll_up(_status_row(), [_fault(FaultCode.IMAGE_BLACK)]) == (
        "fault",
        ["Picture is black (P1 urgent)"],
    )
    assert roll_up(_status_row(), [_fault(FaultCode.BLUR)]) == (
        "degraded",
        ["Picture is out of focus (P2 non-urgent)"],
    )
    assert roll_up(_status_row(reported_faults=["broker_unreachable"]), [])[0] == "degraded"
    assert roll_up(_status_row(on_battery=True), []) == ("degraded", ["on battery"])
    gate = roll_up(_status_row(deployment_id="d-1", gate_open=False), [])
    assert gate == ("degraded", ["gate closed during deployment d-1"])
    assert roll_up(_status_row(deployment_id=None, gate_open=False), []) == ("ok", [])


async def test_inventory_import_overview_and_retire(db: Database, fleet: Fleet) -> None:
    async with db.session() as session:
        first = await import_units(session, fleet.root)
        await session.commit()
    assert first.added == ["cam-01", "cam-02", "cam-03"]
    async with db.session() as session:
        again = await import_units(session, fleet.root)
        overview = await fleet_overview(session, contractor="Test Maintenance Ltd")
        nobody = await fleet_overview(session, contractor="Other Co")
        detail = await unit_detail(session, "cam-01")
        await retire_unit(session, "cam-02", actor="manager:ann", reason="stolen")
        await session.commit()
        after = await fleet_overview(session)
    assert again.added == [] and again.unchanged == ["cam-01", "cam-02", "cam-03"]
    assert [u.unit_id for u in overview.units] == ["cam-01", "cam-02", "cam-03"]
    assert overview.units[0].site == "site of cam-01"
    assert nobody.units == []
    assert detail.serial and detail.registered_at <= datetime.now(UTC)
    assert [u.unit_id for u in after.units] == ["cam-01", "cam-03"]
    assert sum(after.counts.values()) == 2


async def test_overdue_function_check_raises_a_callout(db: Database) -> None:
    settings = ControllerSettings(selftest_overdue_h=13)
    clock = [datetime.now(UTC)]
    callouts = CalloutService(settings, now=lambda: clock[0])
    jobs = FleetJobs(db, settings, callouts, metrics=ControllerMetrics(), now=lambda: clock[0])
    async with db.session() as session:
        for unit_id, passed_h in (("cam-01", 14), ("cam-02", 2)):
            session.add(Unit(unit_id=unit_id, registered_at=clock[0] - timedelta(days=3)))
            session.add(
                UnitStatus(
                    unit_id=unit_id,
                    online=True,
                    last_seen_at=clock[0],
                    reported_faults=[],
                    last_pass_at=clock[0] - timedelta(hours=passed_h),
                )
            )
        await session.commit()
    result = await jobs.sweep_once()
    assert result.overdue_callouts == ["cam-01"]
    assert (await jobs.sweep_once()).overdue_callouts == []  # one callout, not one per sweep
    async with db.session() as session:
        (callout,) = await callouts.list(session, open_only=True)
        assert callout.fault_code == "selftest_overdue" and callout.priority == "P2"
        assert callout.detail.startswith("no passing function check since")
        assert await rollup_counts(session) == {"ok": 1, "degraded": 1, "fault": 0}


async def test_selftest_command_is_signed_delivered_and_audited(
    db: Database, broker: MosquittoBroker, controller_settings: Callable[..., ControllerSettings]
) -> None:
    settings = controller_settings(broker)
    topics = broker.fleet.topics
    verifier = Verifier(broker.fleet.controller_signing_key().public_key(), unit_id="cam-01")
    async with running_controller(settings, db) as service, mqtt_client(broker, "cam-01") as unit:
        await unit.subscribe(topics.unit("cam-01", Channel.CMD), qos=1)
        async with db.session() as session:
            sent = await selftest_now(service.link, session, "cam-01", actor="contractor:bob")
            await session.commit()
        async with asyncio.timeout(5):
            message = await anext(aiter(unit.messages))
        received = decode(message.payload)  # type: ignore[arg-type]
        assert isinstance(received, Command)
        body = verifier.command(received)  # raises unless signed by the controller's key
        assert body.command_id == sent.body.command_id and body.action.action == "selftest_now"
        assert body.issued_by == "contractor:bob"
    result = await audit.verify(db)
    assert result.ok
    async with db.session() as session:
        entry = (
            await session.execute(
                select(AuditEntry).where(AuditEntry.action == "command.selftest_now")
            )
        ).scalar_one()
    assert entry.actor == "contractor:bob" and entry.subject == "unit:cam-01"
