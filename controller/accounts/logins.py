"""Signing in: `Logins` turns a password, a session id or an API token into a user.

Argon2id password checks (run outside any transaction, and as slow for an unknown username
as for a wrong password), the login limits, browser sessions with an absolute and an idle
limit, and bearer-token lookups. `Accounts` (in `controller.accounts.users`) holds one and
adds user and token management.

The login limits keep guessing out without handing anyone a way to lock a user out
(OWASP's device cookies, see `controller.accounts.device_cookies`):

- a browser the user has signed in on before (a valid device cookie for that username)
  is refused only after `max_failures_per_device` failures *of that browser*;
- any other browser is refused after `max_failures_per_user` failures for the username
  from such browsers, or `max_failures_per_client` failures from its address.

Someone guessing a user's password from any number of addresses is refused after a few
tries and only shuts out browsers the user never signed in on; the user's own browser
still gets in. Failures count within `failure_window_minutes`; a success starts its own
kind (that browser, or unknown browsers for that username) again from zero.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.accounts import device_cookies
from controller.accounts.errors import LoginRefused, LoginThrottled
from controller.accounts.model import (
    AuthSettings,
    LoginResult,
    SignedIn,
    as_signed_in,
    normalise_username,
    sha256_hex,
)
from controller.accounts.passwords import Passwords
from controller.store import login_attempts as attempts
from controller.store import users as store
from controller.store.base import Database, utcnow
from controller.store.login_attempts import LoginOutcome
from controller.store.server_keys import server_key
from controller.store.users import UserRow

__all__ = ["Logins"]

log = logging.getLogger(__name__)


class Logins:
    """Logins, sessions and token lookups over a `Database`, checking passwords with
    `passwords`."""

    #: Write `last_seen_at` / `last_used_at` at most this often.
    TOUCH_EVERY = timedelta(seconds=60)
    #: The `server_keys` row that login cookies (device cookies, login forms) are signed with.
    KEY_NAME = "login-cookies"

    def __init__(self, db: Database, settings: AuthSettings, passwords: Passwords) -> None:
        self.db = db
        self.settings = settings
        self.passwords = passwords
        self._key: bytes | None = None
        self._key_lock = asyncio.Lock()

    async def signing_key(self) -> bytes:
        """The server's key for login cookies (made on first use, then kept in memory)."""
        if self._key is None:
            async with self._key_lock:
                if self._key is None:
                    async with self.db.session() as s:
                        key = await server_key(s, self.KEY_NAME, now=utcnow())
                        await s.commit()
                    self._key = key
        return self._key

    async def _blocked_until(
        self, s: AsyncSession, username: str, client: str, device: str | None, now: datetime
    ) -> datetime | None:
        settings, window = self.settings, self.settings.window

        async def over(limit: int, **key: Any) -> datetime | None:
            times = await attempts.recent_failures(s, since=now - window, limit=limit, **key)
            return times[limit - 1] + window if len(times) >= limit else None

        if device is not None:  # a browser this user signed in on: only its own failures
            waits = [await over(settings.max_failures_per_device, device=device)]
        else:
            waits = [
                await over(settings.max_failures_per_user, username=username, untrusted=True),
                await over(settings.max_failures_per_client, client=client),
            ]
        blocked = [wait for wait in waits if wait is not None]
        return max(blocked) if blocked else None

    async def login(
        self, username: str, password: str, *, client: str, device_cookie: str | None = None
    ) -> LoginResult:
        """Start a session; raise `LoginRefused` or `LoginThrottled`. Audited either way.

        `device_cookie`: the browser's device cookie for this username, if it sent one
        (`controller.accounts.device_cookies`); the result carries a new one."""
        username = normalise_username(username)
        now = utcnow()
        key = await self.signing_key()
        device = device_cookies.verify(key, username, device_cookie)
        async with self.db.session() as s:  # reads only, closed before the slow hash
            retry_at = await self._blocked_until(s, username, client, device, now)
            found = await store.get_user(s, username)
        known = found is not None
        if retry_at is not None:
            await self._refuse(username, known, client, LoginOutcome.RATE_LIMITED, now, device)
            raise LoginThrottled(retry_at, now)
        # Argon2 runs outside any transaction: on SQLite a transaction holds the one
        # write lock, and the ingest must not wait for a password check.
        if found is None:
            await self.passwords.spend_like_a_check(password)
            outcome = LoginOutcome.UNKNOWN_USER
        elif not await self.passwords.check(found.password_hash, password):
            outcome = LoginOutcome.BAD_PASSWORD
        else:
            outcome = LoginOutcome.DISABLED if found.disabled else LoginOutcome.SUCCESS
        if found is None or outcome is not LoginOutcome.SUCCESS:
            await self._refuse(username, known, client, outcome, now, device)
            raise LoginRefused(outcome)
        new_hash = None
        if self.passwords.needs_rehash(found.password_hash):
            new_hash = await self.passwords.hash(password)
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
                session_hash=sha256_hex(session_id),
                client=client,
                now=now,
                expires_at=expires_at,
            )
            row.last_login_at = now
            await attempts.record_attempt(
                s,
                username=username,
                client=client,
                outcome=LoginOutcome.SUCCESS,
                now=now,
                device=device,
            )
            await audit.record(
                s,
                actor=username,
                action="auth.login",
                subject=f"user:{username}",
                details={"client": client, "role": row.role, "browser": _browser(device)},
            )
            signed_in = as_signed_in(row)
            await s.commit()
        log.info("login user=%s role=%s browser=%s", username, signed_in.role, _browser(device))
        return LoginResult(
            signed_in, session_id, expires_at, device_cookies.issue(key, signed_in.username)
        )

    async def _refuse(
        self,
        username: str,
        known: bool,
        client: str,
        outcome: LoginOutcome,
        now: datetime,
        device: str | None,
    ) -> None:
        # What was typed as a username is kept for the rate limit (login_attempts, purged)
        # but not written to the permanent audit log or the logs unless it is a real
        # user: people type passwords into the username field.
        who = username if known else "(unknown)"
        async with self.db.session() as s:
            await attempts.record_attempt(
                s, username=username, client=client, outcome=outcome, now=now, device=device
            )
            await audit.record(
                s,
                actor=who if known else "anonymous",
                action="auth.login_refused"
                if outcome is LoginOutcome.RATE_LIMITED
                else "auth.login_failed",
                subject=f"user:{who}",
                details={"client": client, "reason": outcome.value, "browser": _browser(device)},
            )
            await s.commit()
        log.warning(
            "login refused user=%s reason=%s browser=%s", who, outcome.value, _browser(device)
        )

    async def logout(self, session_id: str, *, client: str) -> bool:
        now = utcnow()
        async with self.db.session() as s:
            found = await store.find_session(s, sha256_hex(session_id))
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
            found = await store.find_session(s, sha256_hex(session_id))
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
            return as_signed_in(user)

    async def session_owner(self, session_id: str) -> str | None:
        """The username a session belongs or belonged to, live or ended (None if unknown):
        what a person was doing when their session ended is kept for them alone."""
        async with self.db.session() as s:
            found = await store.find_session(s, sha256_hex(session_id))
        return None if found is None else found[1].username

    async def user_for_token(self, token: str) -> SignedIn | None:
        now = utcnow()
        async with self.db.session() as s:
            found = await store.find_token(s, sha256_hex(token), now=now)
            if found is None or found[1].disabled:
                return None
            row, user = found
            if row.last_used_at is None or now - row.last_used_at >= self.TOUCH_EVERY:
                await store.touch_token(s, row.id, now=now)
                await s.commit()
            return as_signed_in(user)


def _browser(device: str | None) -> str:
    """How the audit and the log describe the browser of a login attempt."""
    return "unknown" if device is None else "known"
