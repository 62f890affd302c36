"""Tables and queries for the people who use the controller.

    users            one row per person: role, contractor company, Argon2 hash, disabled flag
    api_tokens       bearer tokens for scripts, stored as SHA-256 (the token is shown once)
    user_sessions    browser sessions, stored as SHA-256 of the cookie value
    (login attempts, for the login limits, are in `controller.store.login_attempts`)

Nothing here sees a password, a token or a session id in clear: callers pass hashes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from controller.errors import ControllerError
from controller.store.base import Base, UTCDateTime
from controller.store.login_attempts import LoginAttemptRow

__all__ = [
    "ApiTokenRow",
    "SessionRow",
    "UnknownUser",
    "UserExists",
    "UserRow",
    "UserStoreError",
    "active_managers",
    "add_session",
    "add_token",
    "add_user",
    "end_session",
    "end_user_sessions",
    "find_session",
    "find_token",
    "get_user",
    "list_tokens",
    "list_users",
    "purge_login_records",
    "revoke_token",
    "set_disabled",
    "set_password_hash",
    "touch_session",
    "touch_token",
]

USERNAME_MAX = 64
CLIENT_MAX = 64


class UserStoreError(ControllerError):
    """A change to the users tables that cannot be made."""

    status = 409


class UserExists(UserStoreError):
    status = 409

    def __init__(self, username: str) -> None:
        super().__init__(f"a user named {username!r} already exists")
        self.username = username


class UnknownUser(UserStoreError):
    status = 404

    def __init__(self, username: str) -> None:
        super().__init__(f"there is no user named {username!r}")
        self.username = username


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    contractor: Mapped[str | None] = mapped_column(String(200), nullable=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    #: The first characters of the token, enough to recognise it in a listing.
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SessionRow(Base):
    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    client: Mapped[str] = mapped_column(String(CLIENT_MAX))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


# ---------------------------------------------------------------------------- users


async def add_user(
    session: AsyncSession,
    *,
    username: str,
    role: str,
    contractor: str | None,
    password_hash: str,
    now: datetime,
) -> UserRow:
    row = UserRow(
        username=username,
        role=role,
        contractor=contractor,
        password_hash=password_hash,
        disabled=False,
        created_at=now,
        password_changed_at=now,
    )
    if await get_user(session, username) is not None:
        raise UserExists(username)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:  # created at the same moment by someone else
        raise UserExists(username) from exc
    return row


async def get_user(session: AsyncSession, username: str) -> UserRow | None:
    result = await session.execute(select(UserRow).where(UserRow.username == username))
    return result.scalar_one_or_none()


async def list_users(session: AsyncSession) -> Sequence[UserRow]:
    result = await session.execute(select(UserRow).order_by(UserRow.username))
    return result.scalars().all()


async def active_managers(session: AsyncSession) -> list[str]:
    """The usernames of the managers who are not disabled."""
    result = await session.execute(
        select(UserRow.username).where(UserRow.role == "manager", UserRow.disabled.is_(False))
    )
    return list(result.scalars())


async def set_disabled(
    session: AsyncSession, username: str, disabled: bool, *, now: datetime
) -> UserRow:
    """Disable (or enable) a user; disabling also ends their sessions and revokes tokens."""
    user = await get_user(session, username)
    if user is None:
        raise UnknownUser(username)
    user.disabled = disabled
    if disabled:
        await end_user_sessions(session, user.id, now=now)
        await session.execute(
            update(ApiTokenRow)
            .where(ApiTokenRow.user_id == user.id, ApiTokenRow.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    return user


async def set_password_hash(
    session: AsyncSession, user: UserRow, password_hash: str, *, now: datetime, changed: bool
) -> None:
    """Store a new hash: `changed` for a new password, False for a rehash of the same one."""
    user.password_hash = password_hash
    if changed:
        user.password_changed_at = now


# --------------------------------------------------------------------------- tokens


async def add_token(
    session: AsyncSession,
    *,
    user_id: int,
    name: str,
    prefix: str,
    token_hash: str,
    now: datetime,
    expires_at: datetime | None,
) -> ApiTokenRow:
    row = ApiTokenRow(
        user_id=user_id,
        name=name,
        prefix=prefix,
        token_hash=token_hash,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return row


async def find_token(
    session: AsyncSession, token_hash: str, *, now: datetime
) -> tuple[ApiTokenRow, UserRow] | None:
    """The live token with this hash and its user, or None (unknown, revoked or expired)."""
    result = await session.execute(
        select(ApiTokenRow, UserRow)
        .join(UserRow, UserRow.id == ApiTokenRow.user_id)
        .where(ApiTokenRow.token_hash == token_hash, ApiTokenRow.revoked_at.is_(None))
    )
    found = result.one_or_none()
    if found is None:
        return None
    token, user = found
    if token.expires_at is not None and token.expires_at <= now:
        return None
    return token, user


async def touch_token(session: AsyncSession, token_id: int, *, now: datetime) -> None:
    await session.execute(
        update(ApiTokenRow).where(ApiTokenRow.id == token_id).values(last_used_at=now)
    )


async def list_tokens(session: AsyncSession, user_id: int) -> Sequence[ApiTokenRow]:
    result = await session.execute(
        select(ApiTokenRow).where(ApiTokenRow.user_id == user_id).order_by(ApiTokenRow.id)
    )
    return result.scalars().all()


async def revoke_token(session: AsyncSession, user_id: int, prefix: str, *, now: datetime) -> int:
    """Revoke the user's live tokens starting with `prefix`; returns how many."""
    result = await session.execute(
        update(ApiTokenRow)
        .where(
            ApiTokenRow.user_id == user_id,
            ApiTokenRow.prefix == prefix,
            ApiTokenRow.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# ------------------------------------------------------------------------- sessions


async def add_session(
    session: AsyncSession,
    *,
    user_id: int,
    session_hash: str,
    client: str,
    now: datetime,
    expires_at: datetime,
) -> SessionRow:
    row = SessionRow(
        user_id=user_id,
        session_hash=session_hash,
        client=client[:CLIENT_MAX],
        created_at=now,
        expires_at=expires_at,
        last_seen_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def find_session(
    session: AsyncSession, session_hash: str
) -> tuple[SessionRow, UserRow] | None:
    """The session with this hash (ended or not: the caller judges expiry) and its user."""
    result = await session.execute(
        select(SessionRow, UserRow)
        .join(UserRow, UserRow.id == SessionRow.user_id)
        .where(SessionRow.session_hash == session_hash)
    )
    found = result.one_or_none()
    return None if found is None else (found[0], found[1])


async def touch_session(session: AsyncSession, session_id: int, *, now: datetime) -> None:
    await session.execute(
        update(SessionRow).where(SessionRow.id == session_id).values(last_seen_at=now)
    )


async def end_session(session: AsyncSession, session_hash: str, *, now: datetime) -> bool:
    result = await session.execute(
        update(SessionRow)
        .where(SessionRow.session_hash == session_hash, SessionRow.ended_at.is_(None))
        .values(ended_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


async def end_user_sessions(session: AsyncSession, user_id: int, *, now: datetime) -> None:
    await session.execute(
        update(SessionRow)
        .where(SessionRow.user_id == user_id, SessionRow.ended_at.is_(None))
        .values(ended_at=now)
    )


async def purge_login_records(session: AsyncSession, *, before: datetime) -> None:
    """Drop login attempts and ended or expired sessions older than `before`."""
    await session.execute(delete(LoginAttemptRow).where(LoginAttemptRow.at < before))
    await session.execute(delete(SessionRow).where(SessionRow.expires_at < before))
