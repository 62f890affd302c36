"""Retention and evidential holds: deletion by age under a controllable clock, holds that
survive it, and a small real filesystem (a 20 MB tmpfs) filled by the recorder: unheld
footage purged oldest first, held footage kept, and recording stopped with a storage fault
when held footage alone fills the disk."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.capture import open_source
from edge_agent.recorder.holds import HoldConflict, HoldError, HoldStore, UnknownHold
from edge_agent.recorder.index import SegmentIndex
from edge_agent.recorder.recorder import RecorderState, StopReason
from edge_agent.recorder.retention import (
    Retention,
    RetentionPolicy,
    SweepReport,
    retention_loop,
)
from protocol.evidence_keys import EvidencePrivateKey, generate_evidence_key
from protocol.faults import FaultCode
from protocol.segment.format import segment_file_name
from protocol.segment.reader import read_segment
from protocol.segment.writer import SegmentWriter
from tests.edge_agent.test_recorder import (
    CLIP,
    UNIT,
    evidence_key,
    make_recorder,
    require_clip,
    wait_for,
)
from tests.harness.binaries import missing

__all__ = ["evidence_key"]

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def write_segment(
    data_dir: Path, index: SegmentIndex, key: EvidencePrivateKey, start: datetime, name: str
) -> str:
    """A real encrypted segment file of one minute starting at `start`, indexed."""
    with (data_dir / segment_file_name(name)).open("xb") as f:
        writer = SegmentWriter(
            f, unit_id=UNIT, segment_id=name, evidence_key=key.public_key(), started_at=start
        )
        writer.write(os.urandom(50_000))
        summary = writer.finish(ended_at=start + timedelta(minutes=1))
    index.add(summary)
    return name


def test_holds_are_placed_released_and_kept(tmp_path: Path) -> None:
    clock = Clock(T0)
    store = HoldStore(tmp_path / "holds.sqlite", clock=clock)
    hold = store.place("inc-1", T0, T0 + timedelta(hours=1), "CAD 4471 / 01-03")
    assert hold.active and hold.placed_at == T0
    assert store.place("inc-1", T0, T0 + timedelta(hours=1), "CAD 4471 / 01-03") == hold
    with pytest.raises(HoldConflict):
        store.place("inc-1", T0, T0 + timedelta(hours=2), "CAD 4471 / 01-03")
    with pytest.raises(HoldConflict):
        store.place("inc-2", T0, T0, "empty range")
    with pytest.raises(HoldConflict, match="timezone"):
        store.place("inc-3", T0.replace(tzinfo=None), T0 + timedelta(hours=1), "naive")
    # Edges count: footage touching the held range is held.
    assert store.is_held(T0 - timedelta(minutes=1), T0)
    assert store.is_held(T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    assert not store.is_held(T0 - timedelta(minutes=2), T0 - timedelta(minutes=1))
    clock.now = T0 + timedelta(days=2)
    released = store.release("inc-1")
    assert not released.active and released.released_at == clock.now
    assert store.release("inc-1") == released
    assert not store.is_held(T0, T0 + timedelta(minutes=1))
    with pytest.raises(UnknownHold):
        store.release("nope")
    with pytest.raises(HoldConflict, match="released"):
        store.place("inc-1", T0, T0 + timedelta(hours=1), "again")
    store.close()
    reopened = HoldStore(tmp_path / "holds.sqlite")
    assert reopened.get("inc-1") == released and reopened.active() == []
    reopened.close()
    assert issubclass(HoldConflict, HoldError)


def test_old_footage_goes_held_footage_stays(tmp_path: Path) -> None:
    key = generate_evidence_key()
    clock = Clock(T0)
    index = SegmentIndex(tmp_path / "index.sqlite", unit_id=UNIT, clock=clock)
    holds = HoldStore(tmp_path / "holds.sqlite", clock=clock)
    ages = {"d40": 40, "d35": 35, "d32": 32, "d20": 20, "d1": 1}
    for name, days in ages.items():
        write_segment(tmp_path, index, key, T0 - timedelta(days=days), name)
    incident = T0 - timedelta(days=32) + timedelta(seconds=30)  # inside d32's minute
    holds.place("case-77", incident, incident + timedelta(seconds=10), "op Tern")
    retention = Retention(
        index=index,
        holds=holds,
        data_dir=tmp_path,
        policy=RetentionPolicy(max_age=timedelta(days=31), min_free_bytes=0),
        clock=clock,
    )

    report = retention.sweep()
    assert report.deleted_for_age == ["d40", "d35"] and report.held == ["d32"]
    assert not report.deleted_for_space and not report.storage_full
    live = {e.segment_id for e in index.entries(include_deleted=False)}
    assert live == {"d32", "d20", "d1"}
    for name in ages:
        assert (tmp_path / segment_file_name(name)).exists() == (name in live)
    gone = {e.segment_id: e for e in index.entries() if e.deleted_at is not None}
    assert {e.deleted_reason for e in gone.values()} == {"retention"}
    assert gone["d40"].deleted_at == T0

    clock.now = T0 + timedelta(days=15)  # d20 is now 35 days old
    assert retention.sweep().deleted_for_age == ["d20"]
    assert retention.sweep().deleted == []  # nothing twice
    holds.release("case-77")
    assert retention.sweep().deleted_for_age == ["d32"]
    assert [e.segment_id for e in index.entries(include_deleted=False)] == ["d1"]
    with (tmp_path / segment_file_name("d1")).open("rb") as f:
        assert read_segment(f, key).plaintext
    assert index.verify_chain().ok and index.verify(tmp_path).clean
    index.close()
    holds.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 20 MB filesystem (tmpfs): needs root, as in CI."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        reason = f"cannot mount a 20 MB tmpfs: {result.stderr.strip()}"
        missing(reason)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


async def test_full_disk_purges_unheld_oldest_first_then_stops_for_held(
    small_disk: Path, evidence_key: EvidencePrivateKey
) -> None:
    require_clip()
    floor = 5 * 1024 * 1024
    holds = HoldStore(small_disk / "holds.sqlite")
    faults: list[tuple[FaultCode, str]] = []
    source = open_source(f"file:{CLIP}?realtime=0", sample_interval=None)
    recorder, index, sealed, _ = make_recorder(
        source,
        small_disk,
        evidence_key,
        config={"segment_seconds": 2.0, "space_check_seconds": 0.0},
        on_storage_fault=lambda code, detail: faults.append((code, detail)),
    )
    retention = Retention(
        index=index,
        holds=holds,
        data_dir=small_disk,
        policy=RetentionPolicy(min_free_bytes=floor),
    )
    recorder.retention = retention

    # A few segments, then an incident: the first two are held.
    await recorder.start()
    await wait_for(lambda: len(sealed) >= 4, 30, "first segments")
    await recorder.stop()
    first, second = index.entries()[:2]
    holds.place("inc-9", first.started_at, second.ended_at - timedelta(microseconds=1), "CAD 9")

    # Recording goes on and fills the disk: unheld footage goes, oldest first.
    await recorder.start()
    await wait_for(
        lambda: sum(e.deleted_at is not None for e in index.entries()) >= 10, 60, "purges"
    )
    await recorder.stop()
    entries = index.entries()
    deleted = [e for e in entries if e.deleted_at is not None]
    live = [e for e in entries if e.deleted_at is None]
    assert {first.segment_id, second.segment_id} <= {e.segment_id for e in live}
    assert all(e.deleted_reason == "disk_pressure" for e in deleted)
    unheld_live = [e for e in live if e.segment_id not in (first.segment_id, second.segment_id)]
    assert max(e.started_at for e in deleted) < min(e.started_at for e in unheld_live)
    assert retention.free_bytes() >= floor - 512 * 1024  # at most a fragment under
    assert not faults

    # Everything on the disk is now evidence: recording stops rather than delete any.
    until = datetime.now(UTC) + timedelta(days=1)  # and all it records from now on
    holds.place("sar-3", first.started_at - timedelta(days=1), until, "SAR")
    n_deleted = len(deleted)
    await recorder.start()
    await wait_for(lambda: recorder.status.reason is StopReason.STORAGE_FULL, 60, "full")
    status = recorder.status
    assert status.state is RecorderState.STOPPED
    await wait_for(lambda: bool(faults), 5, "the storage fault")
    assert faults[0][0] is FaultCode.STORAGE_LOW
    entries = index.entries()
    assert sum(e.deleted_at is not None for e in entries) == n_deleted, "no evidence deleted"
    assert 0 < retention.free_bytes() < floor + 2 * 1024 * 1024  # within a segment of it
    for entry in entries:
        if entry.deleted_at is None:
            with (small_disk / entry.file_name).open("rb") as f:
                assert read_segment(f, evidence_key, expected_unit=UNIT).plaintext

    # Starting again changes nothing while the holds stand...
    await recorder.start()
    await wait_for(lambda: recorder.status.reason is StopReason.STORAGE_FULL, 10, "full")
    await wait_for(lambda: len(faults) == 2, 5, "the fault raised again")
    # ...and recording resumes once the broad hold is released.
    holds.release("sar-3")
    await recorder.start()
    await wait_for(lambda: recorder.status.state is RecorderState.RECORDING, 30, "resumed")
    await recorder.stop()
    assert index.verify_chain().ok and index.verify(small_disk).clean
    index.close()
    holds.close()


async def test_disk_full_without_retention_stops_and_recovers(
    small_disk: Path, evidence_key: EvidencePrivateKey
) -> None:
    """No retention configured: the disk fills to the last byte (ENOSPC). Recording stops
    with a storage fault instead of crashing; after space is freed, the next start seals
    what was cut and the index is consistent."""
    require_clip()
    faults: list[tuple[FaultCode, str]] = []
    source = open_source(f"file:{CLIP}?realtime=0", sample_interval=None)
    recorder, index, _, _ = make_recorder(
        source,
        small_disk,
        evidence_key,
        config={"segment_seconds": 2.0},
        on_storage_fault=lambda code, detail: faults.append((code, detail)),
    )
    await recorder.start()
    await wait_for(lambda: recorder.status.state is RecorderState.STOPPED, 60, "disk full")
    status = recorder.status
    assert status.reason in (StopReason.STORAGE_FULL, StopReason.STORAGE_FAILED)
    await wait_for(lambda: bool(faults), 5, "a storage fault")
    assert faults[0][0] in (FaultCode.STORAGE_LOW, FaultCode.STORAGE_FAILED)
    await recorder.stop()

    removed = index.entries()[:4]
    for entry in removed:  # an engineer frees some space by hand
        (small_disk / entry.file_name).unlink()
    recovered = await asyncio.to_thread(recorder.recover)  # what the next start does
    assert index.verify(small_disk).clean
    gone = {e.segment_id: e.deleted_reason for e in index.entries() if e.deleted_at}
    assert set(gone) == {e.segment_id for e in removed}
    assert index.verify_chain().ok
    for entry in index.entries(include_deleted=False):
        with (small_disk / entry.file_name).open("rb") as f:
            read_segment(f, evidence_key, expected_unit=UNIT)
    assert all(s.truncated for s, _ in recovered)
    # The segment the full disk cut short was sealed as truncated (at once, or at the
    # restart) and keeps its complete chunks.
    assert any(e.truncated for e in index.entries(include_deleted=False))
    index.close()


async def test_retention_loop_sweeps_until_cancelled(tmp_path: Path) -> None:
    key = generate_evidence_key()
    clock = Clock(T0)
    index = SegmentIndex(tmp_path / "index.sqlite", unit_id=UNIT, clock=clock)
    holds = HoldStore(tmp_path / "holds.sqlite")
    write_segment(tmp_path, index, key, T0 - timedelta(days=1), "young")
    retention = Retention(index=index, holds=holds, data_dir=tmp_path, clock=clock)
    reports: list[SweepReport] = []
    task = asyncio.create_task(
        retention_loop(retention, interval=0.02, on_report=reports.append), name="retention"
    )
    await wait_for(lambda: len(reports) >= 2, 5, "sweeps")
    assert reports[-1].deleted == []
    clock.now = T0 + timedelta(days=40)
    await wait_for(lambda: bool(reports[-1].deleted_for_age), 5, "an age deletion")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert index.entries(include_deleted=False) == []
    index.close()
    holds.close()
