"""What each recording-index report carries: a fresh signed checkpoint and the chain entries
since the previous report (deletions included), continued across an agent restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.recorder.index import SegmentIndex
from edge_agent.recording_control import MAX_REPORTED_ENTRIES, ChainReports
from protocol.segment.format import SegmentSummaryInfo
from protocol.segment.manifest import check_chain

UNIT = "unit-7"


def add(index: SegmentIndex, n: int) -> None:
    start = datetime.now(UTC) - timedelta(days=1)
    for _ in range(n):
        i = index.head()[0]
        index.add(
            SegmentSummaryInfo(
                segment_id=f"seg-{i:05d}",
                unit_id=UNIT,
                started_at=start + timedelta(minutes=i),
                ended_at=start + timedelta(minutes=i + 1),
                chunks=1,
                plaintext_bytes=10,
                file_bytes=20,
                file_sha256=f"{i:064x}",
                truncated=False,
            )
        )


def test_each_report_carries_the_entries_since_the_last(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "index.sqlite"
    with SegmentIndex(path, unit_id=UNIT, signing_key=key) as index:
        reports = ChainReports(index)
        add(index, 2)
        checkpoint, entries = reports.next_run()
        assert [e.seq for e in entries] == [1, 2] and checkpoint.count == 2
        assert check_chain(entries, unit_id=UNIT) == []
        assert checkpoint.verify(key.public_key()) and checkpoint.head == entries[-1].chain_hash
        index.mark_deleted("seg-00000", "retention")
        add(index, 1)
        checkpoint, entries = reports.next_run()
        assert [(e.seq, e.body["kind"]) for e in entries] == [(3, "deletion"), (4, "segment")]
        assert entries[0].prev_hash == index.chain(2, 2)[0].chain_hash
        _, entries = reports.next_run()  # nothing new: a checkpoint of the same head
        assert entries == []
    with SegmentIndex(path, unit_id=UNIT, signing_key=key) as index:  # the agent restarted
        add(index, 1)
        checkpoint, entries = ChainReports(index).next_run()
        assert [e.seq for e in entries] == [5] and checkpoint.count == 5


def test_a_report_carries_at_most_the_newest_entries(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    with SegmentIndex(tmp_path / "index.sqlite", unit_id=UNIT, signing_key=key) as index:
        add(index, MAX_REPORTED_ENTRIES + 5)
        checkpoint, entries = ChainReports(index).next_run()
    assert len(entries) == MAX_REPORTED_ENTRIES
    assert entries[0].seq == 6 and entries[-1].seq == checkpoint.count == MAX_REPORTED_ENTRIES + 5
