"""Acknowledged means stored: `cctv-controller serve` as a real process, stopped, killed
with SIGKILL and restarted, and a database that goes away; nothing the units sent is lost
or stored twice."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from controller.callouts import CalloutService
from controller.config import ControllerSettings
from controller.ingest import Ingest
from controller.link import Delivery
from controller.metrics import ControllerMetrics
from controller.store import Database
from controller.store.fleet import Callout, PowerReading, QuarantinedMessage, SeqGap, UnitStatus
from protocol.faults import FaultCode
from protocol.messages import Envelope, FaultRaised, PowerStatus, channel_for, encode
from tests.controller.conftest import UnitVoice, eventually
from tests.harness import MosquittoBroker, free_port, mqtt_client
from tests.harness.controller import ControllerProcess, write_controller_config
from tests.harness.postgres import PostgresServer

pytestmark = pytest.mark.slow


async def publish_all(broker: MosquittoBroker, messages: Sequence[Envelope]) -> None:
    """Publish as the load simulator (it may speak for every unit), QoS 1, each one
    acknowledged by the broker, many in flight at once."""
    topics = broker.fleet.topics
    async with mqtt_client(broker, "simulator", max_inflight_messages=500) as client:
        for i in range(0, len(messages), 500):
            await asyncio.gather(
                *(
                    client.publish(topics.unit(m.unit_id, channel_for(m)), encode(m), qos=1)
                    for m in messages[i : i + 500]
                )
            )


def traffic(units: Sequence[UnitVoice], per_unit: int, *, power_every: int = 10) -> list[Envelope]:
    """Round robin over `units`: heartbeats, every `power_every`-th a power status (a kind
    stored as one row per message)."""
    out: list[Envelope] = []
    for n in range(per_unit):
        for unit in units:
            if n % power_every == power_every - 1:
                out.append(unit.make(PowerStatus, source="mains", on_battery=False))
            else:
                out.append(unit.heartbeat())
    return out


async def stored_total(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.sum(UnitStatus.messages))) or 0)


async def assert_exactly_once(db: Database, sent: Sequence[Envelope]) -> None:
    """Every (unit, seq) sent stored once: each unit's message count is the number of
    distinct seqs it sent, its highest seq the highest sent, no seq missing, and one power
    row per power message."""
    by_unit: dict[str, set[int]] = {}
    power: dict[str, int] = {}
    for message in sent:
        by_unit.setdefault(message.unit_id, set()).add(message.seq)
        if isinstance(message, PowerStatus):
            power[message.unit_id] = power.get(message.unit_id, 0) + 1
    async with db.session() as session:
        statuses = {
            s.unit_id: s
            for s in (
                await session.execute(
                    select(UnitStatus).where(UnitStatus.unit_id.in_(sorted(by_unit)))
                )
            ).scalars()
        }
        rows = dict(
            (
                await session.execute(
                    select(PowerReading.unit_id, func.count()).group_by(PowerReading.unit_id)
                )
            ).all()
        )
        gaps = await session.scalar(select(func.count()).select_from(SeqGap))
        quarantined = await session.scalar(select(func.count()).select_from(QuarantinedMessage))
    assert gaps == 0 and quarantined == 0
    for unit_id, seqs in by_unit.items():
        status = statuses[unit_id]
        assert (status.messages, status.last_seq, status.missing) == (len(seqs), max(seqs), 0)
        assert rows.get(unit_id, 0) == power.get(unit_id, 0), unit_id


@pytest.fixture
async def controller_process(tmp_path: Path) -> AsyncIterator[list[ControllerProcess]]:
    started: list[ControllerProcess] = []
    yield started
    for process in started:
        process.kill()


async def test_messages_sent_while_the_controller_is_stopped_are_stored(
    db: Database,
    broker: MosquittoBroker,
    tmp_path: Path,
    controller_process: list[ControllerProcess],
) -> None:
    """From a default config (no client id): the controller's session outlives a stop, so
    what the units send meanwhile, a fault among it, is stored on restart and the fault
    becomes a callout."""
    config = write_controller_config(tmp_path / "controller.toml", broker, db.url)
    ctl = ControllerProcess(config, tmp_path / "ctl")
    controller_process.append(ctl)
    ctl.start()
    await ctl.wait_for_log("broker connected", within=60)
    assert "client_id=controller session=new" in ctl.log_text()
    assert ctl.stop() == 0

    cam1, cam2 = UnitVoice("cam-01"), UnitVoice("cam-02")
    sent: list[Envelope] = [*traffic([cam1, cam2], 20)]
    sent.append(cam1.event(FaultRaised(code=FaultCode.VIEW_OBSTRUCTED, detail="sprayed")))
    sent += traffic([cam1, cam2], 5)
    await publish_all(broker, sent)

    ctl.start()
    await ctl.wait_for_log("broker connected", within=60)
    assert "client_id=controller session=resumed" in ctl.log_text()
    await eventually(lambda: _total_is(db, len(sent)), within=30)
    await assert_exactly_once(db, sent)
    async with db.session() as session:
        callout = (
            await session.execute(select(Callout).where(Callout.unit_id == "cam-01"))
        ).scalar_one()
    assert callout.fault_code == "view_obstructed" and callout.status == "raised"
    assert ctl.stop() == 0
    # The broker saw the controller's certificate CN as its client id each time.
    assert [c for c in broker.connections() if c[1] == "controller"] == [
        ("controller", "controller")
    ] * 2


async def _total_is(db: Database, count: int) -> bool:
    return await stored_total(db) == count


async def test_a_backlog_survives_two_kills_mid_drain(
    db: Database,
    broker: MosquittoBroker,
    tmp_path: Path,
    controller_process: list[ControllerProcess],
) -> None:
    """20,000 messages queued for the controller, drained by `serve`, which is killed
    (SIGKILL) twice while draining: every (unit, seq) is stored exactly once."""
    config = write_controller_config(
        tmp_path / "controller.toml", broker, db.url, ingest={"batch_max": 250}
    )
    ctl = ControllerProcess(config, tmp_path / "ctl")
    controller_process.append(ctl)
    ctl.start()
    await ctl.wait_for_log("broker connected", within=60)
    assert ctl.stop() == 0

    units = [UnitVoice(f"drain-{n:03d}") for n in range(50)]
    sent = traffic(units, 400)
    assert len(sent) == 20_000
    await publish_all(broker, sent)

    kills = []
    for threshold in (4_000, 12_000):
        ctl.start()
        await eventually(lambda t=threshold: _at_least(db, t), within=60, every=0.01)
        ctl.kill()
        kills.append(await stored_total(db))
    ctl.start()
    await eventually(lambda: _total_is(db, len(sent)), within=90, every=0.1)
    assert all(count < len(sent) for count in kills), f"killed after the drain: {kills}"
    assert ctl.stop() == 0
    await assert_exactly_once(db, sent)


async def _at_least(db: Database, count: int) -> bool:
    return await stored_total(db) >= count


async def _metric(port: int, name: str) -> float | None:
    async with httpx.AsyncClient(timeout=2) as client:
        try:
            body = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        except httpx.HTTPError:
            return None
    found = re.search(rf"^{name} (\S+)$", body, re.MULTILINE)
    return float(found[1]) if found else None


async def test_a_database_outage_loses_nothing_and_acknowledges_nothing_early(
    broker: MosquittoBroker,
    tmp_path: Path,
    controller_process: list[ControllerProcess],
) -> None:
    """PostgreSQL stopped for 20 s while the units keep sending: the controller holds
    what it received without acknowledging it, says the database is unavailable, and
    when killed during the outage the broker gives everything to its successor, which
    stores it once the database is back."""
    pg = PostgresServer(tmp_path / "pg")
    try:
        await asyncio.to_thread(pg.start)
        await asyncio.to_thread(pg.create_database, "cctv")
        db = Database(pg.url("cctv"))
        http_port = free_port()
        config = write_controller_config(
            tmp_path / "controller.toml", broker, db.url, http_port=http_port
        )
        ctl = ControllerProcess(config, tmp_path / "ctl")
        controller_process.append(ctl)
        ctl.start()
        await ctl.wait_for_log("Uvicorn running", within=60)
        cam1, cam2 = UnitVoice("cam-01"), UnitVoice("cam-02")
        before = traffic([cam1, cam2], 10)
        await publish_all(broker, before)
        await eventually(lambda: _total_is(db, len(before)), within=20)

        await asyncio.to_thread(pg.stop)
        outage = time.monotonic()
        during = traffic([cam1, cam2], 100)
        during.insert(50, cam2.event(FaultRaised(code=FaultCode.STORAGE_FAILED, detail="sd")))
        await publish_all(broker, during)
        # Received, held, not acknowledged; the database is reported down.
        await eventually(
            lambda: _metric_is(http_port, "cctv_ingest_unacknowledged", len(during)), within=15
        )
        await eventually(lambda: _metric_is(http_port, "cctv_ingest_database_up", 0), within=15)
        async with httpx.AsyncClient(timeout=5) as client:
            health = await client.get(f"http://127.0.0.1:{http_port}/healthz")
            api = await client.get(
                f"http://127.0.0.1:{http_port}/api/units",
                headers={"Authorization": "Bearer cctv_not-a-token"},
            )
            page = await client.get(
                f"http://127.0.0.1:{http_port}/fleet",
                headers={"Accept": "text/html", "Cookie": "cctv_session=not-a-session"},
            )
        assert health.status_code == 503 and health.json()["database"] == "unreachable"
        assert api.status_code == 503 and "database is unavailable" in api.json()["detail"]
        assert page.status_code == 503 and "database is unavailable" in page.text
        assert page.headers["content-type"].startswith("text/html")

        ctl.kill()  # during the outage: whatever it had acknowledged would now be lost
        ctl.start()  # waits for the database; its broker link takes the redeliveries
        await ctl.wait_for_log("database unavailable at start", within=20)
        await asyncio.sleep(max(0.0, 20.0 - (time.monotonic() - outage)))
        await asyncio.to_thread(pg.start)

        await eventually(lambda: _total_is(db, len(before) + len(during)), within=60)
        after = traffic([cam1, cam2], 5)
        await publish_all(broker, after)
        sent = [*before, *during, *after]
        await eventually(lambda: _total_is(db, len(sent)), within=20)
        await assert_exactly_once(db, sent)
        async with db.session() as session:
            faults = (await session.execute(select(Callout.unit_id, Callout.fault_code))).all()
        assert [tuple(f) for f in faults] == [("cam-02", "storage_failed")]
        assert ctl.stop() == 0
        await db.dispose()
    finally:
        await asyncio.to_thread(pg.destroy)


async def _metric_is(port: int, name: str, value: float) -> bool:
    return await _metric(port, name) == value


async def test_ingest_resumes_by_itself_when_the_database_returns(tmp_path: Path) -> None:
    """In one process: messages received while PostgreSQL is down wait, and are stored
    (and only then acknowledged) when it is back, without a restart."""
    pg = PostgresServer(tmp_path / "pg")
    try:
        await asyncio.to_thread(pg.start)
        await asyncio.to_thread(pg.create_database, "cctv")
        db = Database(pg.url("cctv"))
        await db.migrate()
        settings = ControllerSettings(database_url=db.url)
        metrics = ControllerMetrics()
        acknowledged: list[Delivery] = []
        ingest = Ingest(
            db, settings, CalloutService(settings), metrics=metrics, acknowledge=acknowledged.extend
        )
        task = asyncio.create_task(ingest.run(), name="ingest-writer")
        cam = UnitVoice("cam-01")
        try:
            await asyncio.to_thread(pg.stop)
            for mid, message in enumerate(traffic([cam], 30), start=1):
                topic = settings.topics.unit(cam.unit_id, channel_for(message))
                ingest.submit(Delivery(topic, encode(message), False, mid, 1, connection=1))
            await eventually(lambda: ingest.waiting_for_database, within=10)
            await asyncio.sleep(1)  # a few attempts fail meanwhile
            assert ingest.stored == 0 and not ingest.is_idle and acknowledged == []
            assert "cctv_ingest_database_up 0.0" in metrics.render()[0].decode()
            await asyncio.to_thread(pg.start)
            await asyncio.wait_for(ingest.idle(), 30)
            assert ingest.stored == 30 and not ingest.waiting_for_database
            assert [d.mid for d in acknowledged] == list(range(1, 31))
            assert "cctv_ingest_database_up 1.0" in metrics.render()[0].decode()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await db.dispose()
    finally:
        await asyncio.to_thread(pg.destroy)
