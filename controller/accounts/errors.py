"""The errors of logins and of user management."""

from __future__ import annotations

from datetime import datetime

from controller.errors import ControllerError
from controller.store.login_attempts import LoginOutcome

__all__ = ["AccountError", "LoginRefused", "LoginThrottled"]


class AccountError(ControllerError):
    """A user or token that cannot be created or changed as asked (the message says why)."""

    status = 400


class LoginRefused(ControllerError):
    """Wrong username or password, or a disabled account (`reason` says which; the message
    is the same for the first two, so it does not tell which usernames exist)."""

    status = 401

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

    status = 429

    def __init__(self, retry_at: datetime, now: datetime) -> None:
        self.retry_after_s = max(1, int((retry_at - now).total_seconds() + 0.999))
        minutes = (self.retry_after_s + 59) // 60
        super().__init__(
            "Too many failed logins for this user or from this address; try again after "
            f"{retry_at:%H:%M} UTC (in {minutes} minute{'s' if minutes != 1 else ''})."
        )
        self.retry_at = retry_at
