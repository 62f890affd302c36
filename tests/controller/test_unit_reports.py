"""The controller keeps what units report beyond their live state, through the real broker
and ingest, on SQLite and PostgreSQL:

- recording-index reports, checked against the unit's signing key (imported with the
  inventory) and the chain the controller already holds: verified, a gap filled late,
  forged and rewritten reports kept flagged and raised as a fault; redeliveries stored once;
- command acknowledgements matched to the commands sent, unknown ones kept flagged;
- uptime, dropped messages and position from the heartbeat, in the JSON API and the unit
  page in words (position and the index for the control room only).
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from controller.accounts import Accounts, AuthSettings
from controller.api.app import create_app
from controller.api.auth import Role
from controller.config import ControllerSettings
from controller.fleet.command_log import command_state, recent_commands, unmatched_acks
from controller.fleet.commands import send_command
from controller.service import ControllerService
from controller.store import Database
from controller.store.audit import AuditEntry
from controller.store.fleet import Callout, Unit, UnitFault, UnitStatus
from controller.store.reports import (
    ChainEntryRecord,
    CheckpointRecord,
    CommandAckRecord,
    CommandRecord,
    SegmentRecord,
)
from edge_agent.recorder.index import SegmentIndex
from protocol.messages import CommandAck, Envelope, RecordingIndex, SegmentSummary, SelfTestNow
from protocol.segment.format import SegmentSummaryInfo
from protocol.segment.manifest import Checkpoint
from protocol.topics import Topics
from tests.controller.conftest import UnitVoice, eventually, running_controller, send
from tests.harness import MosquittoBroker
from tests.harness.fleet import mqtt_client

UNIT = "cam-01"
FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PASSWORD = "correct horse battery staple"
CONTRACTOR = "Test Maintenance Ltd"  # every unit of the test fleet


def unit_key(broker: MosquittoBroker, unit_id: str = UNIT) -> Ed25519PrivateKey:
    path = broker.fleet.layout.bundle_dir(unit_id) / "unit-signing.key"
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


class UnitIndex:
    """A unit's real segment index (the agent's own code) and the reports it would send."""

    def __init__(self, path: Path, key: Ed25519PrivateKey, voice: UnitVoice) -> None:
        self.index = SegmentIndex(path, unit_id=voice.unit_id, signing_key=key)
        self.voice = voice
        self.reported = 0
        self.clock = datetime.now().astimezone() - timedelta(hours=2)

    def seal(self, count: int = 1) -> list[SegmentSummary]:
        made = []
        for _ in range(count):
            sid = f"{self.voice.unit_id}-{uuid.uuid4().hex[:12]}"
            start, self.clock = self.clock, self.clock + timedelta(minutes=1)
            info = SegmentSummaryInfo(
                segment_id=sid, unit_id=self.voice.unit_id, started_at=start, ended_at=self.clock,
                chunks=4, plaintext_bytes=4000, file_bytes=4200,
                file_sha256=hashlib.sha256(sid.encode()).hexdigest(), truncated=False,
            )  # fmt: skip
            digest = self.index.add(info)
            made.append(
                SegmentSummary(
                    segment_id=sid,
                    started_at=start,
                    ended_at=self.clock,
                    size=4200,
                    sha256=info.file_sha256,
                    chain_hash=digest,
                )
            )
        return made

    def report(self, segments: list[SegmentSummary], **changes: Any) -> Envelope:
        """The agent's report: the entries since the last one and a fresh checkpoint."""
        checkpoint = self.index.checkpoint()
        entries = self.index.chain(self.reported + 1, checkpoint.count)
        self.reported = checkpoint.count
        fields: dict[str, Any] = {
            "segments": segments,
            "entries": entries,
            "checkpoint": checkpoint,
        }
        fields.update(changes)
        return self.voice.make(RecordingIndex, **fields)

    def again(self, message: Envelope) -> Envelope:
        """The same report as a new message (a new seq): its content stored once."""
        assert isinstance(message, RecordingIndex)
        return self.voice.make(
            RecordingIndex,
            segments=message.segments,
            entries=message.entries,
            checkpoint=message.checkpoint,
        )


@asynccontextmanager
async def unit_link(
    db: Database, broker: MosquittoBroker, controller_settings: Callable[..., ControllerSettings]
) -> AsyncIterator[tuple[ControllerService, Any, Topics]]:
    settings = controller_settings(broker)
    async with (
        running_controller(settings, db) as service,
        mqtt_client(broker, UNIT) as client,
    ):
        yield service, client, broker.fleet.topics


async def stored(service: ControllerService, count: int) -> None:
    await eventually(lambda: service.ingest.stored >= count, within=10)
    await service.ingest.idle()


async def checkpoints(db: Database) -> list[CheckpointRecord]:
    async with db.session() as session:
        rows = await session.execute(select(CheckpointRecord).order_by(CheckpointRecord.id))
        return list(rows.scalars())


async def count(db: Database, model: Any) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_index_reports_verified_continued_and_a_gap_filled_late(
    db: Database,
    broker: MosquittoBroker,
    controller_settings: Callable[..., ControllerSettings],
    tmp_path: Path,
) -> None:
    voice = UnitVoice(UNIT)
    unit = UnitIndex(tmp_path / "index.sqlite", unit_key(broker), voice)
    async with unit_link(db, broker, controller_settings) as (service, client, topics):
        async with db.session() as session:
            known = await session.get(Unit, UNIT)
        expected = unit_key(broker).public_key().public_bytes_raw().hex()
        assert known is not None and known.signing_public_key == expected

        first = unit.report(unit.seal(2))
        await send(client, topics, first)
        await send(client, topics, unit.again(first))  # redelivered: stored once
        await send(client, topics, first)  # the very same message: a duplicate seq
        deleted = unit.index.mark_deleted(first.segments[0].segment_id, "retention")  # type: ignore[attr-defined]
        second = unit.report(unit.seal(1))
        await send(client, topics, second)
        await stored(service, 3)
        assert [c.status for c in await checkpoints(db)] == ["verified", "verified"]

        # A report lost on the way, then delivered late: a gap, then filled.
        third = unit.report(unit.seal(1))
        fourth = unit.report(unit.seal(1))
        await send(client, topics, fourth)
        await stored(service, 4)
        assert (await checkpoints(db))[-1].status == "gap"
        await send(client, topics, third)
        await stored(service, 5)

    rows = await checkpoints(db)
    assert [(c.count, c.status) for c in rows] == [
        (2, "verified"), (4, "verified"), (6, "verified"), (5, "verified"),
    ]  # fmt: skip
    assert all(c.problems == [] and c.claimed == [] for c in rows)
    async with db.session() as session:
        chain = list(
            (await session.execute(select(ChainEntryRecord).order_by(ChainEntryRecord.seq)))
            .scalars()
            .all()
        )
        segments = list((await session.execute(select(SegmentRecord))).scalars().all())
        fault = await session.get(UnitFault, (UNIT, "index_check_failed"))
        flagged = await session.scalar(
            select(func.count()).where(AuditEntry.action == "index.checkpoint_flagged")
        )
    assert [e.seq for e in chain] == [1, 2, 3, 4, 5, 6]
    assert [e.kind for e in chain] == ["segment", "segment", "deletion", "segment", "segment",
                                       "segment"]  # fmt: skip
    assert chain[2].chain_hash == deleted
    assert all(b.prev_hash == a.chain_hash for a, b in itertools.pairwise(chain))
    assert chain[-1].chain_hash == unit.index.head()[1]
    assert len(segments) == 5 and all(s.checkpoint_id is not None for s in segments)
    assert sorted(s.chain_seq or 0 for s in segments) == [1, 2, 4, 5, 6]
    assert fault is None and flagged == 0


async def test_forged_rewritten_and_tampered_reports_are_kept_flagged_and_raised(
    db: Database,
    broker: MosquittoBroker,
    controller_settings: Callable[..., ControllerSettings],
    tmp_path: Path,
) -> None:
    voice = UnitVoice(UNIT)
    key = unit_key(broker)
    unit = UnitIndex(tmp_path / "index.sqlite", key, voice)
    async with unit_link(db, broker, controller_settings) as (service, client, topics):
        await send(client, topics, unit.report(unit.seal(2)))
        await stored(service, 1)

        # 1. Signed with another key than the unit's.
        genuine = unit.report(unit.seal(1))
        assert isinstance(genuine, RecordingIndex) and genuine.checkpoint is not None
        cp = genuine.checkpoint
        stranger = Checkpoint.create(
            Ed25519PrivateKey.generate(), unit_id=UNIT, count=cp.count, head=cp.head,
            signed_at=cp.signed_at,
        )  # fmt: skip
        forged = unit.again(genuine).model_copy(update={"checkpoint": stranger})
        await send(client, topics, forged)
        await send(client, topics, unit.again(forged))  # redelivered: kept once

        # 2. A rewritten history, signed with the unit's own key: a new index from scratch.
        rewritten = UnitIndex(tmp_path / "rewritten.sqlite", key, voice)
        await send(client, topics, rewritten.report(rewritten.seal(2)))

        # 3. An entry edited after it was chained (its hash kept).
        edited = unit.again(genuine)
        assert isinstance(edited, RecordingIndex)
        entry = edited.entries[0]
        bad_entry = entry.model_copy(update={"body": {**entry.body, "size": 1}})
        await send(client, topics, edited.model_copy(update={"entries": [bad_entry]}))

        # 4. A summary that says something else than the chain entry it points to.
        other = genuine.segments[0].model_copy(update={"sha256": "0" * 64})
        await send(client, topics, unit.again(genuine).model_copy(update={"segments": [other]}))
        await stored(service, 6)

        # The genuine report still arrives and continues the held chain.
        await send(client, topics, genuine)
        await stored(service, 7)

    rows = await checkpoints(db)
    assert [c.status for c in rows] == [
        "verified", "bad_signature", "broken_chain", "broken_chain", "broken_chain", "verified",
    ]  # fmt: skip
    bad_key, history, tampered, summary = rows[1:5]
    assert "signature does not verify" in bad_key.problems[0]
    assert bad_key.claimed and bad_key.claimed[0]["chain_hash"] == cp.head
    assert any("history was rewritten" in p for p in history.problems)
    assert any("does not match its chain hash" in p for p in tampered.problems)
    assert any("summary and chain entry differ in ['sha256']" in p for p in summary.problems)
    async with db.session() as session:
        chain = (await session.execute(select(ChainEntryRecord.seq))).scalars().all()
        fault = await session.get(UnitFault, (UNIT, "index_check_failed"))
        callouts = list(
            (
                await session.execute(
                    select(Callout).where(Callout.fault_code == "index_check_failed")
                )
            ).scalars()
        )
        audits = list(
            (
                await session.execute(
                    select(AuditEntry).where(AuditEntry.action == "index.checkpoint_flagged")
                )
            ).scalars()
        )
    assert sorted(chain) == [1, 2, 3]  # only what verified joined the controller's chain
    assert fault is not None and fault.active and fault.origin == "controller"
    assert fault.priority == "P1"
    assert len(callouts) == 1 and callouts[0].priority == "P1" and callouts[0].raise_count == 4
    assert "signature" not in callouts[0].title.lower() or callouts[0].title
    assert len(audits) == 4 and audits[0].subject == f"unit:{UNIT}"


async def test_command_acks_are_kept_against_their_commands(
    db: Database,
    broker: MosquittoBroker,
    controller_settings: Callable[..., ControllerSettings],
) -> None:
    voice = UnitVoice(UNIT)
    async with unit_link(db, broker, controller_settings) as (service, client, topics):
        async with db.session() as session:
            asked = await send_command(
                service.link, session, UNIT, SelfTestNow(), actor="operator:otto"
            )
            refused = await send_command(
                service.link, session, UNIT, SelfTestNow(), actor="operator:otto"
            )
            await session.commit()
        done_id, refused_id = asked.body.command_id, refused.body.command_id

        def ack(command_id: str, status: str, **fields: Any) -> Envelope:
            return voice.make(CommandAck, command_id=command_id, status=status, **fields)

        await send(client, topics, ack(done_id, "accepted"))
        await send(client, topics, ack(done_id, "done", result={"verdict": "pass"}))
        await send(client, topics, ack(done_id, "done", result={"verdict": "pass"}))  # again
        await send(client, topics, ack(refused_id, "rejected", reason="expired: too late"))
        await send(client, topics, ack("never-sent-1", "done"))
        await stored(service, 5)

    assert await count(db, CommandRecord) == 2
    assert await count(db, CommandAckRecord) == 4
    async with db.session() as session:
        record = await session.get(CommandRecord, done_id)
        views = {c.command_id: c for c in await recent_commands(session, UNIT, now=voice_now())}
        strays = await unmatched_acks(session, UNIT)
    assert record is not None and record.action == "selftest_now"
    assert record.issued_by == "operator:otto" and record.expires_at > record.issued_at
    done = views[done_id]
    assert (done.state, done.state_words) == ("done", "done")
    assert [a.status for a in done.acks] == ["accepted", "done"]
    assert done.acks[-1].result == {"verdict": "pass"}
    assert views[refused_id].state_words == "refused by the unit: expired: too late"
    assert [(a.command_id, a.status) for a in strays] == [("never-sent-1", "done")]


def voice_now() -> datetime:
    return datetime.now().astimezone()


def test_a_command_without_an_answer_waits_then_expires() -> None:
    now = voice_now()
    assert command_state([], now + timedelta(minutes=1), now)[0] == "sent"
    state, words = command_state([], now - timedelta(seconds=1), now)
    assert state == "expired" and words == "expired without an answer from the unit"


@asynccontextmanager
async def signed_in(app: Any, username: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(base_url="http://t", transport=transport, timeout=10) as c:
        answer = await c.post("/api/login", json={"username": username, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        c.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        yield c


async def test_heartbeat_facts_and_reports_in_the_api_and_on_the_unit_page(
    db: Database,
    broker: MosquittoBroker,
    controller_settings: Callable[..., ControllerSettings],
    tmp_path: Path,
) -> None:
    voice = UnitVoice(UNIT)
    uptime = timedelta(days=3, hours=4, minutes=2).total_seconds()
    unit = UnitIndex(tmp_path / "index.sqlite", unit_key(broker), voice)
    async with unit_link(db, broker, controller_settings) as (service, client, topics):
        await send(
            client,
            topics,
            voice.heartbeat(uptime_s=uptime, outbox_dropped=12, position=(51.50123, -0.12345)),
        )
        await send(client, topics, unit.report(unit.seal(1)))
        forged = unit.report(unit.seal(1))
        assert isinstance(forged, RecordingIndex) and forged.checkpoint is not None
        stranger = forged.checkpoint.model_copy(
            update={"signature": forged.checkpoint.signature[::-1]}
        )
        await send(client, topics, forged.model_copy(update={"checkpoint": stranger}))
        async with db.session() as session:
            command = await send_command(service.link, session, UNIT, SelfTestNow(), actor="otto")
            await session.commit()
        await send(client, topics, voice.make(CommandAck, command_id=command.body.command_id,
                                              status="accepted"))  # fmt: skip
        await send(client, topics, voice.make(CommandAck, command_id="stray-7", status="done"))
        await stored(service, 5)

    async with db.session() as session:
        status = await session.get(UnitStatus, UNIT)
    assert status is not None
    assert (status.uptime_s, status.outbox_dropped) == (uptime, 12)
    assert (status.position_lat, status.position_lon) == (51.50123, -0.12345)
    assert status.temperature_c is None and status.clock_offset_s is None

    accounts = Accounts(db, FAST)
    await accounts.add_user("mia", Role.MANAGER, PASSWORD, contractor=None, actor="test")
    await accounts.add_user("carl", Role.CONTRACTOR, PASSWORD, contractor=CONTRACTOR, actor="test")
    app = create_app(ControllerSettings(database_url=db.url), db, auth=FAST)
    async with signed_in(app, "mia") as mia:
        overview = (await mia.get("/api/units")).json()
        (summary,) = [u for u in overview["units"] if u["unit_id"] == UNIT]
        assert summary["uptime_s"] == uptime and summary["outbox_dropped"] == 12
        assert summary["position"] == [51.50123, -0.12345]
        detail = (await mia.get(f"/api/units/{UNIT}")).json()
        assert detail["status"]["outbox_dropped"] == 12
        assert detail["status"]["position_lat"] == 51.50123
        assert [c["state"] for c in detail["commands"]] == ["accepted"]
        assert [a["command_id"] for a in detail["unmatched_acks"]] == ["stray-7"]
        index = detail["recording_index"]
        assert index["checkpoints"] == {"verified": 1, "bad_signature": 1}
        assert index["verified_head"]["count"] == 1 and index["has_signing_key"] is True
        assert index["flagged"][0]["status"] == "bad_signature"
        footage = (await mia.get(f"/api/units/{UNIT}/footage")).json()
        assert [s["checkpoint_status"] for s in footage["segments"]] == [
            "bad_signature", "verified",
        ]  # fmt: skip
        page = (await mia.get(f"/units/{UNIT}")).text
        assert 'Agent up for</dt><dd data-testid="uptime">3 days 4 hours' in page
        assert "The unit dropped 12 messages since its agent started" in page
        assert "51.50123, -0.12345" in page and "openstreetmap.org/?mlat=51.501230" in page
        assert "accepted by the unit, in progress" in page and "Self-test now" in page
        assert "stray-7" in page
        assert "the unit&#39;s signature on its recording index does not verify" in page
        assert "°C" not in page and "Clock</dt>" not in page  # not measured: not shown
    async with signed_in(app, "carl") as carl:
        overview = (await carl.get("/api/units")).json()
        (summary,) = [u for u in overview["units"] if u["unit_id"] == UNIT]
        assert summary["uptime_s"] == uptime and summary["position"] is None
        detail = (await carl.get(f"/api/units/{UNIT}")).json()
        assert detail["status"]["outbox_dropped"] == 12 and "position_lat" not in detail["status"]
        assert detail["recording_index"] is None and detail["unmatched_acks"] is None
        assert [c["action"] for c in detail["commands"]] == ["selftest_now"]
        page = (await carl.get(f"/units/{UNIT}")).text
        assert "3 days 4 hours" in page and "51.50123" not in page
        assert 'id="index-h"' not in page and "stray-7" not in page
