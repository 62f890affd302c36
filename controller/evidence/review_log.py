"""Writing the review log: every time someone opens, plays or downloads case footage.

Each entry is a `review_log` row (the control room's "review log", read by
`controller.evidence.evidence_logs`) and, in the same transaction, an entry in the audit
chain, so the record of who looked at footage is tamper-evident like every other step.
A browser fetches a video in many range requests; `PlayDebounce` keeps one playback to
one "played" entry.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.evidence.holds import case_subject
from controller.store.evidence import ReviewLogRow

__all__ = ["PlayDebounce", "ReviewAction", "client_words", "log_review"]

ReviewAction = Literal["viewed", "played", "downloaded", "exported"]
_CLIENT_MAX = 500


def client_words(address: str | None, user_agent: str | None) -> str:
    """`203.0.113.7 (Mozilla/5.0 ...)`, cut to the column's length."""
    words = address or "unknown address"
    if user_agent:
        words += f" ({user_agent})"
    return words[:_CLIENT_MAX]


async def log_review(
    session: AsyncSession,
    *,
    at: datetime,
    user: str,
    case_id: int,
    case_number: str,
    exhibit_id: int | None,
    exhibit_number: str | None,
    action: ReviewAction,
    client: str,
    detail: str,
) -> ReviewLogRow:
    """One review-log row and its audit entry, in the caller's transaction."""
    row = ReviewLogRow(
        at=at,
        user=user,
        case_id=case_id,
        exhibit_id=exhibit_id,
        action=action,
        client=client,
        detail=detail,
    )
    session.add(row)
    await audit.record(
        session,
        actor=user,
        action=f"footage.{action}",
        subject=case_subject(case_number),
        details={"exhibit": exhibit_number, "detail": detail, "client": client},
        at=at,
    )
    return row


class PlayDebounce:
    """Whether a request for a video starts a new playback worth a "played" entry: the
    first request from the start of the file by a user, then not again for `window_s`
    (the range requests of one playback, a pause and resume)."""

    def __init__(self, window_s: float = 120.0, limit: int = 10_000) -> None:
        self.window_s = window_s
        self.limit = limit
        self._last: dict[tuple[str, int, str], float] = {}

    def starts_playback(
        self, user: str, exhibit_id: int, name: str, range_header: str | None
    ) -> bool:
        if range_header is not None and not range_header.replace(" ", "").startswith("bytes=0-"):
            return False  # a seek, or the rest of a playback already logged
        now = time.monotonic()
        key = (user, exhibit_id, name)
        last = self._last.get(key)
        if last is not None and now - last < self.window_s:
            return False
        if len(self._last) >= self.limit:
            self._last = {k: v for k, v in self._last.items() if now - v < self.window_s}
        self._last[key] = now
        return True
