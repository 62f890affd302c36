"""JSON routes for maintenance callouts: list, detail and the lifecycle steps.

    raised -> acknowledged -> attending -> resolved -> verified -> closed

Each step is `POST /api/callouts/{id}/<step>` with an optional note; the lifecycle rules
(and their refusals, 409 with a sentence) are `controller.callouts`. A contractor sees and
moves only the callouts of the units on their contract; any other reads as unknown (404).
A resolve also sends the unit a signed self-test to verify the repair
(`controller.callouts.verification`); the callout stays `resolved` until the unit shows the
fault clear (`verified`), or goes back to `attending` when it still fails.
"""

# No `from __future__ import annotations`: the step routes are built in a loop and their
# annotations refer to the loop's values, which FastAPI could not resolve from strings.
from typing import Annotated, Literal, get_args

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from controller.api.auth import Permission, User, allow, contractor_scope
from controller.callouts import STATES, CalloutService, CalloutView
from controller.callouts.verification import resolve
from controller.errors import UnknownCallout

__all__ = ["STEPS", "router"]

router = APIRouter(prefix="/api", tags=["callouts"])

#: URL step -> the state it moves the callout to.
STEPS: dict[str, str] = {
    "acknowledge": "acknowledged",
    "attend": "attending",
    "resolve": "resolved",
    "verify": "verified",
    "close": "closed",
}


StatusFilter = Literal[
    "open", "raised", "acknowledged", "attending", "resolved", "verified", "closed"
]
#: Callouts read at most when filtering on what the service cannot (state, priority, SLA).
SCAN_LIMIT = 5000


class StepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    note: str = Field("", max_length=2000, description="What was done or found")


def _service(request: Request) -> CalloutService:
    return CalloutService(request.app.state.settings)


def _visible(callout: CalloutView, user: User) -> bool:
    scope = contractor_scope(user)
    return scope is None or callout.contractor == scope


@router.get("/callouts", response_model=list[CalloutView], summary="Callouts, newest first")
async def get_callouts(
    request: Request,
    user: Annotated[User, Depends(allow(Permission.VIEW_CALLOUTS))],
    status: Annotated[
        StatusFilter | None,
        Query(description="'open' (any state but closed), or one state"),
    ] = None,
    unit: Annotated[str | None, Query(max_length=64, description="One unit")] = None,
    priority: Annotated[Literal["P1", "P2", "P3"] | None, Query()] = None,
    contractor: Annotated[
        str | None, Query(max_length=200, description="One contractor (control room only)")
    ] = None,
    breached: Annotated[bool | None, Query(description="Only SLA-breached (or not)")] = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 200,
) -> list[CalloutView]:
    scope = contractor_scope(user)
    state = None if status in (None, "open") else status
    filtered = state is not None or priority is not None or breached is not None
    async with request.app.state.db.session() as session:
        callouts = await _service(request).list(
            session,
            open_only=status == "open",
            contractor=scope if scope is not None else contractor,
            unit_id=unit,
            limit=SCAN_LIMIT if filtered else limit,
        )
    selected = [
        c
        for c in callouts
        if (state is None or c.status == state)
        and (priority is None or c.priority == priority)
        and (breached is None or (c.respond_breached or c.repair_breached) == breached)
    ]
    return selected[:limit]


@router.get("/callouts/{callout_id}", response_model=CalloutView, summary="One callout")
async def get_callout(
    callout_id: int,
    request: Request,
    user: Annotated[User, Depends(allow(Permission.VIEW_CALLOUTS))],
) -> CalloutView:
    async with request.app.state.db.session() as session:
        callout = await _service(request).get(session, callout_id)
    if not _visible(callout, user):
        raise UnknownCallout(callout_id)
    return callout


def _step_route(step: str, to: str) -> None:
    async def move(
        callout_id: int,
        request: Request,
        user: Annotated[User, Depends(allow(Permission.WORK_CALLOUTS))],
        body: Annotated[StepRequest | None, Body()] = None,
    ) -> CalloutView:
        service = _service(request)
        async with request.app.state.db.session() as session:
            current = await service.get(session, callout_id)
            if not _visible(current, user):
                raise UnknownCallout(callout_id)
            note = body.note if body else ""
            if to != "resolved":
                await service.lifecycle.transition(
                    session, callout_id, to, actor=user.username, note=note
                )
                await session.commit()
        if to == "resolved":
            await resolve(
                service,
                request.app.state.db,
                request.app.state.link,
                callout_id,
                actor=user.username,
                note=note,
            )
        async with request.app.state.db.session() as session:
            return await service.get(session, callout_id)

    move.__name__ = f"post_callout_{step}"
    router.add_api_route(
        f"/callouts/{{callout_id}}/{step}",
        move,
        methods=["POST"],
        response_model=CalloutView,
        summary=f"Move a callout to {to}",
    )


for _step, _to in STEPS.items():
    _step_route(_step, _to)

assert set(get_args(StatusFilter)) == {"open", *STATES}, "StatusFilter is out of date"
