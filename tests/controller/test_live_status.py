"""Units' live status rows as ingest reads and writes them (`controller.store.live_status`),
on SQLite and PostgreSQL: what is written reads back the same, and only what changed is
written again."""

from __future__ import annotations

from datetime import timedelta

from controller.store import Database
from controller.store.fleet import UnitStatus
from controller.store.live_status import load_statuses, write_statuses
from protocol.messages import utcnow


async def test_a_status_reads_back_as_written_and_only_changes_are_written(db: Database) -> None:
    now = utcnow()
    seen = now - timedelta(seconds=3)
    async with db.session() as session:
        statuses = await load_statuses(session, ["cam-02", "cam-01"], registered_at=now)
        assert sorted(statuses) == ["cam-01", "cam-02"]  # registered from nothing
        cam = statuses["cam-01"]
        assert cam.reported_faults == [] and cam.messages == 0 and cam.last_seq is None
        cam.assign(
            {
                "reported_faults": ["blur", "tamper"],
                "recording": True,
                "recording_reason": "x" * 900,
                "outbox_depth": 4,
            }
        )
        cam.last_seen_at, cam.last_seq, cam.messages = seen, 41, 1
        assert await write_statuses(session, statuses.values()) == 1  # cam-02: as created
        await session.commit()

    async with db.session() as session:
        again = await load_statuses(session, ["cam-01"], registered_at=now)
        cam = again["cam-01"]
        assert cam.reported_faults == ["blur", "tamper"]
        assert cam.recording is True and len(cam.recording_reason) == 500  # cut to fit
        assert cam.last_seen_at == seen and cam.last_seq == 41 and cam.outbox_depth == 4
        # The same values again change nothing, so nothing is written.
        cam.assign(
            {
                "reported_faults": ["blur", "tamper"],
                "recording": True,
                "recording_reason": "x" * 900,
                "outbox_depth": 4,
            }
        )
        cam.last_seen_at = seen
        assert cam.changed == frozenset()
        assert await write_statuses(session, again.values()) == 0
        # A cleared fault list and a new time are written.
        cam.assign({"reported_faults": [], "outbox_depth": 4})
        cam.last_seen_at = now
        assert cam.changed == {"reported_faults", "last_seen_at"}
        assert await write_statuses(session, again.values()) == 1
        await session.commit()

    async with db.session() as session:
        row = await session.get(UnitStatus, "cam-01")
        assert row is not None
        assert row.reported_faults == [] and row.last_seen_at == now and row.messages == 1
        other = await session.get(UnitStatus, "cam-02")
        assert other is not None and other.reported_faults == []
