"""Each message's fate is its own: text the databases cannot store, bad payloads and an
implausible seq, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from controller.callouts import CalloutService
from controller.config import ControllerSettings
from controller.ingest import Ingest
from controller.link import Delivery
from controller.metrics import ControllerMetrics
from controller.store import Database
from controller.store.fleet import Callout, QuarantinedMessage, SeqGap, UnitFault, UnitStatus
from protocol.faults import FaultCode
from protocol.messages import (
    FaultRaised,
    PowerStatus,
    RecordingStopped,
    UnitState,
    channel_for,
    encode,
)
from protocol.topics import Channel
from tests.controller.conftest import UnitVoice, eventually, running_controller, send
from tests.harness import MosquittoBroker, mqtt_client

REPLACEMENT = "\ufffd"


@contextlib.asynccontextmanager
async def writer(ingest: Ingest) -> AsyncIterator[None]:
    task = asyncio.create_task(ingest.run(), name="ingest-writer")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _all(db: Database, model: Any) -> list[Any]:
    async with db.session() as session:
        return list((await session.execute(select(model))).scalars())


async def test_one_batch_each_message_meets_its_own_fate(db: Database) -> None:
    """One batch: valid messages of two units, a payload with a raw NUL byte, a valid
    event with U+0000 in its text, one with half a surrogate pair, a malformed payload.
    Every valid message is stored and applied (the text with U+FFFD in place of what no
    database can store), every bad one quarantined and counted, and every one of them
    acknowledged, in order, after the commit."""
    settings = ControllerSettings(database_url=db.url)
    topics = settings.topics
    acked: list[list[Delivery]] = []
    ingest = Ingest(
        db,
        settings,
        CalloutService(settings),
        metrics=ControllerMetrics(),
        acknowledge=acked.append,
    )
    cam1, cam2 = UnitVoice("cam-01"), UnitVoice("cam-02")
    state = cam1.make(UnitState, online=True, agent_version="1\x002")
    beat1 = cam1.heartbeat()
    nul_fault = cam1.event(FaultRaised(code=FaultCode.BLUR, detail="lens\x00smeared"))
    beat2 = cam2.heartbeat(recording=True)
    stopped = cam2.event(RecordingStopped(reason="operator\x00stop"))
    surrogate = cam2.event(FaultRaised(code=FaultCode.VIEW_MOVED, detail="SURROGATE"))
    payloads: list[tuple[str, bytes]] = [
        (topics.unit("cam-01", Channel.STATE), encode(state)),
        (topics.unit("cam-01", Channel.HEARTBEAT), encode(beat1)),
        (topics.unit("cam-02", Channel.HEARTBEAT), encode(beat2)),
        (topics.unit("cam-02", Channel.HEARTBEAT), b'{"v": "1.0", "kind": "heart\x00beat"}'),
        (topics.unit("cam-01", Channel.EVENT), encode(nul_fault)),
        (topics.unit("cam-02", Channel.EVENT), encode(stopped)),
        (
            topics.unit("cam-02", Channel.EVENT),
            encode(surrogate).replace(b"SURROGATE", b"moved \\ud800 left"),
        ),
        (topics.unit("cam-01", Channel.POWER), b'{"v": "1.0", "kind": "power", "seq": '),
    ]
    assert b"\\u0000" in encode(nul_fault)  # the valid message carries the JSON escape
    deliveries = [
        Delivery(topic, payload, retain=False, mid=i + 1, qos=1, connection=1)
        for i, (topic, payload) in enumerate(payloads)
    ]
    for delivery in deliveries:  # all in before the writer runs: one batch
        ingest.submit(delivery)
    async with writer(ingest):
        await asyncio.wait_for(ingest.idle(), 20)

    assert ingest.stored == 6 and ingest.quarantined == 2 and ingest.dropped == 0
    assert acked == [deliveries]
    statuses = {s.unit_id: s for s in await _all(db, UnitStatus)}
    assert statuses["cam-01"].messages == 3 and statuses["cam-02"].messages == 3
    assert statuses["cam-01"].agent_version == f"1{REPLACEMENT}2"
    # cam-02's last word is the event after its heartbeat: stopped, and why.
    assert statuses["cam-02"].recording is False
    assert statuses["cam-02"].recording_reason == f"operator{REPLACEMENT}stop"
    faults = {(f.unit_id, f.code): f for f in await _all(db, UnitFault)}
    assert faults["cam-01", "blur"].detail == f"lens{REPLACEMENT}smeared"
    assert faults["cam-02", "view_moved"].detail == f"moved {REPLACEMENT} left"
    callouts = {(c.unit_id, c.fault_code) for c in await _all(db, Callout)}
    assert callouts == {("cam-01", "blur"), ("cam-02", "view_moved")}
    rows = await _all(db, QuarantinedMessage)
    assert sorted((r.unit_id, r.reason) for r in rows) == [
        ("cam-01", "malformed"),  # the power message cut short
        ("cam-02", "malformed"),  # the raw NUL byte
    ]
    nul_row = next(r for r in rows if r.unit_id == "cam-02")
    assert "heart\\x00beat" in nul_row.payload_prefix and "\x00" not in nul_row.payload_prefix


async def test_a_message_that_breaks_its_batch_does_not_take_the_others_with_it(
    db: Database,
) -> None:
    """A handler that fails for one message: the batch is stored one by one, the failing
    message alone is quarantined, its quarantine row and the batch's other rejects are
    kept, and the neighbours' faults still raise callouts."""
    settings = ControllerSettings(database_url=db.url)
    topics = settings.topics

    async def breaks_on_seq_3(session: Any, message: Any, context: Any) -> None:
        if message.seq == 3:
            raise ValueError("this one breaks")

    ingest = Ingest(
        db,
        settings,
        CalloutService(settings),
        metrics=ControllerMetrics(),
        handlers={"power": breaks_on_seq_3},
    )
    cam1, cam2 = UnitVoice("cam-01"), UnitVoice("cam-02")
    messages = [
        cam1.heartbeat(),  # 1
        cam1.event(FaultRaised(code=FaultCode.BLUR)),  # 2
        cam2.heartbeat(),  # 1
        cam2.heartbeat(),  # 2
    ]
    breaking = cam1.make(PowerStatus, source="mains", on_battery=False)  # 3
    for message in [*messages, breaking]:
        ingest.submit_raw(topics.unit(message.unit_id, channel_for(message)), encode(message))
    ingest.submit_raw(topics.unit("cam-02", Channel.EVENT), b"\x00\xff not json")
    async with writer(ingest):
        await asyncio.wait_for(ingest.idle(), 20)
    assert ingest.stored == 4 and ingest.quarantined == 2
    reasons = sorted(r.reason for r in await _all(db, QuarantinedMessage))
    assert reasons == ["malformed", "processing_error"]
    assert {(c.unit_id, c.fault_code) for c in await _all(db, Callout)} == {("cam-01", "blur")}


async def test_a_seq_far_ahead_cannot_freeze_a_unit(
    db: Database, broker: MosquittoBroker, controller_settings: Callable[..., ControllerSettings]
) -> None:
    """One heartbeat with seq 10^15 is quarantined; the unit's later real heartbeats
    still set its live state and no loss is counted. A counter that really jumped is
    followed from its second message on."""
    settings = controller_settings(broker, database_url=db.url)
    topics = broker.fleet.topics
    cam = UnitVoice("cam-01")
    async with running_controller(settings, db) as service, mqtt_client(broker, "cam-01") as unit:
        for _ in range(3):
            await send(unit, topics, cam.heartbeat(recording=True, gate_open=True))
        await send(unit, topics, cam.heartbeat(seq=10**15, recording=True, gate_open=True))
        await send(
            unit,
            topics,
            cam.heartbeat(recording=False, recording_reason="no authz", gate_open=False),
        )
        await eventually(lambda: service.ingest.stored + service.ingest.quarantined >= 5)

        async with db.session() as session:
            status = await session.get(UnitStatus, "cam-01")
            assert status is not None
            assert status.recording is False and status.gate_open is False
            assert status.last_seq == 4 and status.messages == 4 and status.missing == 0
            assert await session.scalar(select(func.count()).select_from(SeqGap)) == 0
            row = (await session.execute(select(QuarantinedMessage))).scalar_one()
            assert row.reason == "seq_ahead" and row.unit_id == "cam-01"
        body = service.metrics.render()[0].decode()
        assert 'cctv_ingest_quarantined_total{reason="seq_ahead"} 1.0' in body
        assert "cctv_ingest_missing_seqs_total 0.0" in body

        # The unit's counter really jumps: its next two messages both carry on from there.
        jumped = 2 * 10**15
        await send(unit, topics, cam.heartbeat(seq=jumped, recording=True))
        await send(unit, topics, cam.heartbeat(seq=jumped + 1, recording=True))
        await eventually(lambda: service.ingest.stored >= 5)
        async with db.session() as session:
            status = await session.get(UnitStatus, "cam-01")
            assert status is not None
            assert status.last_seq == jumped + 1 and status.recording is True
            assert status.missing == 0
            assert await session.scalar(select(func.count()).select_from(SeqGap)) == 0
        assert service.ingest.quarantined == 2


@pytest.mark.parametrize("seq", [2**63, 10**30])
async def test_a_seq_no_database_can_store_is_quarantined(db: Database, seq: int) -> None:
    settings = ControllerSettings(database_url=db.url)
    ingest = Ingest(db, settings, CalloutService(settings), metrics=ControllerMetrics())
    document = json.loads(encode(UnitVoice("cam-01").heartbeat()))
    document["seq"] = seq
    ingest.submit_raw(
        settings.topics.unit("cam-01", Channel.HEARTBEAT), json.dumps(document).encode()
    )
    async with writer(ingest):
        await asyncio.wait_for(ingest.idle(), 20)
    assert ingest.quarantined == 1 and ingest.stored == 0
    (row,) = await _all(db, QuarantinedMessage)
    assert row.reason == "malformed" and "highest storable" in row.detail


async def test_late_messages_fill_gaps_within_a_batch_and_across_batches(db: Database) -> None:
    """Gaps recorded earlier in the same batch, and gaps stored by an earlier batch, are
    both filled by the late messages that belong in them."""
    settings = ControllerSettings(database_url=db.url)
    ingest = Ingest(db, settings, CalloutService(settings), metrics=ControllerMetrics())
    topic = settings.topics.unit("cam-01", Channel.HEARTBEAT)
    cam = UnitVoice("cam-01")

    async def batch(*seqs: int) -> None:
        for seq in seqs:
            ingest.submit_raw(topic, encode(cam.heartbeat(seq=seq)))
        async with writer(ingest):
            await asyncio.wait_for(ingest.idle(), 20)

    await batch(1, 2, 6, 3, 9, 3)  # 4-5 and 7-8 missing; 3 late; the second 3 a duplicate
    await batch(4, 8, 10, 4)  # late, late, new, duplicate
    async with db.session() as session:
        status = await session.get(UnitStatus, "cam-01")
        gaps = sorted(
            (g.first_seq, g.last_seq) for g in (await session.execute(select(SeqGap))).scalars()
        )
    assert status is not None
    assert (status.last_seq, status.messages, status.duplicates) == (10, 8, 2)
    assert gaps == [(5, 5), (7, 7)] and status.missing == 2
