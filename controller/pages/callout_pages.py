"""The callouts board (a contractor sees only their units): acknowledge, attend, resolve with
a note, verify and close; run a remote self-test and watch its report arrive."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from controller.api.auth import Permission, User, allow, contractor_scope
from controller.callouts import CalloutService
from controller.callouts.board import board, callout_events, callout_in_scope
from controller.errors import ControllerError
from controller.fleet.commands import request_selftest
from controller.fleet.history import latest_selftest_of, selftest_requests
from controller.fleet.units import unit_in_scope
from controller.pages.render import PageRoute, page
from controller.pages.session_pages import safe_next

__all__ = ["STEPS", "router"]

log = logging.getLogger(__name__)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

CalloutReader = Annotated[User, Depends(allow(Permission.VIEW_CALLOUTS))]
CalloutWorker = Annotated[User, Depends(allow(Permission.WORK_CALLOUTS))]
SelfTester = Annotated[User, Depends(allow(Permission.RUN_SELFTEST))]
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


async def _board(
    request: Request, user: User, unit: str | None, show: Literal["open", "closed"]
) -> dict[str, Any]:
    scope = contractor_scope(user)
    async with request.app.state.db.session() as session:
        callouts = await board(
            session, show=show, contractor=scope, unit_id=unit, closed_limit=CLOSED_SHOWN
        )
        units = {c.unit_id for c in callouts}
        reports = await latest_selftest_of(session, units)
        requests = await selftest_requests(session, units)
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


Show = Annotated[Literal["open", "closed"], Query()]
UnitFilter = Annotated[str | None, Query(max_length=64)]


@router.get("/callouts", response_class=HTMLResponse)
async def callouts(
    request: Request, user: CalloutReader, unit: UnitFilter = None, show: Show = "open"
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
    request: Request, user: CalloutReader, unit: UnitFilter = None, show: Show = "open"
) -> HTMLResponse:
    context = await _board(request, user, unit, show)
    return page(request, "callouts_board.html", user, title="Callouts", **context)


@router.get("/callouts/{callout_id}", response_class=HTMLResponse)
async def callout_page(request: Request, callout_id: int, user: CalloutReader) -> HTMLResponse:
    async with request.app.state.db.session() as session:
        callout = await callout_in_scope(session, callout_id, contractor_scope(user))
        events = await callout_events(session, callout_id)
        reports = await latest_selftest_of(session, {callout.unit_id})
        requests = await selftest_requests(session, {callout.unit_id})
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
    user: CalloutWorker,
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
        await callout_in_scope(session, callout_id, contractor_scope(user))
        await service.lifecycle.transition(
            session, callout_id, to, actor=user.username, note=note.strip()
        )
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
    user: SelfTester,
    return_to: Annotated[str, Form(max_length=500)] = "",
) -> RedirectResponse:
    async with request.app.state.db.session() as session:
        await unit_in_scope(session, unit_id, contractor_scope(user))
    try:
        await request_selftest(
            request.app.state.db, request.app.state.link, unit_id, actor=user.username
        )
    except ControllerError as exc:
        raise HTTPException(
            503, f"The self-test request could not be sent to {unit_id}: {exc}."
        ) from exc
    target = safe_next(return_to) or f"/units/{unit_id}"
    glue = "&" if "?" in target else "?"
    return RedirectResponse(
        f"{target}{glue}{urlencode({'done': 'selftest', 'ref': unit_id})}", status_code=303
    )
