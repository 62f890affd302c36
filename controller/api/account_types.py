"""What the accounts deal in: roles, the auth settings, a signed-in user, the result of a
login, and the errors of logins and of user management."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from controller.errors import ControllerError
from controller.store.login_attempts import LoginOutcome
from controller.store.users import UserRow

__all__ = [
    "AccountError",
    "AuthSettings",
    "LoginRefused",
    "LoginResult",
    "LoginThrottled",
    "Role",
    "SignedIn",
    "as_signed_in",
    "normalise_username",
    "sha256_hex",
]


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
    #: A new device cookie for the browser that signed in (`controller.api.device_cookies`).
    device_cookie: str = ""


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
    """Too many failed logins for the username, the client address or the browser."""

    def __init__(self, retry_at: datetime, now: datetime) -> None:
        self.retry_after_s = max(1, int((retry_at - now).total_seconds() + 0.999))
        minutes = (self.retry_after_s + 59) // 60
        super().__init__(
            "Too many failed logins for this user or from this address; try again after "
            f"{retry_at:%H:%M} UTC (in {minutes} minute{'s' if minutes != 1 else ''})."
        )
        self.retry_at = retry_at


def sha256_hex(value: str) -> str:
    """How session ids and tokens are stored (256 random bits need no slow hash)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def as_signed_in(row: UserRow) -> SignedIn:
    return SignedIn(row.id, row.username, Role(row.role), row.contractor)


def normalise_username(username: str) -> str:
    return username.strip().lower()
