"""A remote self-test asked for from a page, and its progress until the unit's report.

    POST /units/{id}/selftest                 send the signed command; back to the page
                                              (a script asking for JSON gets the command
                                              and where to follow it instead)
    GET  /units/{id}/selftest/{command_id}    JSON: the command's state in words and, once
                                              the unit has answered, its report drawn as
                                              on the page

`static/selftest.js` sends a page's self-test form (`data-live-selftest`) this way and shows
"pending", then the result, without a reload; without scripts the form posts as usual and
the page shows the pending request and, later, the report.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from controller.api.auth import Permission, User, allow, contractor_scope
from controller.errors import ControllerError
from controller.fleet.command_log import MAINTENANCE_ACTIONS, command_view
from controller.fleet.commands import request_selftest
from controller.fleet.history import selftest_answering
from controller.fleet.units import unit_in_scope
from controller.pages.render import PageRoute, wants_json
from controller.pages.return_paths import safe_next
from controller.pages.templating import fmt_ago, templates

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

SelfTester = Annotated[User, Depends(allow(Permission.RUN_SELFTEST))]
FleetUser = Annotated[User, Depends(allow(Permission.VIEW_FLEET))]
SELFTEST = "selftest_now"
_FINAL = {"done", "failed", "rejected", "expired"}
JUST_NOW_S = 5


@router.post("/units/{unit_id}/selftest")
async def selftest_now(
    request: Request,
    unit_id: str,
    user: SelfTester,
    return_to: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    async with request.app.state.db.session() as session:
        await unit_in_scope(session, unit_id, contractor_scope(user))
    try:
        command = await request_selftest(
            request.app.state.db, request.app.state.link, unit_id, actor=user.username
        )
    except ControllerError as exc:
        raise HTTPException(
            503, f"The self-test request could not be sent to {unit_id}: {exc}."
        ) from exc
    command_id = command.body.command_id
    if wants_json(request):
        return JSONResponse(
            {
                "command_id": command_id,
                "status_url": f"/units/{quote(unit_id)}/selftest/{quote(command_id)}",
                "message": f"Self-test requested from {unit_id}; waiting for the unit's answer.",
            },
            status_code=202,
        )
    target = safe_next(return_to) or f"/units/{unit_id}"
    glue = "&" if "?" in target else "?"
    return RedirectResponse(
        f"{target}{glue}{urlencode({'done': 'selftest', 'ref': unit_id})}", status_code=303
    )


@router.get("/units/{unit_id}/selftest/{command_id}")
async def selftest_progress(
    request: Request, unit_id: str, command_id: str, user: FleetUser
) -> JSONResponse:
    """Where a self-test asked for stands: `done` once the unit has reported (or refused,
    failed, or let the command expire); `message` says it in words; `html` is the report
    as the page draws it."""
    now = datetime.now(UTC)
    scope = contractor_scope(user)
    async with request.app.state.db.session() as session:
        await unit_in_scope(session, unit_id, scope)
        command = await command_view(session, unit_id, command_id, now=now)
        if command is None or (scope is not None and command.action not in MAINTENANCE_ACTIONS):
            raise HTTPException(404, f"No self-test {command_id} was asked of {unit_id}.")
        report = await selftest_answering(session, unit_id, command_id)
    html = None
    if report is not None:
        message = f"The unit has reported: self-test {report.verdict}."
        html = templates.env.get_template("_selftest_summary.html").render(
            report=report, requested=None, now=now
        )
    elif command.state in _FINAL - {"done"}:
        message = f"The self-test was not run: {command.state_words}."
    else:
        asked = (now - command.issued_at).total_seconds()
        when = "just now" if asked < JUST_NOW_S else fmt_ago(command.issued_at, now)
        message = f"Self-test requested {when}; {command.state_words.replace('sent, ', '')}."
    return JSONResponse(
        {
            # The report answering the command shows it done, whatever acks arrived.
            "state": "done" if report is not None else command.state,
            "done": report is not None or command.state in _FINAL - {"done"},
            "message": message,
            "html": html,
        },
        headers={"Cache-Control": "no-store"},
    )
