"""The checks every step of the deployment workflow makes: who may act, whether the
deployment is in a state that allows the step, and what the policy allows. Each refuses
with a sentence (`NotPermitted`, `DeploymentRefused`, `ApprovalBlocked`,
`InvalidDeployment`)."""

from __future__ import annotations

from typing import Protocol

from controller.accounts.permissions import Permission, roles_for
from controller.accounts.roles import Role
from controller.deployments.errors import (
    ApprovalBlocked,
    DeploymentRefused,
    InvalidDeployment,
    NotPermitted,
)
from controller.deployments.models import DeploymentPolicy, DeploymentRequest
from controller.deployments.pia import PrivacyImpactAssessment, RiskLevel
from controller.store.deployments import DeploymentRow

__all__ = [
    "MANAGERS",
    "REQUESTERS",
    "Actor",
    "check_request",
    "require_consultation",
    "require_independent",
    "require_role",
    "require_status",
]

#: Who raises, edits, submits and ends deployments (the permission table's word).
REQUESTERS = roles_for(Permission.REQUEST_DEPLOYMENTS)
#: Who decides, revokes and renews them.
MANAGERS = roles_for(Permission.DECIDE_DEPLOYMENTS)


class Actor(Protocol):
    """Who acts: the API's signed-in user, or any object with these two attributes."""

    @property
    def username(self) -> str: ...

    @property
    def role(self) -> str: ...


def require_role(actor: Actor, action: str, roles: tuple[Role, ...]) -> None:
    if str(actor.role) not in roles:
        raise NotPermitted(actor.username, action, f"it needs the role {' or '.join(roles)}")


def require_independent(actor: Actor, row: DeploymentRow, action: str) -> None:
    """A manager who neither raised nor submitted the request."""
    require_role(actor, f"{action} a deployment", MANAGERS)
    if actor.username in (row.submitted_by, row.created_by):
        raise NotPermitted(
            actor.username, f"{action} deployment {row.id}",
            "a manager cannot decide a request they raised or submitted; another manager "
            "must decide it",
        )  # fmt: skip


def require_status(row: DeploymentRow, action: str, allowed: tuple[str, ...], why: str) -> None:
    if row.status not in allowed:
        raise DeploymentRefused(row.id, row.status, action, why)


def require_consultation(row: DeploymentRow, pia: PrivacyImpactAssessment, action: str) -> None:
    """A HIGH residual risk needs prior consultation with the ICO on record."""
    if pia.residual_risk is RiskLevel.HIGH and pia.prior_consultation is None:
        raise ApprovalBlocked(
            row.id, row.status, action,
            "its residual risk is HIGH: record prior consultation with the ICO first",
        )  # fmt: skip


def check_request(policy: DeploymentPolicy, req: DeploymentRequest) -> None:
    if req.pia.retention_days > policy.retention_max_days:
        raise InvalidDeployment(
            f"retention of {req.pia.retention_days} days exceeds the policy maximum of "
            f"{policy.retention_max_days}"
        )
