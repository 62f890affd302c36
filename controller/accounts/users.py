"""User accounts: Argon2 passwords, browser sessions, API tokens and the login rate limit.

`Accounts` is the one place that turns a password, a session id or a token into a user.
Only hashes are stored: Argon2id for passwords (rehashed at the next login when the
parameters change), SHA-256 for session ids and tokens (256 random bits need no slow hash).
It knows nothing about HTTP: `controller.api.auth` wraps it for FastAPI, the CLI calls it
directly. It manages users and tokens itself and holds the two objects it shares them
with: `passwords` (Argon2, `controller.accounts.passwords`) and `logins` (logins,
sessions and token lookups, `controller.accounts.logins`). The roles are in
`controller.accounts.roles`, the settings in `controller.accounts.model`, the errors in
`controller.accounts.errors`.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from controller import audit
from controller.accounts.errors import AccountError
from controller.accounts.logins import Logins
from controller.accounts.model import (
    AuthSettings,
    SignedIn,
    as_signed_in,
    normalise_username,
    sha256_hex,
)
from controller.accounts.passwords import Passwords
from controller.accounts.roles import Role
from controller.store import users as store
from controller.store.base import Database, utcnow
from controller.store.users import UserRow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["TOKEN_PREFIX", "Accounts"]

TOKEN_PREFIX = "cctv_"
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")
PASSWORD_MIN = 12
PASSWORD_MAX = 1024


class Accounts:
    """Users and their tokens over a `Database`; signing in is `logins`."""

    def __init__(self, db: Database, settings: AuthSettings | None = None) -> None:
        self.db = db
        self.settings = settings or AuthSettings()
        self.passwords = Passwords(self.settings)
        self.logins = Logins(db, self.settings, self.passwords)

    async def add_user(
        self, username: str, role: Role | str, password: str, *, contractor: str | None, actor: str
    ) -> SignedIn:
        """Create a user; raise `AccountError` (bad input) or `UserExists`."""
        username = normalise_username(username)
        if not USERNAME_PATTERN.fullmatch(username):
            raise AccountError(
                "a username is 2-64 characters: lower-case letters, digits and . _ @ -"
            )
        role, contractor = _role_and_contractor(role, contractor)
        _check_password(password)
        password_hash = await self.passwords.hash(password)
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
            signed_in = as_signed_in(row)
            await s.commit()
        return signed_in

    async def change_user(
        self, username: str, *, role: Role | str, contractor: str | None, actor: str
    ) -> SignedIn:
        """Change a user's role and contractor (their sessions carry on in the new role).
        Raise `UnknownUser`, or `AccountError` for bad input, no change, a change of one's
        own role, or the last active manager losing the role."""
        username = normalise_username(username)
        role, contractor = _role_and_contractor(role, contractor)
        async with self.db.session() as s:
            row = await store.get_user(s, username)
            if row is None:
                raise store.UnknownUser(username)
            changed: dict[str, dict[str, str | None]] = {}
            if row.role != role.value:
                changed["role"] = {"from": row.role, "to": role.value}
            if row.contractor != contractor:
                changed["contractor"] = {"from": row.contractor, "to": contractor}
            if not changed:
                raise AccountError(f"{username} already has that role and contractor")
            if "role" in changed:
                if normalise_username(actor) == username:
                    raise AccountError(
                        "you cannot change your own role; ask another manager to do it"
                    )
                await _keep_a_manager(s, row, "lose the manager role")
            row.role, row.contractor = role.value, contractor
            await audit.record(
                s, actor=actor, action="user.change", subject=f"user:{username}", details=changed
            )
            signed_in = as_signed_in(row)
            await s.commit()
        return signed_in

    async def set_password(self, username: str, password: str, *, actor: str) -> None:
        """Give a user a new password; their sessions end (they sign in with the new one).
        Raise `UnknownUser` or `AccountError` (a password of the wrong length)."""
        username = normalise_username(username)
        _check_password(password)
        password_hash = await self.passwords.hash(password)
        now = utcnow()
        async with self.db.session() as s:
            row = await store.get_user(s, username)
            if row is None:
                raise store.UnknownUser(username)
            await store.set_password_hash(s, row, password_hash, now=now, changed=True)
            await store.end_user_sessions(s, row.id, now=now)
            await audit.record(
                s, actor=actor, action="user.password_set", subject=f"user:{username}", details={}
            )
            await s.commit()

    async def set_disabled(self, username: str, disabled: bool, *, actor: str) -> None:
        """Disable (ending sessions, revoking tokens) or enable a user; `UnknownUser`, or
        `AccountError` for disabling one's own account or the last active manager."""
        username = normalise_username(username)
        async with self.db.session() as s:
            if disabled:
                if normalise_username(actor) == username:
                    raise AccountError(
                        "you cannot disable your own account; ask another manager to do it"
                    )
                row = await store.get_user(s, username)
                if row is not None:
                    await _keep_a_manager(s, row, "be disabled")
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
                token_hash=sha256_hex(token),
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

    async def user(self, username: str) -> UserRow:
        """One user; `UnknownUser` if there is none by that name."""
        username = normalise_username(username)
        async with self.db.session() as s:
            row = await store.get_user(s, username)
        if row is None:
            raise store.UnknownUser(username)
        return row


def _role_and_contractor(role: Role | str, contractor: str | None) -> tuple[Role, str | None]:
    """The role and contractor name of a user, checked: a contractor user (only) has one."""
    try:
        role = Role(role)
    except ValueError as exc:
        raise AccountError(f"unknown role {role!r}; one of {', '.join(Role)}") from exc
    contractor = contractor.strip() if contractor else None
    if role is Role.CONTRACTOR and not contractor:
        raise AccountError(
            "a contractor user needs their company's name (the contractor, as in the units "
            "inventory)"
        )
    if role is not Role.CONTRACTOR and contractor:
        raise AccountError("only a contractor user carries a contractor name")
    return role, contractor


def _check_password(password: str) -> None:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise AccountError(f"a password is {PASSWORD_MIN} to {PASSWORD_MAX} characters")


async def _keep_a_manager(s: AsyncSession, row: UserRow, change: str) -> None:
    """Refuse a change that would leave no active manager to manage the users."""
    sole = row.role == Role.MANAGER.value and not row.disabled
    if sole and await store.active_managers(s) == [row.username]:
        raise AccountError(
            f"{row.username} is the only active manager and cannot {change}: add or "
            "enable another manager first"
        )
