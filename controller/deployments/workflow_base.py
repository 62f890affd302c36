"""What every step of the deployment workflow shares: who may act, the database, signer,
broker link, policy and clock, loading a deployment under lock, the checks of its state
and its audit entry. `DeploymentWorkflow` (in `workflow`) builds on this."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.deployments.authorization import Publisher
from controller.deployments.errors import (
    ApprovalBlocked,
    DeploymentRefused,
    InvalidDeployment,
    NotPermitted,
    UnknownDeployment,
    UnknownLocation,
)
from controller.deployments.models import DeploymentPolicy, DeploymentRequest
from controller.deployments.pia import PrivacyImpactAssessment, RiskLevel
from controller.store.base import Database, utcnow
from controller.store.deployments import DeploymentRow, LocationRow, get_deployment
from protocol.signing import Signer

__all__ = ["MANAGER", "OPERATOR", "REQUESTERS", "Actor", "WorkflowBase"]

MANAGER, OPERATOR = "manager", "operator"
REQUESTERS = (MANAGER, OPERATOR)


class Actor(Protocol):
    """Who acts: the API's signed-in user, or any object with these two attributes."""

    @property
    def username(self) -> str: ...

    @property
    def role(self) -> str: ...


class WorkflowBase:
    """The workflow's state and the checks and records every step makes."""

    def __init__(
        self,
        db: Database,
        *,
        signer: Signer | None,
        link: Publisher | None = None,
        policy: DeploymentPolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.signer = signer
        self.link = link
        self.policy = policy or DeploymentPolicy()
        self.clock = clock

    @staticmethod
    def _role(actor: Actor, action: str, roles: tuple[str, ...]) -> None:
        if str(actor.role) not in roles:
            raise NotPermitted(actor.username, action, f"it needs the role {' or '.join(roles)}")

    def _independent(self, actor: Actor, row: DeploymentRow, action: str) -> None:
        self._role(actor, f"{action} a deployment", (MANAGER,))
        if actor.username in (row.submitted_by, row.created_by):
            raise NotPermitted(
                actor.username, f"{action} deployment {row.id}",
                "a manager cannot decide a request they raised or submitted; another manager "
                "must decide it",
            )  # fmt: skip

    async def _load(self, session: AsyncSession, deployment_id: str) -> DeploymentRow:
        row = await get_deployment(session, deployment_id, for_update=True)
        if row is None:
            raise UnknownDeployment(deployment_id)
        return row

    @staticmethod
    def _expect(row: DeploymentRow, action: str, allowed: tuple[str, ...], why: str) -> None:
        if row.status not in allowed:
            raise DeploymentRefused(row.id, row.status, action, why)

    @staticmethod
    def _needs_consultation(row: DeploymentRow, pia: PrivacyImpactAssessment, action: str) -> None:
        if pia.residual_risk is RiskLevel.HIGH and pia.prior_consultation is None:
            raise ApprovalBlocked(
                row.id, row.status, action,
                "its residual risk is HIGH: record prior consultation with the ICO first",
            )  # fmt: skip

    async def _audit(
        self, session: AsyncSession, actor: str, action: str, row: DeploymentRow, **details: Any
    ) -> None:
        details.setdefault("status", row.status)
        details.setdefault("unit_id", row.unit_id)
        details.setdefault("location_id", row.location_id)
        await audit.record(
            session, actor=actor, action=f"deployment.{action}", subject=f"deployment:{row.id}",
            details=details, at=self.clock(),
        )  # fmt: skip

    def _check_request(self, req: DeploymentRequest) -> None:
        if req.pia.retention_days > self.policy.retention_max_days:
            raise InvalidDeployment(
                f"retention of {req.pia.retention_days} days exceeds the policy maximum of "
                f"{self.policy.retention_max_days}"
            )

    async def _location(self, session: AsyncSession, location_id: int) -> LocationRow:
        location = await session.get(LocationRow, location_id)
        if location is None:
            raise UnknownLocation(location_id)
        return location
