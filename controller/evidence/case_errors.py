"""Errors of cases, under the controller's root.

ControllerError
└── CaseError
    ├── UnknownCase        no such case (404)
    ├── InvalidCase        a request that breaks a rule of cases (ranges, dates) (422)
    ├── CaseRefused        a step the case's state does not allow now; the message is the
    │                      sentence shown to the user (409)
    └── CaseNotPermitted   the caller's role or part in the case forbids it (403)
"""

from __future__ import annotations

from controller.errors import ControllerError

__all__ = ["CaseError", "CaseNotPermitted", "CaseRefused", "InvalidCase", "UnknownCase"]


class CaseError(ControllerError):
    """Root of the errors of cases."""


class UnknownCase(CaseError):
    def __init__(self, number: str) -> None:
        super().__init__(f"there is no case {number!r}")
        self.number = number


class InvalidCase(CaseError):
    """A request a rule of cases does not allow (the message says which rule)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CaseRefused(CaseError):
    def __init__(self, number: str, status: str, action: str, reason: str) -> None:
        super().__init__(f"case {number} ({status.replace('_', ' ')}) cannot be {action}: {reason}")
        self.number = number
        self.status = status
        self.action = action
        self.reason = reason


class CaseNotPermitted(CaseError):
    def __init__(self, username: str, action: str, reason: str) -> None:
        super().__init__(f"{username} may not {action}: {reason}")
        self.username = username
        self.action = action
        self.reason = reason
