"""The durable outbox on real SQLite files: seq allocation, persistence, bound and drops."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.errors import AgentError
from edge_agent.link.outbox import MessageClass, Outbox, OutboxError, class_for
from protocol.faults import FaultCode
from protocol.messages import Envelope, Event, FaultRaised, Heartbeat, PowerStatus, decode
from protocol.topics import Channel, Topics

UNIT = "cam-01"
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def heartbeat(seq: int) -> Heartbeat:
    return Heartbeat(
        unit_id=UNIT, seq=seq, sent_at=NOW, boot_id="b1", recording=True, gate_open=True
    )


def power(seq: int) -> PowerStatus:
    return PowerStatus(
        unit_id=UNIT, seq=seq, sent_at=NOW, boot_id="b1", source="mains", on_battery=False
    )


def fault(seq: int) -> Event:
    return Event(
        unit_id=UNIT,
        seq=seq,
        sent_at=NOW,
        boot_id="b1",
        at=NOW,
        event=FaultRaised(code=FaultCode.FROZEN, detail=f"fault {seq}"),
    )


def kinds(box: Outbox) -> list[tuple[int, str]]:
    return [(i.seq, decode(i.payload).kind) for i in box.pending(limit=10_000)]


def test_seq_is_monotonic_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with Outbox.open(path) as box:
        first = [box.enqueue(heartbeat).seq for _ in range(5)]
        state_seq = box.next_seq()
        assert first == [1, 2, 3, 4, 5]
        assert state_seq == 6
        box.ack([1, 2])
    with Outbox.open(path) as box:
        assert box.enqueue(fault).seq == 7
        assert [i.seq for i in box.pending()] == [3, 4, 5, 7]
        assert box.depth() == 4


def test_item_carries_topic_payload_class_and_retain(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "o.sqlite", topics=Topics("council/v1")) as box:
        sent = box.enqueue(fault)
        item = box.pending()[0]
    assert item.topic == "council/v1/unit/cam-01/event"
    assert decode(item.payload) == sent
    assert item.message_class is MessageClass.ESSENTIAL
    assert item.retain is False
    assert item.created_at > 0


def test_builder_that_fails_consumes_no_seq(tmp_path: Path) -> None:
    def broken(seq: int) -> Envelope:
        raise RuntimeError("cannot build")

    with Outbox.open(tmp_path / "o.sqlite") as box:
        with pytest.raises(RuntimeError):
            box.enqueue(broken)
        with pytest.raises(ValueError, match="ignored its seq"):
            box.enqueue(lambda seq: heartbeat(seq + 1))
        assert box.depth() == 0
        assert box.enqueue(heartbeat).seq == 1


def test_default_classes() -> None:
    assert class_for(Channel.HEARTBEAT) is MessageClass.HEARTBEAT
    assert class_for(Channel.POWER) is MessageClass.TELEMETRY
    for channel in (Channel.EVENT, Channel.CMD_ACK, Channel.SELFTEST, Channel.INDEX):
        assert class_for(channel) is MessageClass.ESSENTIAL


def test_full_outbox_drops_heartbeats_then_telemetry_before_faults(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with Outbox.open(path, max_rows=6) as box:
        box.enqueue(heartbeat)  # 1
        box.enqueue(fault)  # 2
        box.enqueue(power)  # 3
        box.enqueue(heartbeat)  # 4
        box.enqueue(fault)  # 5
        box.enqueue(power)  # 6 -> full
        box.enqueue(fault)  # 7 drops heartbeat 1
        box.enqueue(fault)  # 8 drops heartbeat 4
        assert kinds(box) == [(2, "event"), (3, "power"), (5, "event"), (6, "power"),
                              (7, "event"), (8, "event")]  # fmt: skip
        box.enqueue(fault)  # 9 drops power 3: no heartbeat left
        # A new heartbeat is itself the least important message: it is the one dropped.
        box.enqueue(heartbeat)  # 10
        assert kinds(box) == [(2, "event"), (5, "event"), (6, "power"), (7, "event"),
                              (8, "event"), (9, "event")]  # fmt: skip
        assert box.dropped_by_class() == {
            MessageClass.HEARTBEAT: 3,
            MessageClass.TELEMETRY: 1,
            MessageClass.ESSENTIAL: 0,
        }
        assert box.depth() == 6
        assert box.dropped() == box.dropped_since_open() == 4
    # Drops survive a restart; "since open" starts again from zero.
    with Outbox.open(path, max_rows=6) as box:
        assert box.dropped() == 4
        assert box.dropped_since_open() == 0
        box.enqueue(power)  # drops power 6 (no heartbeat stored)
        box.enqueue(power)  # drops the older of the two stored power reports
        assert box.dropped_since_open() == 2
        assert [k for _, k in kinds(box)] == ["event"] * 5 + ["power"]


def test_only_faults_left_drops_the_oldest_fault(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "o.sqlite", max_rows=3) as box:
        for _ in range(5):
            box.enqueue(fault)
        assert [i.seq for i in box.pending()] == [3, 4, 5]
        assert box.dropped_by_class()[MessageClass.ESSENTIAL] == 2


def test_caller_can_raise_the_class_of_a_message(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "o.sqlite", max_rows=2) as box:
        box.enqueue(power, MessageClass.ESSENTIAL)  # mains lost: a change, not periodic
        box.enqueue(power)
        box.enqueue(fault)
        assert [(i.seq, i.message_class) for i in box.pending()] == [
            (1, MessageClass.ESSENTIAL),
            (3, MessageClass.ESSENTIAL),
        ]


def test_ack_ignores_unknown_seqs_and_counts_removed(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "o.sqlite") as box:
        for _ in range(3):
            box.enqueue(heartbeat)
        assert box.ack([1, 3, 99]) == 2
        assert box.ack([1]) == 0
        assert box.ack([]) == 0
        assert [i.seq for i in box.pending()] == [2]
        assert box.pending(after_seq=2) == []
        assert box.oldest_created_at() is not None


def test_each_open_is_a_new_boot(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with Outbox.open(path) as a:
        first = a.boot_id
        assert a.boots == 1
    with Outbox.open(path) as b:
        assert b.boot_id != first
        assert b.boots == 2
    stored = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key='boot_id'")
    assert stored.fetchone()[0] == b.boot_id


def test_concurrent_enqueues_get_unique_seqs(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "o.sqlite") as box:

        def producer(build: Callable[[int], Envelope]) -> None:
            for _ in range(50):
                box.enqueue(build)

        threads = [threading.Thread(target=producer, args=(b,)) for b in (heartbeat, fault)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seqs = [i.seq for i in box.pending(limit=1000)]
        assert seqs == list(range(1, 101))
        assert box.depth() == 100


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OutboxError, match="not a usable outbox database") as info:
        Outbox.open(path)
    assert isinstance(info.value, AgentError)
    assert info.value.path == path


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutboxError, match="cannot open"):
        Outbox.open(blocker / "sub" / "o.sqlite")


def test_wal_and_full_sync_are_on(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with Outbox.open(path) as box:
        box.enqueue(heartbeat)
        conn = box._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
