"""The unit's segment index: chain, deletions, checkpoints, manifest export, and
reconciliation with real segment files after a crash."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.errors import AgentError
from edge_agent.recorder.errors import CheckpointError, DuplicateSegment, SegmentIndexError
from edge_agent.recorder.index import SegmentIndex
from protocol.evidence_keys import EvidencePrivateKey, generate_evidence_key
from protocol.segment.format import SegmentSummaryInfo
from protocol.segment.manifest import GENESIS_HASH, SegmentManifest, chain_hash, verify_manifest
from protocol.segment.reader import read_segment
from protocol.segment.writer import SegmentWriter

T0 = datetime(2025, 3, 1, 7, 0, tzinfo=UTC)
UNIT = "unit-7"


def summary(i: int, *, truncated: bool = False) -> SegmentSummaryInfo:
    return SegmentSummaryInfo(
        segment_id=f"seg-{i:04d}",
        unit_id=UNIT,
        started_at=T0 + timedelta(minutes=i),
        ended_at=T0 + timedelta(minutes=i + 1),
        chunks=3,
        plaintext_bytes=1000 + i,
        file_bytes=2000 + i,
        file_sha256=f"{i:064x}",
        truncated=truncated,
    )


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def index(tmp_path: Path, signing_key: Ed25519PrivateKey):
    with SegmentIndex(tmp_path / "index.db", unit_id=UNIT, signing_key=signing_key) as idx:
        yield idx


def raw_db(index: SegmentIndex) -> sqlite3.Connection:
    return sqlite3.connect(index.path, isolation_level=None)


def fill(index: SegmentIndex, n: int) -> list[str]:
    return [index.add(summary(i)) for i in range(n)]


def test_add_builds_a_chain_and_survives_reopening(
    tmp_path: Path, signing_key: Ed25519PrivateKey
) -> None:
    with SegmentIndex(tmp_path / "i.db", unit_id=UNIT, signing_key=signing_key) as idx:
        hashes = fill(idx, 3)
        entry = idx.get("seg-0001")
        assert entry is not None and entry.chain_hash == hashes[1] and entry.size == 2001
        assert idx.head() == (3, hashes[2])
        with pytest.raises(DuplicateSegment):
            idx.add(summary(1))
    with SegmentIndex(tmp_path / "i.db", unit_id=UNIT) as again:
        assert again.head() == (3, hashes[2])
        assert again.verify_chain(signing_key.public_key()).ok
        assert [e.segment_id for e in again.entries(start=T0 + timedelta(minutes=1.5))] == [
            "seg-0001",
            "seg-0002",
        ]
    with pytest.raises(SegmentIndexError, match="belongs to unit 'unit-7'"):
        SegmentIndex(tmp_path / "i.db", unit_id="unit-8")


def test_index_uses_wal_and_full_sync(index: SegmentIndex) -> None:
    assert raw_db(index).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert index._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_deletion_is_recorded_in_the_chain(index: SegmentIndex) -> None:
    fill(index, 3)
    index.mark_deleted("seg-0000", "retention", at=T0 + timedelta(days=31))
    entry = index.get("seg-0000")
    assert entry is not None and entry.deleted_reason == "retention"
    assert index.head()[0] == 4  # the deletion is an entry of its own
    assert [e.segment_id for e in index.entries(include_deleted=False)] == [
        "seg-0001",
        "seg-0002",
    ]
    assert index.verify_chain().ok
    with pytest.raises(SegmentIndexError, match="already deleted"):
        index.mark_deleted("seg-0000", "retention")
    index.set_held("seg-0001", True)
    assert index.get("seg-0001").held  # type: ignore[union-attr]


def test_checkpoint_signature_is_checked(index: SegmentIndex, tmp_path: Path) -> None:
    fill(index, 2)
    cp = index.checkpoint()
    assert (cp.count, cp.head) == index.head()
    assert cp.verify(index._key.public_key())  # type: ignore[union-attr]
    assert not cp.verify(Ed25519PrivateKey.generate().public_key())
    other = index.verify_chain(Ed25519PrivateKey.generate().public_key())
    assert other.problems == ["checkpoint at entry 2: signature does not verify"]
    raw_db(index).execute("UPDATE checkpoints SET count = 1")
    assert "checkpoint at entry 1: signature does not verify" in index.verify_chain().problems
    with SegmentIndex(tmp_path / "nokey.db", unit_id=UNIT) as keyless:
        with pytest.raises(CheckpointError) as err:
            keyless.checkpoint()
        assert isinstance(err.value, AgentError)


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (
            "UPDATE segments SET sha256 = '{f}' WHERE segment_id = 'seg-0002'",
            "seg-0002: row differs",
        ),
        (
            "UPDATE chain SET body = replace(body, '\"size\":2002', '\"size\":9') WHERE seq = 3",
            "entry 3 (segment of segment seg-0002): content does not match",
        ),
        (
            "DELETE FROM chain WHERE seq = 3",
            "entry 4 (segment of segment seg-0003): sequence jumps",
        ),
        ("DELETE FROM segments WHERE segment_id = 'seg-0002'", "seg-0002: chain entry has no row"),
        (
            "INSERT INTO segments SELECT 'seg-x', 99, started_at, ended_at, 'x.seg', size, sha256,"
            " chunks, plaintext_bytes, truncated, chain_hash, NULL, NULL, 0 FROM segments LIMIT 1",
            "seg-x: row has no chain entry (inserted)",
        ),
        (
            "UPDATE segments SET deleted_at = '2025-03-02T00:00:00.000000Z',"
            " deleted_reason = 'retention' WHERE segment_id = 'seg-0001'",
            "seg-0001: deletion differs from the chain",
        ),
    ],
)
def test_chain_detects_edited_deleted_inserted_rows(
    index: SegmentIndex, tamper: str, expected: str
) -> None:
    fill(index, 5)
    assert index.verify_chain().ok
    raw_db(index).execute(tamper.format(f="f" * 64))
    problems = index.verify_chain().problems
    assert any(expected in p for p in problems), problems


def test_rewritten_chain_is_caught_by_the_checkpoint(index: SegmentIndex) -> None:
    fill(index, 4)
    index.checkpoint()
    db = raw_db(index)
    # an attacker edits entry 2 and recomputes every hash after it, rows included
    prev = db.execute("SELECT chain_hash FROM chain WHERE seq = 1").fetchone()[0]
    for seq, body in db.execute("SELECT seq, body FROM chain WHERE seq >= 2 ORDER BY seq"):
        doc = json.loads(body)
        if seq == 2:
            doc["sha256"] = "e" * 64
            db.execute("UPDATE segments SET sha256 = ? WHERE seq = 2", (doc["sha256"],))
        new = chain_hash(prev, doc)
        db.execute(
            "UPDATE chain SET body = ?, prev_hash = ?, chain_hash = ? WHERE seq = ?",
            (json.dumps(doc, sort_keys=True, separators=(",", ":")), prev, new, seq),
        )
        db.execute("UPDATE segments SET chain_hash = ? WHERE seq = ?", (new, seq))
        prev = new
    assert index.verify_chain().problems == ["checkpoint at entry 4: chain head differs"]


def test_exported_manifest_verifies_and_names_tampering(
    index: SegmentIndex, signing_key: Ed25519PrivateKey
) -> None:
    fill(index, 6)
    index.mark_deleted("seg-0003", "retention")
    doc = index.export_manifest(start=T0 + timedelta(minutes=2), end=T0 + timedelta(minutes=5))
    manifest = SegmentManifest.from_json(doc)
    assert manifest.selected == ["seg-0002", "seg-0003", "seg-0004"]
    assert [e.seq for e in manifest.entries] == [3, 4, 5, 6, 7]  # run up to the head
    assert manifest.checkpoint.count == 7
    assert verify_manifest(manifest, signing_key.public_key()) == []
    assert manifest.segments()["seg-0003"].deleted_reason == "retention"
    by_id = SegmentManifest.from_json(index.export_manifest(["seg-0005"]))
    assert [e.seq for e in by_id.entries] == [6, 7]

    def problems(edit) -> list[str]:
        data = json.loads(doc)
        edit(data)
        return verify_manifest(SegmentManifest.model_validate(data), signing_key.public_key())

    def edited(d):
        d["entries"][1]["body"]["sha256"] = "0" * 64

    def removed(d):
        del d["entries"][2]

    def swapped(d):
        d["entries"][1], d["entries"][2] = d["entries"][2], d["entries"][1]

    assert any("content does not match" in p for p in problems(edited))
    assert any("sequence jumps from 4 to 6" in p for p in problems(removed))
    assert any("does not link" in p for p in problems(swapped))
    assert verify_manifest(manifest, Ed25519PrivateKey.generate().public_key()) == [
        "checkpoint signature does not verify with the unit's signing key"
    ]
    assert manifest.entries[0].prev_hash != GENESIS_HASH


def test_concurrent_adds_from_threads_keep_one_chain(index: SegmentIndex) -> None:
    def worker(base: int) -> None:
        for i in range(base, base + 15):
            index.add(summary(i))

    threads = [threading.Thread(target=worker, args=(b * 100,)) for b in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = index.verify_chain()
    assert report.ok and report.entries == 60


def write_segment(folder: Path, key: EvidencePrivateKey, sid: str, *, finish: bool = True):
    path = folder / f"{sid}.seg"
    with path.open("wb") as f:
        w = SegmentWriter(
            f, unit_id=UNIT, segment_id=sid, evidence_key=key.public_key(),
            started_at=T0, chunk_size=4096,
        )  # fmt: skip
        w.write(os.urandom(10_000))
        return path, (w.finish(ended_at=T0 + timedelta(minutes=1)) if finish else None)


def test_verify_reconciles_files_after_a_crash(index: SegmentIndex, tmp_path: Path) -> None:
    key = generate_evidence_key()
    files = tmp_path / "segments"
    files.mkdir()
    _, good = write_segment(files, key, "a-good")
    _, gone = write_segment(files, key, "b-gone")
    _, retired = write_segment(files, key, "c-retired")
    altered, was = write_segment(files, key, "d-altered")
    for s in (good, gone, retired, was):
        assert s is not None
        index.add(s)
    index.mark_deleted("c-retired", "retention")  # crash before the file was unlinked
    (files / "b-gone.seg").unlink()
    with altered.open("ab") as f:
        f.write(b"x")
    write_segment(files, key, "e-unindexed")  # crash between finish and add
    cut, _ = write_segment(files, key, "f-cut", finish=False)  # power cut mid-segment
    (files / "g-empty.seg").write_bytes(b"")  # power cut before the header hit the disk
    (files / "h-junk.seg").write_bytes(b"not a segment at all, just junk bytes")

    report = index.verify(files)
    assert report.checked == 4
    assert report.added == ["e-unindexed", "f-cut"] and report.sealed_truncated == ["f-cut"]
    assert report.missing == ["b-gone"] and report.altered == ["d-altered"]
    assert report.removed == ["c-retired", "g-empty.seg"]
    assert len(report.damaged) == 1 and report.damaged[0].startswith("h-junk.seg: ")
    assert not (files / "c-retired.seg").exists()
    assert index.get("b-gone").deleted_reason == "missing at verify"  # type: ignore[union-attr]
    with cut.open("rb") as f:
        decoded = read_segment(f, key)
    assert decoded.truncated and len(decoded.plaintext) == 8192  # two full chunks kept
    assert index.verify_chain().ok
    again = index.verify(files)
    assert again.altered == ["d-altered"] and not again.added and not again.missing
