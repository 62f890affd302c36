"""JSON routes for a unit's reference pictures: ask the unit for one (a signed command), and
what the control room holds (facts and the address of each picture; the picture itself is
served, audited, at `/units/{unit_id}/reference-frames/{sha256}`).

The picture is the camera's view before privacy masks: managers, operators and data
controllers see it, contractors and auditors never (`Permission.VIEW_REFERENCE_FRAME`);
managers and operators may ask for one (`Permission.REQUEST_REFERENCE_FRAME`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from controller.api.auth import Permission, User, allow
from controller.fleet.snapshots import (
    BEFORE_MASKS,
    ReferenceView,
    latest_reference,
    reference_requests,
    request_reference,
)
from controller.fleet.units import unit_in_scope
from controller.store.base import utcnow

__all__ = ["picture_path", "router"]

router = APIRouter(prefix="/api", tags=["fleet"])

Viewer = Annotated[User, Depends(allow(Permission.VIEW_REFERENCE_FRAME))]
Requester = Annotated[User, Depends(allow(Permission.REQUEST_REFERENCE_FRAME))]
REQUESTS_SHOWN = 10


def picture_path(unit_id: str, sha256: str) -> str:
    """Where a person's browser (or a script with a token) gets the picture itself."""
    return f"/units/{unit_id}/reference-frames/{sha256}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReferenceOut(_Model):
    request_id: str
    requested_by: str
    requested_at: datetime
    state: str = Field(description="received, waiting, failed (see failure) or expired")
    failure: str | None = Field(None, description="The unit's reason for sending no picture")
    sha256: str | None = None
    captured_at: datetime | None = Field(None, description="When the camera took it")
    received_at: datetime | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    picture_url: str | None = Field(None, description="The JPEG; each view is audited")


class ReferencePictures(_Model):
    unit_id: str
    shows: str = Field(description="What every picture shows")
    latest: ReferenceOut | None = Field(description="The newest picture received")
    requests: list[ReferenceOut] = Field(description="The latest requests, newest first")


class ReferenceRequested(_Model):
    unit_id: str
    request_id: str
    expires_at: datetime
    detail: str


def _out(view: ReferenceView, now: datetime) -> ReferenceOut:
    return ReferenceOut(
        request_id=view.request_id,
        requested_by=view.requested_by,
        requested_at=view.requested_at,
        state=view.state(now),
        failure=view.failure,
        sha256=view.sha256,
        captured_at=view.captured_at,
        received_at=view.received_at,
        width=view.width,
        height=view.height,
        bytes=view.size,
        picture_url=None if view.sha256 is None else picture_path(view.unit_id, view.sha256),
    )


@router.get(
    "/units/{unit_id}/reference-snapshots",
    response_model=ReferencePictures,
    summary="The unit's reference pictures: the newest and the latest requests",
)
async def get_references(unit_id: str, request: Request, user: Viewer) -> ReferencePictures:
    async with request.app.state.db.session() as session:
        await unit_in_scope(session, unit_id, None)
        latest = await latest_reference(session, unit_id)
        asked = await reference_requests(session, unit_id, limit=REQUESTS_SHOWN)
    now = utcnow()
    return ReferencePictures(
        unit_id=unit_id,
        shows=BEFORE_MASKS,
        latest=None if latest is None else _out(latest, now),
        requests=[_out(v, now) for v in asked],
    )


@router.post(
    "/units/{unit_id}/reference-snapshots",
    response_model=ReferenceRequested,
    status_code=202,
    summary="Ask the unit for a reference picture of its camera's view (a signed command)",
)
async def post_reference(unit_id: str, request: Request, user: Requester) -> ReferenceRequested:
    db = request.app.state.db
    async with db.session() as session:
        await unit_in_scope(session, unit_id, None)
    asked = await request_reference(db, request.app.state.link, unit_id, actor=user.username)
    return ReferenceRequested(
        unit_id=unit_id,
        request_id=asked.request_id,
        expires_at=asked.expires_at,
        detail="Picture requested; it is listed among the unit's reference pictures once the "
        "unit sends it, usually within seconds.",
    )
