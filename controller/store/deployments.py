"""Deployment tables: locations, deployments (with their PIA as JSON plus the columns the
workflow queries on), the signed authorizations and revocations sent to units.

Written and read by `controller.deployments`. Migration: 0003_deployments.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.base import Base, UTCDateTime

__all__ = [
    "LIVE_STATUSES",
    "AuthorizationRow",
    "DeploymentRow",
    "LocationRow",
    "RevocationRow",
    "deployments_at",
    "get_deployment",
    "list_deployments",
    "live_on_unit",
    "unpublished",
]

Json = JSON()
#: Statuses in which a deployment holds (or is about to hold) an authorization.
LIVE_STATUSES = ("approved", "active", "review_due")


class LocationRow(Base):
    __tablename__ = "locations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    address: Mapped[str] = mapped_column(String(500), default="")
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    geofence_radius_m: Mapped[float] = mapped_column(Float)
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DeploymentRow(Base):
    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    unit_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("units.unit_id", ondelete="RESTRICT"), index=True
    )
    location_id: Mapped[int] = mapped_column(
        ForeignKey("locations.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[str] = mapped_column(String(20), index=True)
    planned_start: Mapped[datetime] = mapped_column(UTCDateTime())
    planned_end: Mapped[datetime] = mapped_column(UTCDateTime())
    review_due: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    retention_days: Mapped[int] = mapped_column(Integer)
    residual_risk: Mapped[str] = mapped_column(String(10))
    referral_source: Mapped[str] = mapped_column(String(30))
    pia: Mapped[dict[str, Any]] = mapped_column(Json)
    profile: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(Json)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    submitted_by: Mapped[str | None] = mapped_column(String(64))
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    ico_consulted_on: Mapped[datetime | None] = mapped_column(UTCDateTime())
    authorization_id: Mapped[str | None] = mapped_column(String(128))
    authorized_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    review_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lapsed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_by: Mapped[str | None] = mapped_column(String(64))
    end_reason: Mapped[str] = mapped_column(Text, default="")
    renewals: Mapped[int] = mapped_column(Integer, default=0)


class AuthorizationRow(Base):
    """A signed authorization as sent (retained) to a unit."""

    __tablename__ = "authorizations"

    authorization_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), index=True
    )
    unit_id: Mapped[str] = mapped_column(String(64), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    issued_by: Mapped[str] = mapped_column(String(64))
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime())
    message: Mapped[dict[str, Any]] = mapped_column(Json)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RevocationRow(Base):
    """A signed revocation as sent (retained, replacing the authorization) to a unit."""

    __tablename__ = "revocations"

    revocation_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    authorization_id: Mapped[str] = mapped_column(
        ForeignKey("authorizations.authorization_id", ondelete="CASCADE"), index=True
    )
    deployment_id: Mapped[str] = mapped_column(String(64), index=True)
    unit_id: Mapped[str] = mapped_column(String(64), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    issued_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    message: Mapped[dict[str, Any]] = mapped_column(Json)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


# ------------------------------------------------------------------------ queries


async def get_deployment(
    session: AsyncSession, deployment_id: str, *, for_update: bool = False
) -> DeploymentRow | None:
    query = select(DeploymentRow).where(DeploymentRow.id == deployment_id)
    if for_update and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def list_deployments(
    session: AsyncSession,
    *,
    statuses: Sequence[str] | None = None,
    unit_id: str | None = None,
    location_id: int | None = None,
    review_before: datetime | None = None,
    limit: int = 500,
) -> list[DeploymentRow]:
    query = select(DeploymentRow)
    if statuses:
        query = query.where(DeploymentRow.status.in_(list(statuses)))
    if unit_id is not None:
        query = query.where(DeploymentRow.unit_id == unit_id)
    if location_id is not None:
        query = query.where(DeploymentRow.location_id == location_id)
    if review_before is not None:
        query = query.where(DeploymentRow.review_due <= review_before)
    query = query.order_by(DeploymentRow.created_at.desc(), DeploymentRow.id).limit(limit)
    return list((await session.execute(query)).scalars())


async def deployments_at(session: AsyncSession, location_id: int) -> list[DeploymentRow]:
    """Every deployment ever requested at a location, newest first (its history)."""
    return await list_deployments(session, location_id=location_id, limit=10_000)


async def live_on_unit(
    session: AsyncSession, unit_id: str, *, excluding: str | None = None
) -> list[DeploymentRow]:
    query = select(DeploymentRow).where(
        DeploymentRow.unit_id == unit_id, DeploymentRow.status.in_(LIVE_STATUSES)
    )
    if excluding is not None:
        query = query.where(DeploymentRow.id != excluding)
    return list((await session.execute(query)).scalars())


async def unpublished(
    session: AsyncSession,
) -> tuple[list[AuthorizationRow], list[RevocationRow]]:
    """Signed messages not yet acknowledged by the broker (sent again by the review job).
    A revoked authorization is never sent again."""
    auths = (
        await session.execute(
            select(AuthorizationRow)
            .where(AuthorizationRow.published_at.is_(None), AuthorizationRow.revoked_at.is_(None))
            .order_by(AuthorizationRow.issued_at)
        )
    ).scalars()
    revs = (
        await session.execute(
            select(RevocationRow)
            .where(RevocationRow.published_at.is_(None))
            .order_by(RevocationRow.issued_at)
        )
    ).scalars()
    return list(auths), list(revs)
