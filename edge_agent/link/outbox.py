"""The unit's durable outbox: every QoS 1 message is written here first and removed only
after the broker's PUBACK, so a broker outage, a power cut or a `kill -9` loses nothing.

One SQLite file (WAL, `synchronous=FULL`: a message is on disk before `enqueue` returns).

    meta(key, value)                          next_seq, boot_id, boots, dropped_<class>
    outbox(seq, topic, payload, class, retain, created_at)

Sequence numbers: `seq` is allocated by the outbox in the same transaction that stores the
message, so it is monotonic and survives restarts. The message must carry the seq it is
stored under, hence the builder API:

    outbox.enqueue(lambda seq: Heartbeat(unit_id=..., seq=seq, ...), MessageClass.HEARTBEAT)

`enqueue` allocates the seq, calls the builder with it, checks the built message carries
it, stores it and commits, all in one transaction; a builder that raises stores nothing
and consumes no seq. The builder runs on whatever thread calls `enqueue` and must be pure.
`next_seq()` allocates a seq for a message that is not stored (the retained unit state).

Bound: at most `max_rows` messages. When full, the oldest message of the lowest class
goes: heartbeats first, then periodic telemetry, and essential messages (faults, events,
acknowledgements, self-test reports, index batches) only when nothing else is left. A
newly enqueued heartbeat is itself the victim when everything stored is more important.
Drops are counted per class in `meta` (they survive restarts) for the heartbeat's
`outbox_dropped`.

Thread safety: one connection guarded by a lock; the link calls it from a single worker
thread so a slow fsync never blocks the event loop.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from types import TracebackType
from typing import Self

from edge_agent.errors import AgentError
from protocol.messages import Envelope, channel_for, encode
from protocol.topics import Channel, Topics

__all__ = [
    "DEFAULT_MAX_ROWS",
    "MessageClass",
    "Outbox",
    "OutboxError",
    "OutboxItem",
    "class_for",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 50_000
_SCHEMA_VERSION = 1
#: The first seq a new outbox hands out.
FIRST_SEQ = 1


class OutboxError(AgentError):
    """The outbox file cannot be opened, read or written (disk full, corrupt, permissions)."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"outbox {path}: {detail}")
        self.path = path
        self.detail = detail


class MessageClass(IntEnum):
    """How much a message matters when the outbox is full: the lowest goes first."""

    HEARTBEAT = 0
    TELEMETRY = 1
    ESSENTIAL = 2


def class_for(channel: Channel) -> MessageClass:
    """The default class of a channel. Periodic power reports are TELEMETRY; a power
    *change* (mains lost, low battery) is worth sending as ESSENTIAL by its caller. A
    reference picture is TELEMETRY: it can be asked for again, a fault report cannot."""
    if channel is Channel.HEARTBEAT:
        return MessageClass.HEARTBEAT
    if channel in (Channel.POWER, Channel.SNAPSHOT):
        return MessageClass.TELEMETRY
    return MessageClass.ESSENTIAL


@dataclass(frozen=True, slots=True)
class OutboxItem:
    seq: int
    topic: str
    payload: bytes
    message_class: MessageClass
    retain: bool
    created_at: float


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY,
    topic      TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    class      INTEGER NOT NULL,
    retain     INTEGER NOT NULL,
    created_at REAL    NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS outbox_by_class ON outbox (class, seq);
"""


class Outbox:
    """A durable, bounded, ordered queue of encoded messages. Open with `Outbox.open`."""

    def __init__(self, path: Path, conn: sqlite3.Connection, topics: Topics, max_rows: int):
        self.path = path
        self._conn = conn
        self._topics = topics
        self._max_rows = max_rows
        # Re-entrant: a builder may read depth()/dropped() for a heartbeat while enqueued.
        self._lock = threading.RLock()
        self._depth = self._scalar("SELECT COUNT(*) FROM outbox")
        self._dropped_at_open = self.dropped()
        self.boot_id = uuid.uuid4().hex
        with self._transaction():
            boots = int(self._meta("boots", "0")) + 1
            self._set_meta("boots", str(boots))
            self._set_meta("boot_id", self.boot_id)
        self.boots = boots

    @property
    def max_rows(self) -> int:
        """The bound: at most this many messages are kept."""
        return self._max_rows

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: Path, *, topics: Topics | None = None, max_rows: int = DEFAULT_MAX_ROWS
    ) -> Self:
        """Open (or create) the outbox at `path` and record a new boot (a fresh `boot_id`)."""
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(path, f"cannot open: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise OutboxError(path, f"schema version {version} is newer than this agent's")
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            return cls(path, conn, topics or Topics(), max_rows)
        except sqlite3.Error as exc:
            conn.close()
            raise OutboxError(path, f"not a usable outbox database: {exc}") from exc
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    def enqueue(
        self,
        build: Callable[[int], Envelope],
        message_class: MessageClass | None = None,
    ) -> Envelope:
        """Allocate a seq, build the message with it and store it durably; return it.

        `message_class` defaults to `class_for(channel)`. Raises OutboxError on disk
        failure; a builder exception propagates and leaves the outbox unchanged."""
        with self._lock, self._transaction():
            seq = int(self._meta("next_seq", str(FIRST_SEQ)))
            message = build(seq)
            if message.seq != seq:
                raise ValueError(f"the builder ignored its seq: built {message.seq}, given {seq}")
            channel = channel_for(message)
            cls = class_for(channel) if message_class is None else MessageClass(message_class)
            self._conn.execute(
                "INSERT INTO outbox (seq, topic, payload, class, retain, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    seq,
                    self._topics.unit(message.unit_id, channel),
                    encode(message),
                    int(cls),
                    int(channel.retained),
                    time.time(),
                ),
            )
            self._set_meta("next_seq", str(seq + 1))
            depth = self._depth + 1
            depth -= self._evict(depth)
        self._depth = depth
        return message

    def next_seq(self) -> int:
        """Allocate one seq (persisted) for a message that does not go through the outbox."""
        with self._lock, self._transaction():
            seq = int(self._meta("next_seq", str(FIRST_SEQ)))
            self._set_meta("next_seq", str(seq + 1))
        return seq

    def ack(self, seqs: Iterable[int]) -> int:
        """Remove acknowledged messages (one transaction); return how many were removed.
        A seq already gone (dropped while in flight, acked twice) is ignored."""
        batch = [(s,) for s in seqs]
        if not batch:
            return 0
        with self._lock, self._transaction():
            before = self._conn.total_changes
            self._conn.executemany("DELETE FROM outbox WHERE seq = ?", batch)
            removed = self._conn.total_changes - before
        self._depth -= removed
        return removed

    def _evict(self, depth: int) -> int:
        """Inside a transaction: drop messages until at most max_rows remain."""
        evicted = 0
        while depth - evicted > self._max_rows:
            row = self._conn.execute(
                "SELECT seq, class FROM outbox ORDER BY class, seq LIMIT 1"
            ).fetchone()
            self._conn.execute("DELETE FROM outbox WHERE seq = ?", (row[0],))
            key = f"dropped_{MessageClass(row[1]).name.lower()}"
            self._set_meta(key, str(int(self._meta(key, "0")) + 1))
            log.warning(
                "outbox full, message dropped: seq=%d class=%s", row[0], MessageClass(row[1]).name
            )
            evicted += 1
        return evicted

    # -- reading ---------------------------------------------------------------------------

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[OutboxItem]:
        """Stored messages with seq > `after_seq`, oldest first."""
        with self._lock, self._errors("read"):
            rows = self._conn.execute(
                "SELECT seq, topic, payload, class, retain, created_at FROM outbox"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [
            OutboxItem(r[0], r[1], bytes(r[2]), MessageClass(r[3]), bool(r[4]), r[5]) for r in rows
        ]

    def depth(self) -> int:
        """Messages waiting for the broker's acknowledgement."""
        return self._depth

    def dropped(self) -> int:
        """Messages dropped because the outbox was full, over the outbox's whole life."""
        return sum(self.dropped_by_class().values())

    def dropped_since_open(self) -> int:
        """Messages dropped since this process opened the outbox (the heartbeat's
        `outbox_dropped`, "since boot")."""
        return self.dropped() - self._dropped_at_open

    def dropped_by_class(self) -> dict[MessageClass, int]:
        with self._lock, self._errors("read"):
            return {c: int(self._meta(f"dropped_{c.name.lower()}", "0")) for c in MessageClass}

    def oldest_created_at(self) -> float | None:
        """When the oldest waiting message was enqueued (epoch seconds), if any."""
        with self._lock, self._errors("read"):
            row = self._conn.execute("SELECT MIN(created_at) FROM outbox").fetchone()
        return None if row[0] is None else float(row[0])

    # -- helpers ---------------------------------------------------------------------------

    def _scalar(self, sql: str) -> int:
        with self._errors("read"):
            return int(self._conn.execute(sql).fetchone()[0])

    def _meta(self, key: str, default: str) -> str:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _errors(self, action: str) -> _SqliteErrors:
        return _SqliteErrors(self.path, action)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn, self.path)


class _SqliteErrors:
    """Turn sqlite3 errors into OutboxError naming the file and the action."""

    def __init__(self, path: Path, action: str) -> None:
        self._path = path
        self._action = action

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(e, sqlite3.Error):
            raise OutboxError(self._path, f"cannot {self._action}: {e}") from e


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._path = path

    def __enter__(self) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise OutboxError(self._path, f"cannot begin a transaction: {exc}") from exc

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if e is None:
            try:
                self._conn.execute("COMMIT")
                return
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(self._path, f"cannot commit: {exc}") from exc
        self._rollback()
        if isinstance(e, sqlite3.Error):
            raise OutboxError(self._path, f"cannot write: {e}") from e

    def _rollback(self) -> None:
        # SQLite may already have rolled back (e.g. SQLITE_FULL): nothing left to undo.
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
