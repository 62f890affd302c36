"""The callouts board (a contractor sees only their units): acknowledge, attend, resolve with
a note, verify and close; run a remote self-test and watch its report arrive."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.api.auth import Role, User, contractor_scope, require_role
from controller.callouts import OPEN_STATES, CalloutService
from controller.errors import ControllerError
from controller.pages import unit_commands
from controller.pages.fleet_pages import scoped_unit
from controller.pages.render import PageRoute, page
from controller.pages.session_pages import safe_next
from controller.store.fleet import Callout, CalloutEvent, SelfTestRecord

__all__ = ["STEPS", "router"]

log = logging.getLogger(__name__)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

CalloutUser = Annotated[User, Depends(require_role(Role.MANAGER, Role.OPERATOR, Role.CONTRACTOR))]
#: Form action -> (state it moves to, button label, past tense for the notice).
STEPS: dict[str, tuple[str, str, str]] = {
    "acknowledge": ("acknowledged", "Acknowledge", "acknowledged"),
    "attend": ("attending", "Attending", "marked as attending"),
    "resolve": ("resolved", "Resolve", "resolved"),
    "verify": ("verified", "Verify", "verified"),
    "close": ("closed", "Close", "closed"),
}
#: The action offered for a callout in each state.
NEXT_STEP = {
    "raised": "acknowledge",
    "acknowledged": "attend",
    "attending": "resolve",
    "resolved": "verify",
    "verified": "close",
}
NOTE_MAX = 2000
CLOSED_SHOWN = 20


def _notice(request: Request) -> str | None:
    done = request.query_params.get("done")
    ref = request.query_params.get("ref", "")
    ref = ref if ref.isalnum() or ref.replace("-", "").replace("_", "").isalnum() else ""
    if done in {step[2] for step in STEPS.values()}:
        return f"Callout #{ref} {done}."
    if done == "selftest":
        return f"Self-test requested from {ref}; its report appears here when the unit answers."
    return None


async def _board(request: Request, user: User, unit: str | None, show: str) -> dict[str, Any]:
    scope = contractor_scope(user)
    query = select(Callout).order_by(Callout.priority, Callout.raised_at)
    if show == "open":
        query = query.where(Callout.status.in_(OPEN_STATES))
    else:
        query = query.where(Callout.status == "closed").limit(CLOSED_SHOWN)
    if scope is not None:
        query = query.where(Callout.contractor == scope)
    if unit:
        query = query.where(Callout.unit_id == unit)
    async with request.app.state.db.session() as session:
        callouts = list((await session.execute(query)).scalars())
        reports = await _latest_reports(session, {c.unit_id for c in callouts})
        requests = await unit_commands.pending_selftests(session, {c.unit_id for c in callouts})
    params = {k: v for k, v in (("unit", unit), ("show", show)) if v}
    return {
        "callouts": callouts,
        "reports": reports,
        "requests": requests,
        "next_step": NEXT_STEP,
        "steps": STEPS,
        "unit": unit or "",
        "show": show,
        "scoped": scope is not None,
        "board_url": "/callouts/board" + (f"?{urlencode(params)}" if params else ""),
        "return_to": "/callouts" + (f"?{urlencode(params)}" if params else ""),
    }


async def _latest_reports(session: AsyncSession, units: set[str]) -> dict[str, SelfTestRecord]:
    latest: dict[str, SelfTestRecord] = {}
    if not units:
        return latest
    rows = await session.execute(
        select(SelfTestRecord)
        .where(SelfTestRecord.unit_id.in_(units))
        .order_by(SelfTestRecord.finished_at)
    )
    for row in rows.scalars():
        latest[row.unit_id] = row
    return latest


Show = Annotated[str, Query(pattern="^(open|closed)$")]
UnitFilter = Annotated[str | None, Query(max_length=64)]


@router.get("/callouts", response_class=HTMLResponse)
async def callouts(
    request: Request, user: CalloutUser, unit: UnitFilter = None, show: Show = "open"
) -> HTMLResponse:
    context = await _board(request, user, unit, show)
    return page(
        request,
        "callouts.html",
        user,
        title="Callouts",
        section="callouts",
        notice=_notice(request),
        **context,
    )


@router.get("/callouts/board", response_class=HTMLResponse)
async def callouts_board(
    request: Request, user: CalloutUser, unit: UnitFilter = None, show: Show = "open"
) -> HTMLResponse:
    context = await _board(request, user, unit, show)
    return page(request, "callouts_board.html", user, title="Callouts", **context)


async def _scoped_callout(session: AsyncSession, user: User, callout_id: int) -> Callout:
    callout = await session.get(Callout, callout_id)
    scope = contractor_scope(user)
    if callout is None or (scope is not None and callout.contractor != scope):
        raise HTTPException(404, f"There is no callout #{callout_id} on your list.")
    return callout


@router.get("/callouts/{callout_id}", response_class=HTMLResponse)
async def callout_page(request: Request, callout_id: int, user: CalloutUser) -> HTMLResponse:
    async with request.app.state.db.session() as session:
        callout = await _scoped_callout(session, user, callout_id)
        events = list(
            (
                await session.execute(
                    select(CalloutEvent)
                    .where(CalloutEvent.callout_id == callout_id)
                    .order_by(CalloutEvent.at, CalloutEvent.id)
                )
            ).scalars()
        )
        reports = await _latest_reports(session, {callout.unit_id})
        requests = await unit_commands.pending_selftests(session, {callout.unit_id})
    return page(
        request,
        "callout.html",
        user,
        title=f"Callout #{callout_id}",
        section="callouts",
        notice=_notice(request),
        c=callout,
        events=events,
        report=reports.get(callout.unit_id),
        requested=requests.get(callout.unit_id),
        next_step=NEXT_STEP,
        steps=STEPS,
        return_to=f"/callouts/{callout_id}",
    )


@router.post("/callouts/{callout_id}/{action}")
async def callout_step(
    request: Request,
    callout_id: int,
    action: str,
    user: CalloutUser,
    note: Annotated[str, Form(max_length=NOTE_MAX)] = "",
    return_to: Annotated[str, Form(max_length=500)] = "",
) -> RedirectResponse:
    if action not in STEPS:
        raise HTTPException(404, f"{action!r} is not a step of a callout.")
    to, _label, done = STEPS[action]
    if to == "resolved" and not note.strip():
        raise HTTPException(
            422, "Say what was done to fix the fault: a resolve needs a note for the record."
        )
    service = CalloutService(request.app.state.settings)
    async with request.app.state.db.session() as session:
        await _scoped_callout(session, user, callout_id)
        await service.transition(session, callout_id, to, actor=user.username, note=note.strip())
        await session.commit()
    log.info("callout=%s step=%s by=%s", callout_id, to, user.username)
    target = safe_next(return_to) or "/callouts"
    glue = "&" if "?" in target else "?"
    return RedirectResponse(
        f"{target}{glue}{urlencode({'done': done, 'ref': callout_id})}", status_code=303
    )


@router.post("/units/{unit_id}/selftest")
async def selftest_now(
    request: Request,
    unit_id: str,
    user: CalloutUser,
    return_to: Annotated[str, Form(max_length=500)] = "",
) -> RedirectResponse:
    async with request.app.state.db.session() as session:
        await scoped_unit(session, user, unit_id)
    try:
        await unit_commands.send_selftest(request, unit_id, actor=user.username)
    except ControllerError as exc:
        raise HTTPException(
            503, f"The self-test request could not be sent to {unit_id}: {exc}."
        ) from exc
    target = safe_next(return_to) or f"/units/{unit_id}"
    glue = "&" if "?" in target else "?"
    return RedirectResponse(
        f"{target}{glue}{urlencode({'done': 'selftest', 'ref': unit_id})}", status_code=303
    )
