"""Ingest through a real Mosquitto (TLS + ACL) into SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings
from sqlalchemy import func, select

from controller.callouts import CalloutService
from controller.config import ControllerSettings
from controller.ingest import Ingest
from controller.metrics import ControllerMetrics
from controller.store import Database
from controller.store.fleet import QuarantinedMessage, SeqGap, Unit, UnitStatus
from protocol.faults import FaultCode
from protocol.messages import PowerStatus, RecordingIndex, channel_for, encode
from protocol.topics import Channel
from tests.controller.conftest import UnitVoice, eventually, running_controller, send
from tests.harness import MosquittoBroker, mqtt_client

FROM_UNIT = [c for c in Channel if c.direction.value == "from_unit"]


async def _status(db: Database, unit_id: str) -> UnitStatus | None:
    async with db.session() as session:
        return await session.get(UnitStatus, unit_id)


async def _quarantined(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(QuarantinedMessage)) or 0)


async def test_heartbeat_and_power_update_live_state(
    db: Database, broker: MosquittoBroker, controller_settings: Callable[..., ControllerSettings]
) -> None:
    settings = controller_settings(broker)
    topics = broker.fleet.topics
    cam = UnitVoice("cam-01")
    async with running_controller(settings, db) as service, mqtt_client(broker, "cam-01") as client:
        await send(client, topics, cam.state(True))
        await send(
            client,
            topics,
            cam.heartbeat(
                recording=False,
                recording_reason="no authz",
                gate_open=False,
                outbox_depth=3,
                open_faults=[FaultCode.BLUR],
            ),
        )
        await send(
            client,
            topics,
            cam.make(
                PowerStatus, source="mains", on_battery=False, charge_pct=97.0, ups_status="OL"
            ),
        )

        async def stored() -> bool:
            status = await _status(db, "cam-01")
            return status is not None and status.power_source == "mains"

        await eventually(stored)
        status = await _status(db, "cam-01")
        assert status is not None
        assert status.online is True
        assert status.recording is False and status.recording_reason == "no authz"
        assert status.gate_open is False and status.outbox_depth == 3
        assert status.reported_faults == ["blur"]
        assert status.charge_pct == 97.0 and status.last_seq == 3
        assert service.ingest.stored == 3
        # A unit not in the inventory (never imported) is registered from the broker.
        async with db.session() as session:
            unit = await session.get(Unit, "cam-01")
            assert unit is not None
            assert unit.source in ("broker", "provisioning")


async def test_duplicates_dropped_and_gaps_recorded(
    db: Database, broker: MosquittoBroker, controller_settings: Callable[..., ControllerSettings]
) -> None:
    settings = controller_settings(broker)
    topics = broker.fleet.topics
    cam = UnitVoice("cam-02")
    async with running_controller(settings, db) as service, mqtt_client(broker, "cam-02") as client:
        for seq in (1, 2, 2, 1, 6, 6, 3, 9):  # 4-5 and 7-8 missing; 3 arrives late
            await send(client, topics, cam.heartbeat(seq=seq))
        await eventually(lambda: service.ingest.stored + service.ingest.duplicates >= 8)
        await service.ingest.idle()
        assert service.ingest.duplicates == 3
        assert service.ingest.stored == 5
        status = await _status(db, "cam-02")
        assert status is not None
        assert status.last_seq == 9 and status.duplicates == 3 and status.missing == 4
        async with db.session() as session:
            gaps = sorted(
                (g.first_seq, g.last_seq, g.reason)
                for g in (await session.execute(select(SeqGap))).scalars()
            )
        assert gaps == [(4, 5, "missing"), (7, 8, "missing")]
        body = service.metrics.render()[0].decode()
        assert "cctv_ingest_duplicates_total 3.0" in body
        assert "cctv_ingest_missing_seqs_total 5.0" in body  # 3,4,5 then 7,8; 3 filled late
        assert "cctv_ingest_late_seqs_total 1.0" in body


async def test_will_seq_is_not_counted_as_loss(
    db: Database, broker: MosquittoBroker, controller_settings: Callable[..., ControllerSettings]
) -> None:
    """A unit reserves the seq before its online state for its will: a clean reconnect
    leaves that seq unsent, which is not message loss."""
    settings = controller_settings(broker)
    topics = broker.fleet.topics
    cam = UnitVoice("cam-03", seq=10)
    async with running_controller(settings, db) as service, mqtt_client(broker, "cam-03") as client:
        await send(client, topics, cam.heartbeat())  # 11
        cam.seq += 1  # 12 reserved for the will of the next connection
        await send(client, topics, cam.state(True))  # 13
        await send(client, topics, cam.heartbeat())  # 14
        await eventually(lambda: service.ingest.stored >= 3)
        status = await _status(db, "cam-03")
        assert status is not None and status.missing == 0 and status.last_seq == 14
        # The will fires (published here by hand with the reserved seq): unit offline.
        await send(client, topics, cam.state(False, seq=12, reason="connection lost"))
        await eventually(lambda: service.ingest.stored >= 4)
        status = await _status(db, "cam-03")
        assert status is not None and status.online is False
        assert status.online_reason == "connection lost"


def _bad_payloads() -> st.SearchStrategy[tuple[Channel, bytes]]:
    channel = st.sampled_from(FROM_UNIT)
    junk = st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(str.encode),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=False)
            | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=8), inner, max_size=4)
            ),
            max_leaves=12,
        ).map(lambda doc: json.dumps(doc).encode()),
    )
    good = UnitVoice("cam-01", seq=10**9)

    def mutated(draw_channel: Channel, how: str, value: Any) -> bytes:
        doc = json.loads(encode(good.heartbeat(seq=10**9)))
        if how == "drop":
            doc.pop(str(value) if str(value) in doc else "recording")
        elif how == "unit":
            doc["unit_id"] = "cam-02"  # not the topic's unit
        elif how == "kind":
            doc["kind"] = str(value)
        elif how == "seq":
            doc["seq"] = value
        elif how == "version":
            doc["v"] = "9.0"
        return json.dumps(doc).encode()

    structured = st.builds(
        lambda ch, how, value: (ch, mutated(ch, how, value)),
        channel,
        st.sampled_from(["drop", "unit", "kind", "seq", "version"]),
        st.one_of(st.text(max_size=10), st.integers(max_value=-1), st.none()),
    )
    return st.one_of(st.tuples(channel, junk), structured)


async def test_fuzzed_payloads_are_quarantined_and_ingest_keeps_going(
    db: Database, broker: MosquittoBroker, controller_settings: Callable[..., ControllerSettings]
) -> None:
    settings_ = controller_settings(broker)
    topics = broker.fleet.topics
    loop = asyncio.get_running_loop()
    sent: list[tuple[Channel, bytes]] = []
    async with (
        running_controller(settings_, db) as service,
        mqtt_client(broker, "cam-01") as client,
    ):

        @settings(
            max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(_bad_payloads())
        def publish_bad(case: tuple[Channel, bytes]) -> None:
            channel, payload = case
            if channel is Channel.HEARTBEAT and payload.startswith(b'{"v":"1.0"'):
                # A mutated heartbeat on its own channel may still be a valid message.
                pass
            future = asyncio.run_coroutine_threadsafe(
                client.publish(topics.unit("cam-01", channel), payload, qos=1), loop
            )
            future.result(timeout=10)
            sent.append(case)

        await asyncio.to_thread(publish_bad)
        # And a payload over the protocol's size limit.
        await client.publish(topics.unit("cam-01", Channel.EVENT), b"x" * 300_000, qos=1)
        await service.ingest.idle()
        cam = UnitVoice("cam-01")
        await send(client, topics, cam.heartbeat())
        await eventually(lambda: service.ingest.stored >= 1)
        quarantined = await _quarantined(db)
        # Every fuzzed payload was refused (none of them is a valid message of its channel).
        assert quarantined == len(sent) + 1 == service.ingest.quarantined
        body = service.metrics.render()[0].decode()
        assert 'cctv_ingest_quarantined_total{reason="too_large"} 1.0' in body
        async with db.session() as session:
            reasons = set((await session.execute(select(QuarantinedMessage.reason))).scalars())
            row = (await session.execute(select(QuarantinedMessage).limit(1))).scalar_one()
        assert reasons <= {
            "malformed",
            "unknown_kind",
            "version",
            "too_large",
            "unit_mismatch",
            "wrong_channel",
        }
        assert row.topic.startswith(topics.root) and row.received_at.tzinfo is not None
        status = await _status(db, "cam-01")
        assert status is not None and status.last_seq == 1


async def test_a_message_that_fails_to_apply_is_quarantined_alone(db: Database) -> None:
    """A batch that fails is retried message by message: the one that still fails is
    quarantined as processing_error, the others are stored, ingest keeps running."""
    settings = ControllerSettings(database_url=db.url)

    async def broken(session: Any, message: Any, context: Any) -> None:
        raise ValueError("index handler broke")

    ingest = Ingest(
        db,
        settings,
        CalloutService(settings),
        metrics=ControllerMetrics(),
        handlers={"recording_index": broken},
    )
    task = asyncio.create_task(ingest.run(), name="ingest-writer")
    try:
        cam = UnitVoice("cam-05")
        topics = settings.topics
        good = [cam.heartbeat(), cam.heartbeat()]
        bad = cam.make(RecordingIndex, segments=[])
        for message in (good[0], bad, good[1]):
            ingest.submit_raw(topics.unit("cam-05", channel_for(message)), encode(message))
        await asyncio.wait_for(ingest.idle(), 10)
        assert ingest.stored == 2 and ingest.quarantined == 1
        async with db.session() as session:
            row = (await session.execute(select(QuarantinedMessage))).scalar_one()
        assert row.reason == "processing_error" and "index handler broke" in row.detail
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
