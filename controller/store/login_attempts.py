"""Login attempts: every attempt to sign in with its outcome, for the login limits and for
review (`controller.accounts.logins` says how the limits use them).

    login_attempts   when, the username as typed, the client address, the outcome and,
                     from a browser the user had signed in on before, that browser's
                     device id (a hash of its device cookie's nonce, never the cookie)

Rows are purged with the ended sessions (`controller.store.users.purge_login_records`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, Index, String, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.base import Base, UTCDateTime

__all__ = [
    "FAILURES",
    "LoginAttemptRow",
    "LoginOutcome",
    "recent_failures",
    "record_attempt",
]

USERNAME_MAX = 64
CLIENT_MAX = 64
DEVICE_MAX = 64


class LoginOutcome(StrEnum):
    SUCCESS = "success"
    BAD_PASSWORD = "bad_password"
    UNKNOWN_USER = "unknown_user"
    DISABLED = "disabled"
    RATE_LIMITED = "rate_limited"


#: Outcomes that count towards the rate limit. A refusal for being rate limited does not
#: count, so the time given in the refusal stays true.
FAILURES = (LoginOutcome.BAD_PASSWORD, LoginOutcome.UNKNOWN_USER, LoginOutcome.DISABLED)


class LoginAttemptRow(Base):
    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_username_at", "username", "at"),
        Index("ix_login_attempts_client_at", "client", "at"),
        Index("ix_login_attempts_device_at", "device", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    username: Mapped[str] = mapped_column(String(USERNAME_MAX))
    client: Mapped[str] = mapped_column(String(CLIENT_MAX))
    outcome: Mapped[str] = mapped_column(String(20))
    #: The device id of a browser the user had signed in on before; None for any other.
    device: Mapped[str | None] = mapped_column(String(DEVICE_MAX), nullable=True)


async def record_attempt(
    session: AsyncSession,
    *,
    username: str,
    client: str,
    outcome: LoginOutcome,
    now: datetime,
    device: str | None = None,
) -> None:
    session.add(
        LoginAttemptRow(
            at=now,
            username=username[:USERNAME_MAX],
            client=client[:CLIENT_MAX],
            outcome=outcome.value,
            device=None if device is None else device[:DEVICE_MAX],
        )
    )
    await session.flush()


async def recent_failures(
    session: AsyncSession,
    *,
    since: datetime,
    limit: int,
    username: str | None = None,
    client: str | None = None,
    device: str | None = None,
    untrusted: bool = False,
) -> list[datetime]:
    """Times of the latest failed attempts after `since` (newest first, at most `limit`)
    for a username, a client address or a device id (any of them given narrows).

    `untrusted` keeps only attempts from browsers without a device id. For a username or a
    device, only failures after the last success of the same kind count (a user who
    finally typed the password right starts again from zero)."""
    keys: list[ColumnElement[bool]] = []
    if username is not None:
        keys.append(LoginAttemptRow.username == username[:USERNAME_MAX])
    if device is not None:
        keys.append(LoginAttemptRow.device == device[:DEVICE_MAX])
    if untrusted:
        keys.append(LoginAttemptRow.device.is_(None))
    query = select(LoginAttemptRow.at).where(
        LoginAttemptRow.at > since,
        LoginAttemptRow.outcome.in_([o.value for o in FAILURES]),
        *keys,
    )
    if username is not None or device is not None:
        last_success = (
            select(func.max(LoginAttemptRow.at))
            .where(and_(*keys), LoginAttemptRow.outcome == LoginOutcome.SUCCESS.value)
            .scalar_subquery()
        )
        query = query.where((last_success.is_(None)) | (LoginAttemptRow.at > last_success))
    if client is not None:
        query = query.where(LoginAttemptRow.client == client[:CLIENT_MAX])
    result = await session.execute(query.order_by(LoginAttemptRow.at.desc()).limit(limit))
    return list(result.scalars().all())
