"""A unit's reference pictures in the browser: the picture itself (the newest, or one by its
SHA-256), the facts the mask editor shows beside it, and asking the unit for a new one.

    GET  /units/{id}/reference-frame               the newest picture (JPEG), or a neutral
                                                   grid saying there is none yet (SVG)
    GET  /units/{id}/reference-frames/{sha256}     that picture (JPEG)
    GET  /units/{id}/reference-frame/about         what is shown beside the picture (the
                                                   mask editor, the unit page), with the
                                                   button that asks the unit for a new one
                                                   (`static/reference.js`, through the JSON
                                                   API's POST /api/units/{id}/reference-snapshots)

The picture is the camera's view before privacy masks, shown only to the control room
(`Permission.VIEW_REFERENCE_FRAME`: a contractor is refused, and never offered a link);
every picture sent is a view written to the audit log (`controller.fleet.snapshots`).
`frame_shown` tells the PIA pages which picture a PIA's masks were drawn on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from controller.accounts.permissions import may
from controller.api.auth import Permission, User, allow
from controller.api.snapshot_routes import picture_path
from controller.fleet.snapshots import (
    ReferenceView,
    latest_reference,
    open_reference,
    reference_by_sha256,
    reference_requests,
)
from controller.fleet.units import unit_in_scope
from controller.pages.pia_view import FrameShown
from controller.pages.render import PageRoute, page
from controller.pages.templating import macro
from controller.store.base import Session, utcnow

__all__ = ["ReferencePanel", "frame_shown", "reference_panel", "router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

FrameUser = Annotated[User, Depends(allow(Permission.VIEW_REFERENCE_FRAME))]
Sha256 = Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: A request that brought no picture is mentioned for this long after it was made.
STALE_AFTER = timedelta(hours=1)
_placeholder_frame = macro("_frames.html", "placeholder_frame")
#: Pictures and the grid are personal data or depend on who asks: never cached.
_NO_STORE = {"Cache-Control": "no-store, private"}


def _jpeg(unit_id: str, sha256: str, jpeg: bytes) -> Response:
    return Response(
        jpeg,
        media_type="image/jpeg",
        headers={
            **_NO_STORE,
            "Content-Disposition": f'inline; filename="{unit_id}-{sha256[:12]}.jpg"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/units/{unit_id}/reference-frame")
async def reference_frame(request: Request, unit_id: str, user: FrameUser) -> Response:
    """The newest picture from the unit; without one, a neutral 16:9 grid of the same
    proportions saying so."""
    db = request.app.state.db
    async with db.session() as session:
        await unit_in_scope(session, unit_id, None)
        latest = await latest_reference(session, unit_id)
    if latest is None or latest.sha256 is None:
        return Response(_placeholder_frame(unit_id), media_type="image/svg+xml", headers=_NO_STORE)
    shown = await open_reference(db, unit_id, sha256=latest.sha256, actor=user.username)
    return _jpeg(unit_id, latest.sha256, shown.jpeg)


@router.get("/units/{unit_id}/reference-frames/{sha256}")
async def reference_frame_by_sha256(
    request: Request, unit_id: str, sha256: str, user: FrameUser
) -> Response:
    if not _SHA256.fullmatch(sha256):
        raise HTTPException(404, f"{sha256[:80]} is not the SHA-256 of a picture.")
    db = request.app.state.db
    async with db.session() as session:
        await unit_in_scope(session, unit_id, None)
    shown = await open_reference(db, unit_id, sha256=sha256, actor=user.username)
    return _jpeg(unit_id, sha256, shown.jpeg)


@dataclass(frozen=True, slots=True)
class ReferencePanel:
    """What is shown beside a unit's reference picture: the picture (None: none yet) and
    the request followed (`state`: waiting, failed, expired or received)."""

    unit_id: str
    picture: ReferenceView | None
    picture_url: str | None
    tracked: ReferenceView | None
    state: str | None


async def reference_panel(
    session: Session, unit_id: str, *, sha256: str | None = None, request_id: str | None = None
) -> ReferencePanel:
    """The picture `request_id` brought once it has come, else the picture `sha256`, else
    the newest; and the request followed: `request_id`, or the unit's latest request while
    it has brought no picture."""
    asked = await reference_requests(session, unit_id, limit=10)
    now = utcnow()
    tracked = next((r for r in asked if r.request_id == request_id), None)
    if tracked is None and asked and not asked[0].received:
        recent = now - asked[0].requested_at <= STALE_AFTER
        if recent or asked[0].state(now) == "waiting":
            tracked = asked[0]
    picture: ReferenceView | None = None
    if tracked is not None and tracked.received:
        picture = tracked
    elif sha256 is not None:
        picture = await reference_by_sha256(session, unit_id, sha256)
    if picture is None:
        picture = await latest_reference(session, unit_id)
    return ReferencePanel(
        unit_id=unit_id,
        picture=picture,
        picture_url=None
        if picture is None or picture.sha256 is None
        else picture_path(unit_id, picture.sha256),
        tracked=tracked,
        state=None if tracked is None else tracked.state(now),
    )


@router.get("/units/{unit_id}/reference-frame/about", response_class=HTMLResponse)
async def reference_about(
    request: Request,
    unit_id: str,
    user: FrameUser,
    sha256: Sha256 | None = None,
    request_id: Annotated[str | None, Query(alias="request", max_length=128)] = None,
) -> HTMLResponse:
    """What is shown beside the picture (see `reference_panel`), as an HTML fragment."""
    async with request.app.state.db.session() as session:
        await unit_in_scope(session, unit_id, None)
        panel = await reference_panel(session, unit_id, sha256=sha256, request_id=request_id)
    return page(
        request, "reference_about.html", user, title=f"Reference picture of {unit_id}", panel=panel
    )


async def frame_shown(
    session: Session, unit_id: str, sha256: str | None, user: User
) -> FrameShown | None:
    """The picture a PIA's masks were drawn on, as `user` may see it (None: the PIA
    records none)."""
    if not sha256:
        return None
    held = await reference_by_sha256(session, unit_id, sha256)
    viewable = held is not None and may(user.role, Permission.VIEW_REFERENCE_FRAME)
    return FrameShown(
        sha256=sha256,
        url=picture_path(unit_id, sha256) if viewable else None,
        held=held is not None,
        captured_at=None if held is None else held.captured_at,
        requested_by=None if held is None else held.requested_by,
    )
