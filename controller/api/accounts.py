"""User accounts: Argon2 passwords, browser sessions, API tokens and the login rate limit.

`Accounts` is the one place that turns a password, a session id or a token into a user.
Only hashes are stored: Argon2id for passwords (rehashed at the next login when the
parameters change), SHA-256 for session ids and tokens (256 random bits need no slow hash).
It knows nothing about HTTP: `controller.api.auth` wraps it for FastAPI, the CLI calls it
directly.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.errors import ControllerError
from controller.store import users as store
from controller.store.base import Database, utcnow
from controller.store.users import LoginOutcome, UserRow

__all__ = [
    "TOKEN_PREFIX",
    "AccountError",
    "Accounts",
    "AuthSettings",
    "LoginRefused",
    "LoginResult",
    "LoginThrottled",
    "Role",
    "SignedIn",
]

log = logging.getLogger(__name__)

TOKEN_PREFIX = "cctv_"
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")
PASSWORD_MIN = 12
PASSWORD_MAX = 1024


class Role(StrEnum):
    MANAGER = "manager"
    OPERATOR = "operator"
    DATA_CONTROLLER = "data_controller"
    CONTRACTOR = "contractor"
    AUDITOR = "auditor"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


class AuthSettings(BaseModel):
    """Sessions, cookies, the login rate limit and the Argon2 cost."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cookie_name: str = Field("cctv_session", description="Session cookie name")
    cookie_secure: bool = Field(
        False, description="Always mark the cookie Secure (it is anyway on HTTPS requests)"
    )
    session_hours: float = Field(12, gt=0, description="A session ends this long after login")
    idle_minutes: float = Field(120, gt=0, description="...or after this long unused")
    max_failures_per_user: int = Field(5, ge=1, description="Failed logins per username")
    max_failures_per_client: int = Field(20, ge=1, description="Failed logins per address")
    failure_window_minutes: float = Field(15, gt=0, description="Window of the two limits")
    argon2_time_cost: int = Field(3, ge=1, description="Argon2id passes")
    argon2_memory_kib: int = Field(65536, ge=8, description="Argon2id memory")
    argon2_parallelism: int = Field(4, ge=1, description="Argon2id lanes")

    @property
    def session_seconds(self) -> int:
        return int(self.session_hours * 3600)

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.failure_window_minutes)


@dataclass(frozen=True, slots=True)
class SignedIn:
    user_id: int
    username: str
    role: Role
    contractor: str | None


@dataclass(frozen=True, slots=True)
class LoginResult:
    user: SignedIn
    session_id: str  # the cookie value: never logged, never stored
    expires_at: datetime


class AccountError(ControllerError):
    """A user or token that cannot be created or changed as asked (the message says why)."""


class LoginRefused(ControllerError):
    """Wrong username or password, or a disabled account (`reason` says which; the message
    is the same for the first two, so it does not tell which usernames exist)."""

    def __init__(self, reason: LoginOutcome) -> None:
        disabled = reason is LoginOutcome.DISABLED
        super().__init__(
            "This account is disabled; ask a manager to enable it."
            if disabled
            else "Wrong username or password."
        )
        self.reason = reason


class LoginThrottled(ControllerError):
    """Too many failed logins for the username or the client address."""

    def __init__(self, retry_at: datetime, now: datetime) -> None:
        self.retry_after_s = max(1, int((retry_at - now).total_seconds() + 0.999))
        minutes = (self.retry_after_s + 59) // 60
        super().__init__(
            "Too many failed logins for this user or from this address; try again after "
            f"{retry_at:%H:%M} UTC (in {minutes} minute{'s' if minutes != 1 else ''})."
        )
        self.retry_at = retry_at


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _signed_in(row: UserRow) -> SignedIn:
    return SignedIn(row.id, row.username, Role(row.role), row.contractor)


def normalise_username(username: str) -> str:
    return username.strip().lower()


class Accounts:
    """Users, sessions and tokens over a `Database`."""

    #: Write `last_seen_at` / `last_used_at` at most this often.
    TOUCH_EVERY = timedelta(seconds=60)

    def __init__(self, db: Database, settings: AuthSettings | None = None) -> None:
        self.db = db
        self.settings = settings or AuthSettings()
        self.hasher = PasswordHasher(
            time_cost=self.settings.argon2_time_cost,
            memory_cost=self.settings.argon2_memory_kib,
            parallelism=self.settings.argon2_parallelism,
        )
        self._dummy_hash: str | None = None

    # -------------------------------------------------------------------- passwords

    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        def check() -> bool:
            try:
                return self.hasher.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)

    async def _spend_like_a_verify(self, password: str) -> None:
        # An unknown username costs as much time as a wrong password, so timing does not
        # tell which usernames exist.
        if self._dummy_hash is None:
            self._dummy_hash = await self._hash(secrets.token_urlsafe(16))
        await self._verify(self._dummy_hash, password)

    # ---------------------------------------------------------------------- logins

    async def _blocked_until(
        self, s: AsyncSession, username: str, client: str, now: datetime
    ) -> datetime | None:
        window = self.settings.window
        waits = []
        for limit, key in (
            (self.settings.max_failures_per_user, {"username": username}),
            (self.settings.max_failures_per_client, {"client": client}),
        ):
            times = await store.recent_failures(s, since=now - window, limit=limit, **key)
            if len(times) >= limit:
                waits.append(times[limit - 1] + window)
        return max(waits) if waits else None

    async def login(self, username: str, password: str, *, client: str) -> LoginResult:
        """Start a session; raise `LoginRefused` or `LoginThrottled`. Audited either way."""
        username = normalise_username(username)
        now = utcnow()
        async with self.db.session() as s:  # reads only, closed before the slow hash
            retry_at = await self._blocked_until(s, username, client, now)
            found = await store.get_user(s, username)
        known = found is not None
        if retry_at is not None:
            await self._refuse(username, known, client, LoginOutcome.RATE_LIMITED, now)
            raise LoginThrottled(retry_at, now)
        # Argon2 runs outside any transaction: on SQLite a transaction holds the one
        # write lock, and the ingest must not wait for a password check.
        if found is None:
            await self._spend_like_a_verify(password)
            outcome = LoginOutcome.UNKNOWN_USER
        elif not await self._verify(found.password_hash, password):
            outcome = LoginOutcome.BAD_PASSWORD
        else:
            outcome = LoginOutcome.DISABLED if found.disabled else LoginOutcome.SUCCESS
        if found is None or outcome is not LoginOutcome.SUCCESS:
            await self._refuse(username, known, client, outcome, now)
            raise LoginRefused(outcome)
        new_hash = None
        if self.hasher.check_needs_rehash(found.password_hash):
            new_hash = await self._hash(password)
        session_id = secrets.token_urlsafe(32)
        expires_at = now + timedelta(seconds=self.settings.session_seconds)
        async with self.db.session() as s:
            row = await s.get(UserRow, found.id)
            if row is None or row.disabled:  # removed or disabled meanwhile
                raise LoginRefused(LoginOutcome.DISABLED)
            if new_hash is not None:
                await store.set_password_hash(s, row, new_hash, now=now, changed=False)
            await store.add_session(
                s,
                user_id=row.id,
                session_hash=_sha256(session_id),
                client=client,
                now=now,
                expires_at=expires_at,
            )
            row.last_login_at = now
            await store.record_attempt(
                s, username=username, client=client, outcome=LoginOutcome.SUCCESS, now=now
            )
            await audit.record(
                s,
                actor=username,
                action="auth.login",
                subject=f"user:{username}",
                details={"client": client, "role": row.role},
            )
            signed_in = _signed_in(row)
            await s.commit()
        log.info("login user=%s role=%s", username, signed_in.role)
        return LoginResult(signed_in, session_id, expires_at)

    async def _refuse(
        self, username: str, known: bool, client: str, outcome: LoginOutcome, now: datetime
    ) -> None:
        # What was typed as a username is kept for the rate limit (login_attempts, purged)
        # but not written to the permanent audit log or the logs unless it is a real
        # user: people type passwords into the username field.
        who = username if known else "(unknown)"
        async with self.db.session() as s:
            await store.record_attempt(
                s, username=username, client=client, outcome=outcome, now=now
            )
            await audit.record(
                s,
                actor=who if known else "anonymous",
                action="auth.login_refused"
                if outcome is LoginOutcome.RATE_LIMITED
                else "auth.login_failed",
                subject=f"user:{who}",
                details={"client": client, "reason": outcome.value},
            )
            await s.commit()
        log.warning("login refused user=%s reason=%s", who, outcome.value)

    async def logout(self, session_id: str, *, client: str) -> bool:
        now = utcnow()
        async with self.db.session() as s:
            found = await store.find_session(s, _sha256(session_id))
            if found is None or found[0].ended_at is not None:
                return False
            await store.end_session(s, found[0].session_hash, now=now)
            await audit.record(
                s,
                actor=found[1].username,
                action="auth.logout",
                subject=f"user:{found[1].username}",
                details={"client": client},
            )
            await s.commit()
        return True

    async def user_for_session(self, session_id: str) -> SignedIn | None:
        """The user of a live session (not ended, expired or idle; user not disabled)."""
        now = utcnow()
        idle = timedelta(minutes=self.settings.idle_minutes)
        async with self.db.session() as s:
            found = await store.find_session(s, _sha256(session_id))
            if found is None:
                return None
            row, user = found
            if (
                row.ended_at is not None
                or row.expires_at <= now
                or row.last_seen_at + idle <= now
                or user.disabled
            ):
                return None
            if now - row.last_seen_at >= self.TOUCH_EVERY:
                await store.touch_session(s, row.id, now=now)
                await s.commit()
            return _signed_in(user)

    async def user_for_token(self, token: str) -> SignedIn | None:
        now = utcnow()
        async with self.db.session() as s:
            found = await store.find_token(s, _sha256(token), now=now)
            if found is None or found[1].disabled:
                return None
            row, user = found
            if row.last_used_at is None or now - row.last_used_at >= self.TOUCH_EVERY:
                await store.touch_token(s, row.id, now=now)
                await s.commit()
            return _signed_in(user)

    # ------------------------------------------------------------------ management

    async def add_user(
        self, username: str, role: Role | str, password: str, *, contractor: str | None, actor: str
    ) -> SignedIn:
        """Create a user; raise `AccountError` (bad input) or `UserExists`."""
        username = normalise_username(username)
        if not USERNAME_PATTERN.fullmatch(username):
            raise AccountError(
                "a username is 2-64 characters: lower-case letters, digits and . _ @ -"
            )
        try:
            role = Role(role)
        except ValueError as exc:
            raise AccountError(f"unknown role {role!r}; one of {', '.join(Role)}") from exc
        contractor = contractor.strip() if contractor else None
        if role is Role.CONTRACTOR and not contractor:
            raise AccountError("a contractor user needs --contractor (their company's name)")
        if role is not Role.CONTRACTOR and contractor:
            raise AccountError("only a contractor user carries a contractor name")
        if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
            raise AccountError(f"a password is {PASSWORD_MIN} to {PASSWORD_MAX} characters")
        password_hash = await self._hash(password)
        async with self.db.session() as s:
            row = await store.add_user(
                s,
                username=username,
                role=role.value,
                contractor=contractor,
                password_hash=password_hash,
                now=utcnow(),
            )
            await audit.record(
                s,
                actor=actor,
                action="user.add",
                subject=f"user:{username}",
                details={"role": role.value, "contractor": contractor},
            )
            signed_in = _signed_in(row)
            await s.commit()
        return signed_in

    async def set_disabled(self, username: str, disabled: bool, *, actor: str) -> None:
        """Disable (ending sessions, revoking tokens) or enable a user; `UnknownUser`."""
        username = normalise_username(username)
        async with self.db.session() as s:
            await store.set_disabled(s, username, disabled, now=utcnow())
            await audit.record(
                s,
                actor=actor,
                action="user.disable" if disabled else "user.enable",
                subject=f"user:{username}",
                details={},
            )
            await s.commit()

    async def create_token(
        self, username: str, *, name: str, actor: str, expires_in: timedelta | None = None
    ) -> str:
        """A new bearer token for `username`, returned once; only its hash is kept."""
        username = normalise_username(username)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        async with self.db.session() as s:
            row = await store.get_user(s, username)
            if row is None:
                raise store.UnknownUser(username)
            if row.disabled:
                raise AccountError(f"user {username!r} is disabled")
            await store.add_token(
                s,
                user_id=row.id,
                name=name,
                prefix=token[:12],
                token_hash=_sha256(token),
                now=now,
                expires_at=None if expires_in is None else now + expires_in,
            )
            await audit.record(
                s,
                actor=actor,
                action="token.create",
                subject=f"user:{username}",
                details={"name": name, "prefix": token[:12]},
            )
            await s.commit()
        return token

    async def revoke_token(self, username: str, prefix: str, *, actor: str) -> int:
        username = normalise_username(username)
        async with self.db.session() as s:
            row = await store.get_user(s, username)
            if row is None:
                raise store.UnknownUser(username)
            count = await store.revoke_token(s, row.id, prefix, now=utcnow())
            if count:
                await audit.record(
                    s,
                    actor=actor,
                    action="token.revoke",
                    subject=f"user:{username}",
                    details={"prefix": prefix},
                )
            await s.commit()
        return count

    async def users(self) -> list[UserRow]:
        async with self.db.session() as s:
            return list(await store.list_users(s))
