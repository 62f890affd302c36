"""Callouts: faults from a real unit client through a real broker, SLA clocks, the
lifecycle, and notifications to a real SMTP server and a real HTTP webhook."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller as SmtpController
from sqlalchemy import select

from controller import audit
from controller.callouts import CalloutService
from controller.callouts.notify import Notifier
from controller.config import ControllerSettings
from controller.errors import TransitionRefused
from controller.fleet.jobs import FleetJobs
from controller.ingest import Ingest
from controller.metrics import ControllerMetrics
from controller.store import Database
from controller.store.fleet import Callout, Notification, Unit, UnitStatus
from protocol.faults import FaultCode, Priority
from protocol.messages import (
    CheckResult,
    FaultCleared,
    FaultRaised,
    PowerStatus,
    channel_for,
    encode,
)
from tests.controller.conftest import UnitVoice, eventually, running_controller, send
from tests.harness import MosquittoBroker, free_port, mqtt_client

CONTRACTOR = "Test Maintenance Ltd"


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content.decode("utf-8", "replace")))
        return "250 OK"


@contextlib.contextmanager
def smtp_server() -> Any:
    box = Mailbox()
    server = SmtpController(box, hostname="127.0.0.1", port=free_port())
    server.start()
    try:
        yield server, box
    finally:
        server.stop()


class Webhook:
    """A tiny real HTTP server; answers 500 to the first `fail_first` requests."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.requests: list[dict[str, Any]] = []
        self.hits = 0
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode().split("\r\n"):
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        body = await reader.readexactly(length)
        self.hits += 1
        ok = self.hits > self.fail_first
        if ok:
            self.requests.append(json.loads(body))
        status = b"200 OK" if ok else b"500 Internal Server Error"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield f"http://127.0.0.1:{self.port}/hooks/cctv"


def _contract(emails: list[str], hooks: list[str], **extra: Any) -> dict[str, Any]:
    return {CONTRACTOR: {"hours": "24x7", "emails": emails, "webhook_urls": hooks, **extra}}


async def _open_callouts(db: Database, service: CalloutService) -> list[Any]:
    async with db.session() as session:
        return await service.list(session, open_only=True)


async def test_image_black_callout_notified_verified_and_closed(
    db: Database, broker: MosquittoBroker, controller_settings: Callable[..., ControllerSettings]
) -> None:
    hook = Webhook()
    topics = broker.fleet.topics
    with smtp_server() as (smtp, mailbox):
        async with hook.serve() as url:
            settings = controller_settings(
                broker,
                contracts=_contract(["dispatch@maint.example"], [url]),
                smtp={"host": "127.0.0.1", "port": smtp.port, "sender": "cctv@council.example"},
            )
            cam = UnitVoice("cam-01")
            async with (
                running_controller(settings, db) as service,
                mqtt_client(broker, "cam-01") as client,
            ):
                await send(client, topics, cam.state(True))
                started = asyncio.get_running_loop().time()
                raised = FaultRaised(
                    code=FaultCode.IMAGE_BLACK,
                    check="image_black",
                    detail="mean luma 2.1 < 10",
                    facts={"luma": 2.1},
                )
                await send(client, topics, cam.event(raised))
                callouts = await eventually(lambda: _open_callouts(db, service.callouts))
                assert asyncio.get_running_loop().time() - started < 5
                (callout,) = callouts
                assert callout.priority == "P1" and callout.fault_code == "image_black"
                assert callout.status == "raised" and callout.contractor == CONTRACTOR
                assert callout.respond_by - callout.raised_at == timedelta(hours=4)
                assert callout.repair_by - callout.raised_at == timedelta(hours=8)
                await eventually(lambda: mailbox.messages and hook.requests, within=5)
                rcpt, mail = mailbox.messages[0]
                assert rcpt == ["dispatch@maint.example"]
                assert "[P1]" in mail and "cam-01" in mail and "Picture is black" in mail
                assert hook.requests[0]["event"] == "callout.new"
                assert hook.requests[0]["callout"]["id"] == callout.id

                cs = service.callouts
                async with db.session() as session:
                    for step in ("acknowledged", "attending", "resolved"):
                        await cs.lifecycle.transition(
                            session, callout.id, step, actor="contractor:bob", note=f"{step} by bob"
                        )
                    await session.commit()
                async with db.session() as session:
                    with pytest.raises(TransitionRefused, match="no self-test has passed"):
                        await cs.lifecycle.transition(
                            session, callout.id, "verified", actor="manager:ann"
                        )
                await send(client, topics, cam.event(FaultCleared(code=FaultCode.IMAGE_BLACK)))
                failing = CheckResult(
                    name="image_black",
                    verdict="fail",
                    value=3.0,
                    threshold=10.0,
                    fault=FaultCode.IMAGE_BLACK,
                )
                await send(client, topics, cam.selftest([failing]))
                passing = CheckResult(
                    name="image_black",
                    verdict="pass",
                    value=80.0,
                    threshold=10.0,
                    fault=FaultCode.IMAGE_BLACK,
                )
                other = CheckResult(name="blur", verdict="pass", value=300.0, threshold=100.0)
                await send(client, topics, cam.selftest([passing, other]))

                async def verified() -> bool:
                    async with db.session() as session:
                        row = await session.get(Callout, callout.id)
                        return row is not None and row.status == "verified"

                await eventually(verified)
                async with db.session() as session:
                    await cs.lifecycle.transition(
                        session, callout.id, "closed", actor="manager:ann"
                    )
                    await session.commit()
                    view = await cs.get(session, callout.id)
                assert view.status == "closed" and view.fault_cleared_at is not None
                kinds = [e.kind for e in view.events]
                assert kinds == [
                    "raised",
                    "acknowledged",
                    "attending",
                    "resolved",
                    "fault_cleared",
                    "verified",
                    "closed",
                ]
                assert view.events[1].actor == "contractor:bob"
                assert await _open_callouts(db, cs) == []
    result = await audit.verify(db)
    assert result.ok and result.rows >= 8


async def test_mains_failure_callout_carries_ups_facts(
    db: Database, broker: MosquittoBroker, controller_settings: Callable[..., ControllerSettings]
) -> None:
    topics = broker.fleet.topics
    settings = controller_settings(broker)
    cam = UnitVoice("cam-02")
    async with running_controller(settings, db) as service, mqtt_client(broker, "cam-02") as client:
        await send(client, topics, cam.state(True))
        await send(
            client,
            topics,
            cam.make(
                PowerStatus,
                source="battery",
                on_battery=True,
                charge_pct=83.0,
                runtime_s=2400,
                input_voltage=0.0,
                ups_status="OB DISCHRG",
                model="Eaton 5E",
            ),
        )
        await send(
            client,
            topics,
            cam.event(FaultRaised(code=FaultCode.MAINS_FAILURE, detail="UPS on battery")),
        )
        (callout,) = await eventually(lambda: _open_callouts(db, service.callouts))
        assert callout.fault_code == "mains_failure" and callout.priority == "P2"
        ups = callout.facts["ups"]
        assert ups["on_battery"] is True and ups["source"] == "battery"
        assert ups["ups_status"] == "OB DISCHRG" and ups["charge_pct"] == 83.0
        assert ups["runtime_s"] == 2400 and ups["model"] == "Eaton 5E"
        # The roll-up shows the unit degraded (P2 fault, on battery).
        from controller.fleet import unit_detail

        async with db.session() as session:
            detail = await unit_detail(session, "cam-02")
        assert detail.summary.state == "degraded"
        assert "on battery" in detail.summary.reasons


# -- without a broker: the service functions on the database ------------------------------


async def _unit(db: Database, unit_id: str = "cam-09", contractor: str = CONTRACTOR) -> Unit:
    async with db.session() as session:
        unit = Unit(unit_id=unit_id, contractor=contractor, registered_at=datetime.now(UTC))
        session.add(unit)
        await session.commit()
        return unit


async def test_one_open_callout_per_unit_and_fault_and_invalid_steps_refused(db: Database) -> None:
    settings = ControllerSettings()
    service = CalloutService(settings)
    unit = await _unit(db)
    async with db.session() as session:
        first = await service.faults.fault_raised(
            session, unit, FaultCode.FROZEN, detail="same frame"
        )
        again = await service.faults.fault_raised(session, unit, FaultCode.FROZEN, detail="still")
        other = await service.faults.fault_raised(session, unit, FaultCode.BLUR)
        await session.commit()
    assert first is not None and again is not None and other is not None
    assert first.id == again.id and other.id != first.id
    assert again.raise_count == 2
    async with db.session() as session:
        with pytest.raises(TransitionRefused, match="must be acknowledged before anyone attends"):
            await service.lifecycle.transition(session, first.id, "attending", actor="x")
        with pytest.raises(
            TransitionRefused, match="only a callout being attended can be resolved"
        ):
            await service.lifecycle.transition(session, first.id, "resolved", actor="x")
        with pytest.raises(TransitionRefused, match="not a step"):
            await service.lifecycle.transition(session, first.id, "raised", actor="x")
        view = await service.get(session, first.id)
    assert [e.kind for e in view.events] == ["raised", "repeat"]
    # A closed callout lets the next raise open a new one.
    async with db.session() as session:
        await service.lifecycle.transition(session, first.id, "acknowledged", actor="x")
        await service.lifecycle.transition(session, first.id, "attending", actor="x")
        await service.lifecycle.transition(session, first.id, "resolved", actor="x")
        callout = await session.get(Callout, first.id)
        assert callout is not None
        callout.status, callout.verified_at = "verified", callout.resolved_at  # as if verified
        await service.lifecycle.transition(session, first.id, "closed", actor="x")
        with pytest.raises(TransitionRefused, match="a closed callout cannot change"):
            await service.lifecycle.transition(session, first.id, "acknowledged", actor="x")
        fresh = await service.faults.fault_raised(session, unit, FaultCode.FROZEN)
        await session.commit()
    assert fresh is not None and fresh.id != first.id


def test_sla_deadlines_follow_contract_hours() -> None:
    settings = ControllerSettings(
        contracts={
            "Office Hours Ltd": {"hours": "Mon-Fri 08:00-18:00", "timezone": "Europe/London"},
            "Visits Ltd": {"routine_visit_days": 30, "routine_visit_start": "2024-01-01"},
        }
    )
    friday_5pm = datetime(2024, 6, 7, 16, 0, tzinfo=UTC)  # 17:00 BST
    office = settings.contract("Office Hours Ltd")
    respond, repair = office.deadlines(Priority.P1, friday_5pm)
    assert respond == datetime(2024, 6, 10, 10, 0, tzinfo=UTC)  # Mon 11:00 BST: 1 h + 3 h
    assert repair == datetime(2024, 6, 10, 14, 0, tzinfo=UTC)  # Mon 15:00 BST: 1 h + 7 h
    winter = datetime(2024, 1, 5, 17, 30, tzinfo=UTC)  # Fri 17:30 GMT
    assert office.deadlines(Priority.P2, winter)[0] == datetime(2024, 1, 8, 15, 30, tzinfo=UTC)
    always = settings.contract("Unknown Co")  # the default contract: 24x7
    assert always.deadlines(Priority.P2, friday_5pm) == (
        friday_5pm + timedelta(hours=8),
        friday_5pm + timedelta(hours=16),
    )
    visit = settings.contract("Visits Ltd").deadlines(Priority.P3, friday_5pm)
    assert visit == (datetime(2024, 6, 29, tzinfo=UTC),) * 2  # 2024-01-01 + 6 x 30 days
    with pytest.raises(ValueError, match="write hours like"):
        ControllerSettings(contracts={"Bad": {"hours": "weekdays"}})


async def test_breach_sweep_flags_and_notifies_once(db: Database) -> None:
    hook = Webhook(fail_first=2)
    async with hook.serve() as url:
        settings = ControllerSettings(
            contracts=_contract([], [url]), webhooks={"backoff_s": 0.05, "attempts": 4}
        )
        clock = [datetime.now(UTC)]
        service = CalloutService(settings, now=lambda: clock[0])
        unit = await _unit(db)
        async with db.session() as session:
            callout = await service.faults.fault_raised(session, unit, FaultCode.CAMERA_NO_SIGNAL)
            await session.commit()
        assert callout is not None
        clock[0] += timedelta(hours=5)  # past respond (4 h), not repair (8 h)
        async with db.session() as session:
            breached = await service.sweep_breaches(session)
            assert [c.id for c in breached] == [callout.id]
            assert await service.sweep_breaches(session) == []  # flagged once
            await session.commit()
        async with db.session() as session:
            row = await session.get(Callout, callout.id)
            assert row is not None and row.respond_breached and not row.repair_breached
        notifier = Notifier(db, settings, poll_s=0.05)
        task = asyncio.create_task(notifier.run(), name="notifier")

        async def all_sent() -> bool:
            async with db.session() as session:
                rows = list((await session.execute(select(Notification))).scalars())
            return len(rows) == 2 and all(r.status == "sent" for r in rows)

        try:
            await eventually(all_sent, within=10)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert sorted(r["event"] for r in hook.requests) == [
            "callout.new",
            "callout.respond_breached",
        ]
        async with db.session() as session:
            rows = list((await session.execute(select(Notification))).scalars())
        assert all(r.status == "sent" for r in rows)
        assert sum(r.attempts for r in rows) == 4  # two 500s were retried
        assert any("HTTP 500" in r.last_error or r.attempts > 1 for r in rows)


async def test_failed_notification_is_recorded_not_raised(db: Database) -> None:
    dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
    settings = ControllerSettings(
        contracts=_contract(["x@maint.example"], [dead]), webhooks={"backoff_s": 0, "attempts": 2}
    )
    service = CalloutService(settings)
    unit = await _unit(db)
    async with db.session() as session:
        await service.faults.fault_raised(session, unit, FaultCode.STORAGE_FAILED)
        await session.commit()
    import httpx

    notifier = Notifier(db, settings)
    async with httpx.AsyncClient() as http:
        for _ in range(3):
            await notifier.deliver_due(http)
    async with db.session() as session:
        rows = {r.channel: r for r in (await session.execute(select(Notification))).scalars()}
    assert rows["webhook"].status == "failed" and rows["webhook"].attempts == 2
    assert "ConnectError" in rows["webhook"].last_error
    assert rows["email"].status == "failed" and "no [smtp] settings" in rows["email"].last_error


async def test_notifications_queued_by_ingest_or_the_sweep_wake_the_notifier(
    db: Database,
) -> None:
    """A notification goes out as soon as the transaction that queued it commits, not at
    the notifier's next poll (an hour away here)."""
    hook = Webhook()
    async with hook.serve() as url:
        settings = ControllerSettings(database_url=db.url, contracts=_contract([], [url]))
        callouts = CalloutService(settings)
        notifier = Notifier(db, settings, poll_s=3600)
        ingest = Ingest(db, settings, callouts, metrics=ControllerMetrics(), notifier=notifier)
        jobs = FleetJobs(db, settings, callouts, metrics=ControllerMetrics(), notifier=notifier)
        await _unit(db, "cam-09")
        await _unit(db, "cam-10")
        silent_since = datetime.now(UTC) - timedelta(seconds=settings.offline_timeout_s + 60)
        async with db.session() as session:
            session.add(UnitStatus(unit_id="cam-10", online=True, last_seen_at=silent_since))
            await session.commit()
        tasks = [
            asyncio.create_task(notifier.run(), name="notifier"),
            asyncio.create_task(ingest.run(), name="ingest-writer"),
        ]
        try:
            await asyncio.sleep(0.5)  # the notifier's first pass is over: it waits an hour
            assert hook.requests == []
            raised = FaultRaised(code=FaultCode.IMAGE_BLACK, check="image_black", detail="dark")
            message = UnitVoice("cam-09").event(raised)
            ingest.submit_raw(settings.topics.unit("cam-09", channel_for(message)), encode(message))
            (first,) = await eventually(lambda: hook.requests, within=5)
            assert first["event"] == "callout.new"
            assert first["callout"]["unit_id"] == "cam-09"
            assert (await jobs.sweep_once()).offline_callouts == ["cam-10"]
            await eventually(lambda: len(hook.requests) == 2, within=5)
            assert hook.requests[1]["callout"]["fault_code"] == "unit_offline"
            assert hook.requests[1]["callout"]["unit_id"] == "cam-10"
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
