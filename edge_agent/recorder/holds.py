"""Evidential holds: time ranges of footage that neither retention nor disk pressure may
delete (an incident under investigation, a subject access request while it is open).

Stored in their own SQLite file next to the segment index. A released hold is kept, with
its release time, so the unit can say what was held and when it was let go.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from edge_agent.recorder.errors import RecorderError

__all__ = ["Hold", "HoldConflict", "HoldError", "HoldStore", "UnknownHold"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS holds (
    hold_id     TEXT PRIMARY KEY,
    start_us    INTEGER NOT NULL,
    end_us      INTEGER NOT NULL,
    reference   TEXT NOT NULL,
    placed_us   INTEGER NOT NULL,
    released_us INTEGER,
    CHECK (end_us > start_us)
);
CREATE INDEX IF NOT EXISTS holds_active ON holds (released_us, start_us, end_us);
"""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


class HoldError(RecorderError):
    """A hold that cannot be placed or released."""


class UnknownHold(HoldError):
    def __init__(self, hold_id: str) -> None:
        super().__init__(f"no hold {hold_id!r}")
        self.hold_id = hold_id


class HoldConflict(HoldError):
    def __init__(self, hold_id: str, reason: str) -> None:
        super().__init__(f"hold {hold_id!r}: {reason}")
        self.hold_id = hold_id
        self.reason = reason


class Hold(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hold_id: str = Field(min_length=1, max_length=128, description="Set by the controller")
    start: AwareDatetime = Field(description="First instant of held footage (UTC)")
    end: AwareDatetime = Field(description="Last instant of held footage (UTC)")
    reference: str = Field(min_length=1, max_length=200, description="Incident / case number")
    placed_at: AwareDatetime
    released_at: AwareDatetime | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None


def _us(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("hold times must be timezone-aware")
    return (value - _EPOCH) // _MICRO  # exact integer arithmetic, no float rounding


def _dt(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class HoldStore:
    """Thread-safe: the recorder's thread and the command handler may both use it."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a hold must survive a power cut
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise HoldError(f"cannot open the hold store {path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def place(self, hold_id: str, start: datetime, end: datetime, reference: str) -> Hold:
        """Place a hold. Placing the same hold again is a no-op (commands may be redelivered);
        reusing a hold id for another range, or for a released hold, is refused."""
        if start.tzinfo is None or end.tzinfo is None:
            raise HoldConflict(hold_id, "start and end must be timezone-aware")
        hold = Hold(
            hold_id=hold_id,
            start=start.astimezone(UTC),
            end=end.astimezone(UTC),
            reference=reference,
            placed_at=self._clock(),
        )
        if hold.end <= hold.start:
            raise HoldConflict(hold_id, "end must be after start")
        with self._lock:
            existing = self._get(hold_id)
            if existing is not None:
                same = (existing.start, existing.end, existing.reference) == (
                    hold.start,
                    hold.end,
                    hold.reference,
                )
                if not existing.active:
                    raise HoldConflict(hold_id, "was released; a new hold needs a new id")
                if not same:
                    raise HoldConflict(hold_id, "already placed with another range or reference")
                return existing
            self._db.execute(
                "INSERT INTO holds (hold_id, start_us, end_us, reference, placed_us)"
                " VALUES (?, ?, ?, ?, ?)",
                (hold_id, _us(hold.start), _us(hold.end), reference, _us(hold.placed_at)),
            )
        return hold

    def release(self, hold_id: str) -> Hold:
        """Release a hold; releasing it again returns it unchanged."""
        with self._lock:
            existing = self._get(hold_id)
            if existing is None:
                raise UnknownHold(hold_id)
            if not existing.active:
                return existing
            now = self._clock()
            self._db.execute(
                "UPDATE holds SET released_us = ? WHERE hold_id = ?", (_us(now), hold_id)
            )
            return existing.model_copy(update={"released_at": now})

    def get(self, hold_id: str) -> Hold | None:
        with self._lock:
            return self._get(hold_id)

    def active(self) -> list[Hold]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM holds WHERE released_us IS NULL ORDER BY start_us"
            ).fetchall()
        return [_row(r) for r in rows]

    def covering(self, start: datetime, end: datetime) -> list[Hold]:
        """Active holds that overlap [start, end] (edges included: evidence errs on keeping)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM holds WHERE released_us IS NULL AND start_us <= ? AND end_us >= ?",
                (_us(end), _us(start)),
            ).fetchall()
        return [_row(r) for r in rows]

    def is_held(self, start: datetime, end: datetime) -> bool:
        return bool(self.covering(start, end))

    def _get(self, hold_id: str) -> Hold | None:
        row = self._db.execute("SELECT * FROM holds WHERE hold_id = ?", (hold_id,)).fetchone()
        return None if row is None else _row(row)


def _row(row: tuple[str, int, int, str, int, int | None]) -> Hold:
    hold_id, start_us, end_us, reference, placed_us, released_us = row
    return Hold(
        hold_id=hold_id,
        start=_dt(start_us),
        end=_dt(end_us),
        reference=reference,
        placed_at=_dt(placed_us),
        released_at=_dt(released_us),
    )
