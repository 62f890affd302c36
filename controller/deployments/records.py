"""Where the deployment workflow's steps read and write: the database, the policy and the
clock, a deployment loaded under lock, a location, and the audit entry of a step."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.deployments.errors import UnknownDeployment, UnknownLocation
from controller.deployments.models import DeploymentPolicy
from controller.store.base import Database, utcnow
from controller.store.deployments import DeploymentRow, LocationRow, get_deployment

__all__ = ["DeploymentRecords"]


class DeploymentRecords:
    """The database, policy and clock shared by every step of the workflow."""

    def __init__(
        self,
        db: Database,
        *,
        policy: DeploymentPolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.policy = policy or DeploymentPolicy()
        self.clock = clock

    async def load(self, session: AsyncSession, deployment_id: str) -> DeploymentRow:
        """The deployment, locked for the rest of the transaction (`UnknownDeployment`)."""
        row = await get_deployment(session, deployment_id, for_update=True)
        if row is None:
            raise UnknownDeployment(deployment_id)
        return row

    async def location(self, session: AsyncSession, location_id: int) -> LocationRow:
        location = await session.get(LocationRow, location_id)
        if location is None:
            raise UnknownLocation(location_id)
        return location

    async def audit(
        self, session: AsyncSession, actor: str, action: str, row: DeploymentRow, **details: Any
    ) -> None:
        """The audit entry of a step, in the transaction that makes it."""
        details.setdefault("status", row.status)
        details.setdefault("unit_id", row.unit_id)
        details.setdefault("location_id", row.location_id)
        await audit.record(
            session, actor=actor, action=f"deployment.{action}", subject=f"deployment:{row.id}",
            details=details, at=self.clock(),
        )  # fmt: skip
