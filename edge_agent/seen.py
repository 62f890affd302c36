"""Ids of accepted commands, kept on disk until they expire, so a replayed command is
refused even after the agent restarts."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["DurableSeenIds"]


class DurableSeenIds:
    """`protocol.signing.SeenIds` over SQLite."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen_commands (id TEXT PRIMARY KEY, until TEXT NOT NULL)"
        )

    def seen(self, ident: str) -> bool:
        row = self._db.execute("SELECT 1 FROM seen_commands WHERE id = ?", (ident,)).fetchone()
        return row is not None

    def remember(self, ident: str, until: datetime) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO seen_commands (id, until) VALUES (?, ?)",
            (ident, until.astimezone(UTC).isoformat()),
        )

    def prune(self, now: datetime) -> int:
        """Forget ids whose command has expired: an expired command is refused anyway."""
        cur = self._db.execute(
            "DELETE FROM seen_commands WHERE until < ?", (now.astimezone(UTC).isoformat(),)
        )
        return cur.rowcount

    def close(self) -> None:
        self._db.close()
