"""Errors of cases, under the controller's root, each with the HTTP `status` the JSON API
and the pages answer with (`controller.errors`).

ControllerError
└── CaseError                                                                      409
    ├── UnknownCase        no such case                                            404
    ├── InvalidCase        a request that breaks a rule of cases (ranges, dates)   422
    ├── CaseRefused        a step the case's state does not allow now              409
    └── CaseNotPermitted   the caller's role or part in the case forbids it        403

Releasing adds its own (`controller.evidence.releases`): `UnknownExhibit`, `UnknownJob`
(404), `WrongPassphrase` (422), `EvidenceKeyUnavailable` (503).
"""

from __future__ import annotations

from controller.errors import ControllerError

__all__ = ["CaseError", "CaseNotPermitted", "CaseRefused", "InvalidCase", "UnknownCase"]


class CaseError(ControllerError):
    """Root of the errors of cases."""

    status = 409


class UnknownCase(CaseError):
    status = 404

    def __init__(self, number: str) -> None:
        super().__init__(f"there is no case {number!r}")
        self.number = number


class InvalidCase(CaseError):
    """A request a rule of cases does not allow (the message says which rule)."""

    status = 422

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CaseRefused(CaseError):
    """A step the case's state (`case_status`) does not allow now."""

    status = 409

    def __init__(self, number: str, case_status: str, action: str, reason: str) -> None:
        super().__init__(
            f"case {number} ({case_status.replace('_', ' ')}) cannot be {action}: {reason}"
        )
        self.number = number
        self.case_status = case_status
        self.action = action
        self.reason = reason


class CaseNotPermitted(CaseError):
    status = 403

    def __init__(self, username: str, action: str, reason: str) -> None:
        super().__init__(f"{username} may not {action}: {reason}")
        self.username = username
        self.action = action
        self.reason = reason
