"""The unit's local segment index: one SQLite file (WAL, synchronous=FULL) listing every
sealed segment with its size, sha256 and place in a hash chain, the deletions retention
made (chained too: recorded, never hidden), and signed checkpoints of the chain's head.
Checking it and recovering it after a crash is `edge_agent.recorder.index_verify`'s work.

Synchronous and thread-safe (one connection behind a lock): the recorder calls it from
its writer thread, async code through `asyncio.to_thread`. The chain rules and the
manifest format live in `protocol.segment.manifest`, shared with the controller.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.segment.format import SegmentSummaryInfo, canonical_json, iso_utc, segment_file_name
from protocol.segment.manifest import (
    GENESIS_HASH,
    ChainEntry,
    Checkpoint,
    SegmentManifest,
    chain_hash,
    deletion_entry,
    segment_entry,
)

from .errors import CheckpointError, DuplicateSegment, SegmentIndexError, UnknownSegment
from .index_entry import IndexEntry
from .index_verify import ChainReport, VerifyReport, check_index, reconcile_files

__all__ = ["ChainReport", "IndexEntry", "SegmentIndex", "VerifyReport"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chain (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, segment_id TEXT NOT NULL,
    body TEXT NOT NULL, prev_hash TEXT NOT NULL, chain_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS segments (
    segment_id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE,
    started_at TEXT NOT NULL, ended_at TEXT NOT NULL, file_name TEXT NOT NULL,
    size INTEGER NOT NULL, sha256 TEXT NOT NULL, chunks INTEGER NOT NULL,
    plaintext_bytes INTEGER NOT NULL, truncated INTEGER NOT NULL, chain_hash TEXT NOT NULL,
    deleted_at TEXT, deleted_reason TEXT, held INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS segments_started_at ON segments (started_at);
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY, count INTEGER NOT NULL, head TEXT NOT NULL,
    signed_at TEXT NOT NULL, key_id TEXT NOT NULL, signature TEXT NOT NULL);
"""
_COLUMNS = (
    "seq, segment_id, started_at, ended_at, file_name, size, sha256, chunks, plaintext_bytes, "
    "truncated, chain_hash, deleted_at, deleted_reason, held"
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class SegmentIndex:
    """The unit's segment index. `signing_key` (the unit's Ed25519 key) is needed only to
    make checkpoints and manifests."""

    def __init__(
        self,
        path: Path | str,
        *,
        unit_id: str,
        signing_key: Ed25519PrivateKey | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.path = Path(path)
        self.unit_id = unit_id
        self._key = signing_key
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='unit_id'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('unit_id', ?)", (unit_id,))
        except sqlite3.Error as exc:
            raise SegmentIndexError(self.path, f"cannot open: {exc}") from exc
        if row is not None and row[0] != unit_id:
            self._db.close()
            raise SegmentIndexError(self.path, f"belongs to unit {row[0]!r}, not {unit_id!r}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writes ------------------------------------------------------------------------

    def _append(self, kind: str, segment_id: str, body: dict[str, Any]) -> tuple[int, str]:
        """Append a chain entry; the caller holds the lock inside a transaction."""
        row = self._db.execute("SELECT seq, chain_hash FROM chain ORDER BY seq DESC LIMIT 1")
        last = row.fetchone()
        seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
        digest = chain_hash(prev, body)
        self._db.execute(
            "INSERT INTO chain VALUES (?, ?, ?, ?, ?, ?)",
            (seq, kind, segment_id, canonical_json(body).decode(), prev, digest),
        )
        return seq, digest

    def _write(self, fn: Callable[[], Any]) -> Any:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = fn()
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise SegmentIndexError(self.path, f"write failed: {exc}") from exc
            return result

    def add(self, summary: SegmentSummaryInfo, *, file_name: str | None = None) -> str:
        """Index a sealed segment; returns its chain hash."""
        name = file_name or segment_file_name(summary.segment_id)
        body = segment_entry(self.unit_id, summary, name)

        def run() -> str:
            sid = summary.segment_id
            if self._db.execute("SELECT 1 FROM segments WHERE segment_id=?", (sid,)).fetchone():
                raise DuplicateSegment(self.path, sid)
            seq, digest = self._append("segment", sid, body)
            self._db.execute(
                f"INSERT INTO segments ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,NULL,NULL,0)",
                (seq, sid, body["started_at"], body["ended_at"], name, summary.file_bytes,
                 summary.file_sha256, summary.chunks, summary.plaintext_bytes,
                 int(summary.truncated), digest),
            )  # fmt: skip
            return digest

        digest: str = self._write(run)
        log.info(
            "unit=%s segment=%s indexed chain=%s", self.unit_id, summary.segment_id, digest[:12]
        )
        return digest

    def mark_deleted(self, segment_id: str, reason: str, *, at: datetime | None = None) -> str:
        """Record that a segment's file was removed (the entry stays, the deletion is
        chained); returns the deletion's chain hash."""
        when = at or self._clock()

        def run() -> str:
            row = self._db.execute(
                "SELECT deleted_at FROM segments WHERE segment_id=?", (segment_id,)
            ).fetchone()
            if row is None:
                raise UnknownSegment(self.path, segment_id)
            if row[0] is not None:
                raise SegmentIndexError(self.path, f"segment {segment_id!r} is already deleted")
            body = deletion_entry(self.unit_id, segment_id, when, reason)
            _, digest = self._append("deletion", segment_id, body)
            self._db.execute(
                "UPDATE segments SET deleted_at=?, deleted_reason=? WHERE segment_id=?",
                (body["deleted_at"], reason, segment_id),
            )
            return digest

        digest: str = self._write(run)
        log.info("unit=%s segment=%s deleted reason=%s", self.unit_id, segment_id, reason)
        return digest

    def set_held(self, segment_id: str, held: bool) -> None:
        """Mark a segment as under evidential hold (decided by the hold rules elsewhere)."""

        def run() -> None:
            cur = self._db.execute(
                "UPDATE segments SET held=? WHERE segment_id=?", (int(held), segment_id)
            )
            if cur.rowcount == 0:
                raise UnknownSegment(self.path, segment_id)

        self._write(run)

    def checkpoint(self) -> Checkpoint:
        """Sign the chain's head, entry count and the time with the unit's key; stored."""
        if self._key is None:
            raise CheckpointError(self.path, "no unit signing key to sign a checkpoint with")
        key = self._key

        def run() -> Checkpoint:
            last = self._db.execute("SELECT seq, chain_hash FROM chain ORDER BY seq DESC LIMIT 1")
            count, head = last.fetchone() or (0, GENESIS_HASH)
            cp = Checkpoint.create(
                key, unit_id=self.unit_id, count=count, head=head, signed_at=self._clock()
            )
            self._db.execute(
                "INSERT INTO checkpoints (count, head, signed_at, key_id, signature) "
                "VALUES (?,?,?,?,?)",
                (cp.count, cp.head, iso_utc(cp.signed_at), cp.key_id, cp.signature),
            )
            return cp

        cp: Checkpoint = self._write(run)
        log.info("unit=%s checkpoint count=%d head=%s", self.unit_id, cp.count, cp.head[:12])
        return cp

    # --- reads -------------------------------------------------------------------------

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(args)).fetchall()
            except sqlite3.Error as exc:
                raise SegmentIndexError(self.path, f"read failed: {exc}") from exc

    @staticmethod
    def _entry(row: Any) -> IndexEntry:
        names = [c.strip() for c in _COLUMNS.split(",")]
        doc = dict(zip(names, row, strict=True))
        doc["deleted_at"] = _dt(doc["deleted_at"])
        return IndexEntry.model_validate(doc)

    def get(self, segment_id: str) -> IndexEntry | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM segments WHERE segment_id=?", (segment_id,))
        return self._entry(rows[0]) if rows else None

    def entries(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        include_deleted: bool = True,
    ) -> list[IndexEntry]:
        """Segments overlapping [start, end), in chain order."""
        sql = f"SELECT {_COLUMNS} FROM segments WHERE 1=1"
        args: list[Any] = []
        if start is not None:
            sql += " AND ended_at > ?"
            args.append(iso_utc(start))
        if end is not None:
            sql += " AND started_at < ?"
            args.append(iso_utc(end))
        if not include_deleted:
            sql += " AND deleted_at IS NULL"
        return [self._entry(r) for r in self._query(sql + " ORDER BY seq", args)]

    def head(self) -> tuple[int, str]:
        rows = self._query("SELECT seq, chain_hash FROM chain ORDER BY seq DESC LIMIT 1")
        return (rows[0][0], rows[0][1]) if rows else (0, GENESIS_HASH)

    def latest_checkpoint(self) -> Checkpoint | None:
        rows = self._query(
            "SELECT count, head, signed_at, key_id, signature FROM checkpoints "
            "ORDER BY id DESC LIMIT 1"
        )
        if not rows:
            return None
        count, head, signed_at, kid, sig = rows[0]
        return Checkpoint(
            unit_id=self.unit_id, count=count, head=head, signed_at=signed_at,
            key_id=kid, signature=sig,
        )  # fmt: skip

    def chain(self, first_seq: int = 1, last_seq: int | None = None) -> list[ChainEntry]:
        """The chain's entries from `first_seq` to `last_seq` (the head when None)."""
        sql = "SELECT seq, prev_hash, chain_hash, body FROM chain WHERE seq >= ?"
        args: list[Any] = [first_seq]
        if last_seq is not None:
            sql += " AND seq <= ?"
            args.append(last_seq)
        return [
            ChainEntry(seq=s, prev_hash=p, chain_hash=c, body=json.loads(b))
            for s, p, c, b in self._query(sql + " ORDER BY seq", args)
        ]

    # --- verification and export -------------------------------------------------------

    def verify_chain(self, public_key: Ed25519PublicKey | None = None) -> ChainReport:
        """Check the chain, that each segment row says what its chain entry says, and
        every stored checkpoint against the unit's public key."""
        if public_key is None and self._key is not None:
            public_key = self._key.public_key()
        return check_index(
            self.unit_id, self.chain(), self.entries(), self._checkpoints(), public_key
        )

    def _checkpoints(self) -> list[Checkpoint]:
        rows = self._query("SELECT count, head, signed_at, key_id, signature FROM checkpoints")
        return [
            Checkpoint(unit_id=self.unit_id, count=c, head=h, signed_at=t, key_id=k, signature=s)
            for c, h, t, k, s in rows
        ]

    def export_manifest(
        self,
        segment_ids: Iterable[str] | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> bytes:
        """A JSON manifest of the chosen segments (by id, or overlapping [start, end)) with
        the chain from the first of them to a checkpoint of the current head (made now if
        the latest one is older)."""
        if segment_ids is not None:
            chosen = []
            for sid in segment_ids:
                entry = self.get(sid)
                if entry is None:
                    raise UnknownSegment(self.path, sid)
                chosen.append(entry)
        else:
            chosen = self.entries(start=start, end=end)
        if not chosen:
            raise SegmentIndexError(self.path, "no segments match the export")
        cp = self.latest_checkpoint()
        if cp is None or cp.count != self.head()[0]:
            cp = self.checkpoint()
        manifest = SegmentManifest(
            unit_id=self.unit_id,
            generated_at=self._clock(),
            selected=[e.segment_id for e in chosen],
            entries=self.chain(min(e.seq for e in chosen), cp.count),
            checkpoint=cp,
        )
        return manifest.to_json()

    def verify(self, files_dir: Path | str) -> VerifyReport:
        """Reconcile the index with the files on disk (run at start, after a crash): an
        unindexed file is sealed if cut (`seal_truncated`) and added; an indexed file that
        is gone is recorded as deleted ("missing"); a file of a deleted segment still on
        disk is removed; a size change is reported, never repaired."""
        report = reconcile_files(self, Path(files_dir))
        for kind, items in report.model_dump(exclude={"checked"}).items():
            for item in items:
                log.warning("unit=%s verify %s: %s", self.unit_id, kind, item)
        return report
