"""The deployment request and its PIA, one step at a time (`controller.deployments.drafts`):

    GET/POST /deployments/new                          step 1: unit, place and dates
    GET/POST /deployments/{id}/steps/{step}            the PIA's steps of a draft
    GET/POST /deployments/{id}/steps/review            check the answers, and submit
    POST     /deployments/{id}/copy                    a rejected request, copied to revise

Every step is saved as it stands ("Save as draft" leaves the form; "Save and continue"
goes on once the step's fields are right, else shows what is wrong beside each field),
so a long assessment can be completed over several sittings. The prior consultation with
the ICO is asked for only when the risks entered leave a high residual risk. A request
for a unit that already has a deployment or request on overlapping dates says so on its
first step and before it is submitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from controller.api.auth import Permission, User, allow
from controller.api.deployment_routes import workflow_for
from controller.deployments import locations as loc
from controller.deployments.drafts import (
    STEPS,
    Step,
    draft_residual_risk,
    problems,
    request_data,
    revisions,
    step_of,
    step_problems,
)
from controller.deployments.errors import (
    DeploymentError,
    IncompleteRequest,
    InvalidDeployment,
    UnknownLocation,
)
from controller.deployments.listing import DeploymentLine, overlapping
from controller.deployments.models import DeploymentRequest, DraftStart
from controller.deployments.pia import (
    PrivacyImpactAssessment,
    ProtectedCharacteristic,
    RiskLevel,
)
from controller.errors import ControllerError, UnknownUnitError, sentence
from controller.fleet.units import units_in_service
from controller.pages.form_data import coerce, field_errors, form_tree
from controller.pages.forms import model_form
from controller.pages.pia_view import model_view
from controller.pages.render import PageRoute, page
from controller.pages.snapshot_pages import frame_shown
from controller.store.deployments import DeploymentRow, LocationRow, get_deployment

__all__ = ["PREFIX", "StepState", "router", "step_states"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

Requester = Annotated[User, Depends(allow(Permission.REQUEST_DEPLOYMENTS))]
PREFIX = "d"
#: Up to this many units, the unit is chosen from a list; beyond, its id is typed.
UNIT_LIST_MAX = 300
_BY_KEY = {step.key: step for step in STEPS}
_REVIEW = Step("review", "Check and submit", (), "")


@dataclass(frozen=True, slots=True)
class StepState:
    """A step as the list of steps shows it: `state` is "done", "problems" (with
    `count`), "todo" (nothing entered yet) or "current"."""

    key: str
    title: str
    number: int
    state: str
    count: int
    url: str


def _started(row: DeploymentRow, step: Step) -> bool:
    if step.key == "request":
        return True
    pia = row.pia or {}
    return any(name in pia for name in step.fields)


def step_states(row: DeploymentRow, found: Mapping[str, str]) -> list[StepState]:
    """Each step of the draft `row` with where it stands, given its `problems`."""
    states = []
    for number, step in enumerate(STEPS, start=1):
        count = len(step_problems(found, step.key))
        state = "todo" if not _started(row, step) else "problems" if count else "done"
        states.append(
            StepState(
                step.key,
                step.title,
                number,
                state,
                count,
                f"/deployments/{row.id}/steps/{step.key}",
            )
        )
    return states


def _errors(found: Mapping[str, str]) -> dict[str, str]:
    """Problems keyed as the form names its fields, in words."""
    return {
        (f"{PREFIX}.{path}" if path else PREFIX): sentence(text) for path, text in found.items()
    }


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.multi_items() if isinstance(v, str)}


def _redirect(path: str, **query: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?{urlencode(query)}" if query else path, status_code=303)


async def _draft(request: Request, deployment_id: str) -> DeploymentRow:
    async with request.app.state.db.session() as session:
        row = await get_deployment(session, deployment_id)
    if row is None:
        raise HTTPException(404, f"There is no deployment {deployment_id}.")
    if row.status != "draft":
        raise HTTPException(
            409,
            f"Deployment {row.id} is {row.status.replace('_', ' ')}: only a draft's answers "
            "can be changed.",
        )
    return row


async def _overlaps(
    request: Request, unit_id: str, start: datetime, end: datetime, excluding: str | None
) -> list[DeploymentLine]:
    async with request.app.state.db.session() as session:
        return await overlapping(session, unit_id, start, end, excluding=excluding)


def _new_pia_values(pia: Mapping[str, Any]) -> dict[str, Any]:
    """The PIA's answers as the form shows them: the nine protected characteristics are
    listed for the equality impact until it is answered."""
    values = dict(pia)
    values.setdefault(
        "equality",
        [{"characteristic": c.value, "impact": "none"} for c in ProtectedCharacteristic],
    )
    return values


# ------------------------------------------------------------------ step 1: the request


async def _unit_and_place_choices(request: Request) -> tuple[dict[str, Any], list[LocationRow]]:
    async with request.app.state.db.session() as session:
        units = await units_in_service(session, limit=UNIT_LIST_MAX + 1)
    places = await loc.list_locations(workflow_for(request))
    choices: dict[str, Any] = {f"{PREFIX}.location_id": [(str(p.id), p.name) for p in places]}
    if len(units) <= UNIT_LIST_MAX:
        choices[f"{PREFIX}.unit_id"] = [
            (u.unit_id, f"{u.unit_id} ({u.site or 'no site'})") for u in units
        ]
    return choices, places


async def _request_step(
    request: Request,
    user: User,
    *,
    values: Mapping[str, Any],
    row: DeploymentRow | None = None,
    errors: Mapping[str, str] | None = None,
    status_code: int = 200,
    notice: str | None = None,
) -> HTMLResponse:
    choices, places = await _unit_and_place_choices(request)
    overlaps: list[DeploymentLine] = []
    if row is not None:
        overlaps = await _overlaps(request, row.unit_id, row.planned_start, row.planned_end, row.id)
    found = problems(row) if row is not None else {}
    return page(
        request,
        "deployment_step.html",
        user,
        title="Raise a deployment request" if row is None else f"Request {row.id}",
        section="deployments",
        status_code=status_code,
        notice=notice,
        d=row,
        step=STEPS[0],
        steps=step_states(row, found) if row is not None else _blank_steps(),
        form_action="/deployments/new" if row is None else f"/deployments/{row.id}/steps/request",
        form_html=model_form(
            DraftStart, values=values, prefix=PREFIX, errors=errors or {}, choices=choices
        ),
        errors=dict(errors or {}),
        has_locations=bool(places),
        overlaps=overlaps,
        first=True,
        last=False,
        masks_unit=None,
        ico=None,
        revised=None,
    )


def _blank_steps() -> list[StepState]:
    return [
        StepState(step.key, step.title, number, "todo", 0, "")
        for number, step in enumerate(STEPS, start=1)
    ]


def _start(form: Mapping[str, str]) -> tuple[dict[str, Any], DraftStart | dict[str, str]]:
    """The request's fields from the form, and the DraftStart they make (or the errors
    keyed by field)."""
    tree = form_tree(form.items(), prefix=PREFIX)
    data = coerce(DraftStart, {k: v for k, v in tree.items() if k in DraftStart.model_fields})
    try:
        return data, DraftStart.model_validate(data)
    except ValidationError as exc:
        return data, field_errors(exc, prefix=PREFIX)


def _start_refused(exc: ControllerError) -> dict[str, str]:
    """Why the unit, place and dates were refused, beside the field at fault."""
    if isinstance(exc, UnknownUnitError):
        return {f"{PREFIX}.unit_id": sentence(exc)}
    if isinstance(exc, UnknownLocation | InvalidDeployment):
        return {f"{PREFIX}.location_id": sentence(exc)}
    return {PREFIX: sentence(exc)}


@router.get("/deployments/new", response_class=HTMLResponse)
async def new_request(
    request: Request, user: Requester, unit: str | None = None, location: int | None = None
) -> HTMLResponse:
    values = {"unit_id": unit or "", "location_id": "" if location is None else str(location)}
    return await _request_step(request, user, values=values)


@router.post("/deployments/new")
async def create_request(request: Request, user: Requester) -> Response:
    form = await _form(request)
    data, start = _start(form)
    if not isinstance(start, DraftStart):
        return await _request_step(request, user, values=data, errors=start, status_code=422)
    try:
        row = await workflow_for(request).start_draft(user, start)
    except (DeploymentError, UnknownUnitError) as exc:
        errors = _start_refused(exc)
        return await _request_step(request, user, values=data, errors=errors, status_code=422)
    if form.get("then") == "draft":
        return _redirect(f"/deployments/{row.id}", done="created", ref=row.id)
    return _redirect(f"/deployments/{row.id}/steps/{STEPS[1].key}", done="started", ref=row.id)


# ------------------------------------------------------------------ the PIA's steps


def _step(key: str) -> Step:
    if key == "review":
        return _REVIEW
    if key not in _BY_KEY:
        raise HTTPException(404, f"{key!r} is not a step of a deployment request.")
    return _BY_KEY[key]


def _neighbours(step: Step) -> tuple[str | None, str]:
    keys = [s.key for s in STEPS]
    index = keys.index(step.key)
    previous = keys[index - 1] if index > 0 else None
    following = keys[index + 1] if index + 1 < len(keys) else "review"
    return previous, following


def _asks_ico(pia: Mapping[str, Any]) -> bool:
    """The ICO's prior consultation is asked for at a high residual risk, or when some of
    it was entered before the risk came down (so it can be seen and cleared)."""
    return draft_residual_risk(pia) is RiskLevel.HIGH or bool(pia.get("prior_consultation"))


def _shown_fields(step: Step, pia: Mapping[str, Any]) -> tuple[str, ...]:
    if step.key == "advice" and not _asks_ico(pia):
        return tuple(f for f in step.fields if f != "prior_consultation")
    return step.fields


NOTICES = {
    "started": "Draft {ref} saved. Its answers are kept at every step: use Save as draft to "
    "stop and come back to it later from Deployments, Drafts.",
    "copied": "This draft is a copy of the rejected request {ref}: revise it where the "
    "manager's reasons ask, then submit it again.",
}


def _notice(request: Request) -> str | None:
    done = request.query_params.get("done", "")
    ref = "".join(c for c in request.query_params.get("ref", "") if c.isalnum() or c in "-_#")
    return NOTICES[done].format(ref=ref[:64]) if done in NOTICES else None


async def _pia_step(
    request: Request,
    user: User,
    row: DeploymentRow,
    step: Step,
    *,
    errors: Mapping[str, str] | None = None,
    status_code: int = 200,
    notice: str | None = None,
) -> HTMLResponse:
    pia = row.pia or {}
    found = problems(row)
    previous, following = _neighbours(step)
    residual = draft_residual_risk(pia)
    return page(
        request,
        "deployment_step.html",
        user,
        title=f"Request {row.id}: {step.title}",
        section="deployments",
        status_code=status_code,
        notice=notice or _notice(request),
        d=row,
        step=step,
        steps=step_states(row, found),
        form_action=f"/deployments/{row.id}/steps/{step.key}",
        form_html=model_form(
            PrivacyImpactAssessment,
            values=_new_pia_values(pia),
            prefix=f"{PREFIX}.pia",
            errors=errors or {},
            frame_source=(f"{PREFIX}.unit_id", "/units/{unit}/reference-frame"),
            only=_shown_fields(step, pia),
        ),
        errors=dict(errors or {}),
        has_locations=True,
        overlaps=[],
        first=previous is None,
        last=following == "review",
        masks_unit=row.unit_id if "masks" in step.fields else None,
        ico=None if step.key != "advice" else (residual, _asks_ico(pia)),
        revised=await revisions(request.app.state.db, row.id) if step.key == "need" else None,
    )


@router.get("/deployments/{deployment_id}/steps/{key}", response_class=HTMLResponse)
async def show_step(
    request: Request, deployment_id: str, key: str, user: Requester, check: bool = False
) -> HTMLResponse:
    step = _step(key)
    row = await _draft(request, deployment_id)
    if step.key == "review":
        return await _review(request, user, row)
    # Arriving from the check of the answers: the step's problems beside its fields.
    errors = _errors(step_problems(problems(row), step.key)) if check else None
    if step.key == "request":
        return await _request_step(
            request, user, values=request_data(row), row=row, errors=errors, notice=_notice(request)
        )
    return await _pia_step(request, user, row, step, errors=errors)


@router.post("/deployments/{deployment_id}/steps/{key}")
async def save_step(request: Request, deployment_id: str, key: str, user: Requester) -> Response:
    step = _step(key)
    row = await _draft(request, deployment_id)
    flow = workflow_for(request)
    form = await _form(request)
    then = form.get("then", "continue")
    if step.key == "review":
        return await _submit(request, user, row)
    if step.key == "request":
        data, start = _start(form)
        if not isinstance(start, DraftStart):
            return await _request_step(
                request, user, values=data, row=row, errors=start, status_code=422
            )
        try:
            row = await flow.save_draft(user, row.id, start=start, step=step.key)
        except (DeploymentError, UnknownUnitError) as exc:
            errors = _start_refused(exc)
            return await _request_step(
                request, user, values=data, row=row, errors=errors, status_code=422
            )
    else:
        tree = form_tree(form.items(), prefix=PREFIX)
        answers = coerce(DeploymentRequest, {"pia": tree.get("pia", {})}).get("pia", {})
        if not isinstance(answers, dict):
            answers = {}
        shown = _shown_fields(step, row.pia or {})
        kept = {k: v for k, v in (row.pia or {}).items() if k not in shown}
        entered = {k: answers[k] for k in shown if k in answers}
        row = await flow.save_draft(user, row.id, pia={**kept, **entered}, step=step.key)
    previous, following = _neighbours(step)
    if then == "draft":
        return _redirect(f"/deployments/{row.id}", done="saved", ref=row.id)
    if then == "back" and previous is not None:
        return _redirect(f"/deployments/{row.id}/steps/{previous}")
    left = step_problems(problems(row), step.key)
    if left:
        notice = (
            f"Your answers are saved in draft {row.id}. Correct the fields marked below to "
            "go on, or save as draft and come back to it later."
        )
        if step.key == "request":
            return await _request_step(
                request,
                user,
                values=request_data(row),
                row=row,
                errors=_errors(left),
                status_code=422,
                notice=notice,
            )
        return await _pia_step(
            request, user, row, step, errors=_errors(left), status_code=422, notice=notice
        )
    return _redirect(f"/deployments/{row.id}/steps/{following}")


# ------------------------------------------------------------------ check and submit


async def _review(
    request: Request,
    user: User,
    row: DeploymentRow,
    *,
    found: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    found = problems(row) if found is None else found
    overlaps = await _overlaps(request, row.unit_id, row.planned_start, row.planned_end, row.id)
    listed = []
    for path, text in found.items():
        step = next((s for s in STEPS if s.key == step_of(path)), None)
        anchor = "f-" + f"{PREFIX}.{path}".replace(".", "-").replace("_", "-")
        link = f"/deployments/{row.id}/steps/{step.key}?check=1#{anchor}" if step else None
        listed.append((f"{PREFIX}.{path}" if path else PREFIX, sentence(text), link))
    pia_html = None
    residual = draft_residual_risk(row.pia or {})
    if not found:
        assessed = DeploymentRequest.model_validate(request_data(row))
        async with request.app.state.db.session() as session:
            frame = await frame_shown(session, row.unit_id, assessed.pia.reference_frame, user)
        pia_html = model_view(assessed.pia, frame=frame)
    return page(
        request,
        "deployment_review.html",
        user,
        title=f"Request {row.id}: check and submit",
        section="deployments",
        status_code=status_code,
        notice=_notice(request),
        d=row,
        steps=step_states(row, found),
        problems=listed,
        overlaps=overlaps,
        residual=residual,
        needs_ico=residual is RiskLevel.HIGH and not (row.pia or {}).get("prior_consultation"),
        pia_html=pia_html,
        revised=await revisions(request.app.state.db, row.id),
    )


async def _submit(request: Request, user: User, row: DeploymentRow) -> Response:
    try:
        await workflow_for(request).submit(user, row.id)
    except IncompleteRequest as exc:
        return await _review(request, user, row, found=exc.problems, status_code=422)
    return _redirect(f"/deployments/{row.id}", done="submitted", ref=row.id)


# ------------------------------------------------------------------ revising a rejected one


@router.post("/deployments/{deployment_id}/copy")
async def copy_rejected(request: Request, deployment_id: str, user: Requester) -> Response:
    row = await workflow_for(request).copy_rejected(user, deployment_id)
    return _redirect(f"/deployments/{row.id}/steps/request", done="copied", ref=deployment_id)
