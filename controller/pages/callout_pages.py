"""The callouts board (a contractor sees only their units): acknowledge, attend, resolve with
a note, verify and close; the remote self-test and its report (`selftest_pages`).

Each callout shows what a contractor needs to act on it: the fault and what to check in
words, the site with its address and a map link, the battery time left on a power fault,
and the respond and repair deadlines counting down (overdue ones marked). Resolving sends
the unit a self-test (`controller.callouts.verification`): the callout then reads
"resolved, awaiting verification" and its page follows the check (`/verification`, which
refreshes itself) until the unit shows the fault clear or still failing."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from controller.api.auth import Permission, User, allow, contractor_scope
from controller.callouts import CalloutService
from controller.callouts.board import board, callout_events, callout_in_scope, events_of
from controller.callouts.facts import callout_facts
from controller.callouts.verification import (
    LOG_KINDS,
    resolve,
    verification_state,
    verification_states,
)
from controller.fleet.history import latest_selftest_of, selftest_requests
from controller.pages.render import PageRoute, page
from controller.pages.return_paths import safe_next

__all__ = ["STEPS", "router"]

log = logging.getLogger(__name__)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

CalloutReader = Annotated[User, Depends(allow(Permission.VIEW_CALLOUTS))]
CalloutWorker = Annotated[User, Depends(allow(Permission.WORK_CALLOUTS))]
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
    if done == "resolved":
        if request.query_params.get("check") == "not_sent":
            return (
                f"Callout #{ref} resolved. The self-test to check the repair could not be "
                "sent; the unit's next self-test will check it."
            )
        return (
            f"Callout #{ref} resolved. A self-test has been sent to the unit to check the "
            "repair; the callout stays open until the unit shows the fault clear."
        )
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
        facts = await callout_facts(session, callouts, datetime.now(UTC))
        logs = await events_of(session, [c.id for c in callouts], LOG_KINDS)
    params = {k: v for k, v in (("unit", unit), ("show", show)) if v}
    return {
        "callouts": callouts,
        "reports": reports,
        "requests": requests,
        "facts": facts,
        "checks": verification_states(callouts, logs),
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


async def _callout(request: Request, user: User, callout_id: int) -> dict[str, Any]:
    async with request.app.state.db.session() as session:
        callout = await callout_in_scope(session, callout_id, contractor_scope(user))
        events = await callout_events(session, callout_id)
        reports = await latest_selftest_of(session, {callout.unit_id})
        requests = await selftest_requests(session, {callout.unit_id})
        facts = await callout_facts(session, [callout], datetime.now(UTC))
    return {
        "c": callout,
        "events": events,
        "report": reports.get(callout.unit_id),
        "requested": requests.get(callout.unit_id),
        "f": facts[callout.id],
        "check": verification_state(callout, events),
        "next_step": NEXT_STEP,
        "steps": STEPS,
        "return_to": f"/callouts/{callout_id}",
    }


@router.get("/callouts/{callout_id}", response_class=HTMLResponse)
async def callout_page(request: Request, callout_id: int, user: CalloutReader) -> HTMLResponse:
    context = await _callout(request, user, callout_id)
    return page(
        request,
        "callout.html",
        user,
        title=f"Callout #{callout_id}",
        section="callouts",
        notice=_notice(request),
        **context,
    )


@router.get("/callouts/{callout_id}/verification", response_class=HTMLResponse)
async def callout_verification(
    request: Request, callout_id: int, user: CalloutReader
) -> HTMLResponse:
    """The callout's state, deadlines and the check of its repair (refreshed by the page)."""
    context = await _callout(request, user, callout_id)
    return page(request, "_callout_state.html", user, title=f"Callout #{callout_id}", **context)


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
    db = request.app.state.db
    async with db.session() as session:
        await callout_in_scope(session, callout_id, contractor_scope(user))
        if to != "resolved":
            await service.lifecycle.transition(
                session, callout_id, to, actor=user.username, note=note.strip()
            )
            await session.commit()
    outcome: dict[str, Any] = {"done": done, "ref": callout_id}
    if to == "resolved":
        resolved = await resolve(
            service, db, request.app.state.link, callout_id, actor=user.username, note=note.strip()
        )
        outcome["check"] = "sent" if resolved.command_id else "not_sent"
    log.info("callout=%s step=%s by=%s", callout_id, to, user.username)
    target = safe_next(return_to) or "/callouts"
    glue = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{glue}{urlencode(outcome)}", status_code=303)
