"""What the accounts deal in: the auth settings, a signed-in user, the result of a login,
and how usernames, session ids and tokens are normalised and stored."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from controller.accounts.roles import Role
from controller.store.users import UserRow

__all__ = [
    "AuthSettings",
    "LoginResult",
    "SignedIn",
    "as_signed_in",
    "normalise_username",
    "sha256_hex",
]


class AuthSettings(BaseModel):
    """Sessions, cookies, the login rate limit and the Argon2 cost."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cookie_name: str = Field("cctv_session", description="Session cookie name")
    cookie_secure: bool = Field(
        False, description="Always mark the cookie Secure (it is anyway on HTTPS requests)"
    )
    session_hours: float = Field(12, gt=0, description="A session ends this long after login")
    idle_minutes: float = Field(120, gt=0, description="...or after this long unused")
    max_failures_per_user: int = Field(
        5, ge=1, description="Failed logins per username from browsers it has not signed in on"
    )
    max_failures_per_client: int = Field(
        20, ge=1, description="Failed logins per address (browsers the user has not signed in on)"
    )
    max_failures_per_device: int = Field(
        5, ge=1, description="Failed logins per browser the user has signed in on before"
    )
    failure_window_minutes: float = Field(15, gt=0, description="Window of the login limits")
    device_days: float = Field(
        180, gt=0, description="How long a browser stays known for a user after signing in"
    )
    argon2_time_cost: int = Field(3, ge=1, description="Argon2id passes")
    argon2_memory_kib: int = Field(65536, ge=8, description="Argon2id memory")
    argon2_parallelism: int = Field(4, ge=1, description="Argon2id lanes")

    @property
    def session_seconds(self) -> int:
        return int(self.session_hours * 3600)

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.failure_window_minutes)

    @property
    def device_seconds(self) -> int:
        return int(self.device_days * 86400)


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
    #: A new device cookie for the browser that signed in (`controller.accounts.device_cookies`).
    device_cookie: str = ""


def sha256_hex(value: str) -> str:
    """How session ids and tokens are stored (256 random bits need no slow hash)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def as_signed_in(row: UserRow) -> SignedIn:
    return SignedIn(row.id, row.username, Role(row.role), row.contractor)


def normalise_username(username: str) -> str:
    return username.strip().lower()
