"""Which role may do what: the one table every JSON route, every page, every template and
the deployment workflow consult.

    may(Role.AUDITOR, Permission.VIEW_AUDIT)             # True
    roles_for(Permission.DECIDE_DEPLOYMENTS)             # (Role.MANAGER,)

A contractor allowed something here is still limited to the units on their contract, and
within those to maintenance data (the routes and pages scope every query). Signing in and
out, reading one's own account and the API reference need no permission: any signed-in
user may.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from controller.accounts.roles import Role

__all__ = ["PERMISSIONS", "Permission", "may", "roles_for", "who_may"]


class Permission(StrEnum):
    """Something a person may do; the value is the name templates use (`may("...")`)."""

    VIEW_FLEET = "view_fleet"
    """The fleet overview and each unit's page: health, faults, power, self-tests."""
    VIEW_REFERENCE_FRAME = "view_reference_frame"
    """A unit's reference frame, the picture privacy masks are drawn on."""
    REQUEST_REFERENCE_FRAME = "request_reference_frame"
    """Ask a unit for a new reference frame (a signed command): one still picture of
    its camera's view, before privacy masks."""
    VIEW_FOOTAGE = "view_footage"
    """A unit's recording index and footage, and the exhibits made from a case's footage:
    watch them in the browser and download them (each view is in the review log)."""
    RUN_SELFTEST = "run_selftest"
    """Send a unit the signed command to test itself now."""
    VIEW_CALLOUTS = "view_callouts"
    """Maintenance callouts, their history and SLA clocks."""
    WORK_CALLOUTS = "work_callouts"
    """Move a callout on: acknowledge, attend, resolve, verify, close."""
    VIEW_DEPLOYMENTS = "view_deployments"
    """Locations, deployment requests and their PIAs."""
    REQUEST_DEPLOYMENTS = "request_deployments"
    """Add and edit locations; raise, edit, submit and end deployments; record prior
    consultation, a decision not to deploy and the evaluation."""
    DECIDE_DEPLOYMENTS = "decide_deployments"
    """Approve or reject a request (not one's own), revoke, renew; retire a location."""
    VIEW_CASES = "view_cases"
    """Cases: why footage is wanted, their ranges, holds, retrievals, exhibits and
    timeline."""
    RAISE_CASE = "raise_case"
    """Raise a case asking for footage."""
    DECIDE_CASE = "decide_case"
    """Approve or refuse a case (not one's own), extend a subject access request, close a
    case."""
    RECORD_CASE_OUTCOME = "record_case_outcome"
    """Record the outcome of a case (arrest, charge, disclosed, ...)."""
    RELEASE_FOOTAGE = "release_footage"
    """Unlock the evidence key for one job, make an exhibit of a case's footage and
    release it."""
    VIEW_EVIDENCE_LOGS = "view_evidence_logs"
    """The review log and the release log, and their CSV downloads."""
    VIEW_KPIS = "view_kpis"
    """Key performance figures over a period."""
    VIEW_AUDIT = "view_audit"
    """The audit log and the check of its hash chain."""
    VIEW_USERS = "view_users"
    """The list of users and their roles."""
    MANAGE_USERS = "manage_users"
    """Add users; change a user's role, contractor or password; disable and enable them."""


_M, _O, _D, _C, _A = (
    Role.MANAGER,
    Role.OPERATOR,
    Role.DATA_CONTROLLER,
    Role.CONTRACTOR,
    Role.AUDITOR,
)

#: Permission -> the roles that have it.
PERMISSIONS: Mapping[Permission, frozenset[Role]] = MappingProxyType(
    {
        Permission.VIEW_FLEET: frozenset({_M, _O, _D, _C, _A}),
        Permission.VIEW_REFERENCE_FRAME: frozenset({_M, _O, _D}),
        Permission.REQUEST_REFERENCE_FRAME: frozenset({_M, _O}),
        Permission.VIEW_FOOTAGE: frozenset({_M, _D}),
        Permission.RUN_SELFTEST: frozenset({_M, _O, _C}),
        Permission.VIEW_CALLOUTS: frozenset({_M, _O, _C, _A}),
        Permission.WORK_CALLOUTS: frozenset({_M, _O, _C}),
        Permission.VIEW_DEPLOYMENTS: frozenset({_M, _O, _D, _A}),
        Permission.REQUEST_DEPLOYMENTS: frozenset({_M, _O}),
        Permission.DECIDE_DEPLOYMENTS: frozenset({_M}),
        Permission.VIEW_CASES: frozenset({_M, _O, _D, _A}),
        Permission.RAISE_CASE: frozenset({_M, _O, _D}),
        Permission.DECIDE_CASE: frozenset({_D}),
        Permission.RECORD_CASE_OUTCOME: frozenset({_M, _D}),
        Permission.RELEASE_FOOTAGE: frozenset({_D}),
        Permission.VIEW_EVIDENCE_LOGS: frozenset({_M, _O, _D, _A}),
        Permission.VIEW_KPIS: frozenset({_M, _A}),
        Permission.VIEW_AUDIT: frozenset({_M, _A}),
        Permission.VIEW_USERS: frozenset({_M}),
        Permission.MANAGE_USERS: frozenset({_M}),
    }
)


def may(role: Role | str, permission: Permission | str) -> bool:
    """Whether `role` has `permission` (ValueError for a name that is neither)."""
    return Role(role) in PERMISSIONS[Permission(permission)]


def roles_for(permission: Permission | str) -> tuple[Role, ...]:
    """The roles with `permission`, in the order `Role` declares them."""
    allowed = PERMISSIONS[Permission(permission)]
    return tuple(role for role in Role if role in allowed)


def who_may(permission: Permission | str) -> str:
    """The roles with `permission` in words: "a manager, an operator or a contractor"."""
    names = [("an " if r.label[0] in "aeiou" else "a ") + r.label for r in roles_for(permission)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
