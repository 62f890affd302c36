"""Deployments gated on their PIA: the manager's queue and decisions, the operator's request
form (every PIA section, privacy masks drawn on the reference frame), locations and their
history. A contractor reaches none of these pages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from controller.api.auth import Permission, User, allow
from controller.api.deployment_routes import workflow_for
from controller.deployments import listing
from controller.deployments import locations as loc
from controller.deployments.errors import DeploymentError
from controller.deployments.models import (
    ApproveRequest,
    DeploymentRequest,
    LocationIn,
    PriorConsultationRequest,
)
from controller.deployments.pia import PrivacyImpactAssessment, ProtectedCharacteristic
from controller.errors import ControllerError, sentence
from controller.fleet.units import units_in_service
from controller.pages.form_data import coerce, field_errors, form_tree
from controller.pages.forms import model_form
from controller.pages.pia_view import model_view
from controller.pages.render import PageRoute, page
from controller.store.deployments import LocationRow
from controller.store.fleet import Unit

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

Reader = Annotated[User, Depends(allow(Permission.VIEW_DEPLOYMENTS))]
Requester = Annotated[User, Depends(allow(Permission.REQUEST_DEPLOYMENTS))]
PREFIX = "d"
DONE = {
    "created": "Draft {ref} saved.",
    "submitted": "Deployment {ref} submitted for a manager's decision.",
    "approved": "Deployment {ref} approved: the signed authorization has been sent to the unit.",
    "rejected": "Deployment {ref} rejected.",
    "revoked": "Deployment {ref} revoked: the unit has been told to stop recording.",
    "ended": "Deployment {ref} ended.",
    "not_deployed": "Deployment {ref} closed: decision not to deploy recorded.",
    "consulted": "Prior consultation with the ICO recorded on {ref}.",
    "location": "Location {ref} added.",
}


def _notice(request: Request) -> str | None:
    done = request.query_params.get("done", "")
    ref = "".join(c for c in request.query_params.get("ref", "") if c.isalnum() or c in "-_#")
    return DONE[done].format(ref=ref[:64]) if done in DONE else None


def _back(path: str, done: str, ref: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?{urlencode({'done': done, 'ref': ref})}", status_code=303)


# ------------------------------------------------------------------ request and PIA


async def _choices(request: Request) -> tuple[list[Unit], list[LocationRow]]:
    async with request.app.state.db.session() as session:
        units = await units_in_service(session)
    return units, await loc.list_locations(workflow_for(request))


def _new_values(unit_id: str | None) -> dict[str, Any]:
    return {
        "unit_id": unit_id or "",
        "pia": {
            "equality": [
                {"characteristic": c.value, "impact": "none"} for c in ProtectedCharacteristic
            ]
        },
    }


async def _request_page(
    request: Request,
    user: User,
    *,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
    deployment_id: str | None = None,
) -> HTMLResponse:
    units, places = await _choices(request)
    unit_id = str(values.get("unit_id") or "")
    frame = f"/units/{quote(unit_id)}/reference-frame" if unit_id else None
    choices = {
        f"{PREFIX}.unit_id": [(u.unit_id, f"{u.unit_id} ({u.site or 'no site'})") for u in units],
        f"{PREFIX}.location_id": [(str(p.id), p.name) for p in places],
    }
    return page(
        request,
        "deployment_form.html",
        user,
        title="Raise a deployment request" if deployment_id is None else "Edit the request",
        section="deployments",
        status_code=status_code,
        form_html=model_form(
            DeploymentRequest,
            values=values,
            prefix=PREFIX,
            errors=errors or {},
            mask_image=frame,
            choices=choices,
            frame_source=(f"{PREFIX}.unit_id", "/units/{unit}/reference-frame"),
        ),
        errors=errors or {},
        has_locations=bool(places),
        deployment_id=deployment_id,
    )


@router.get("/deployments/new", response_class=HTMLResponse)
async def new_request(request: Request, user: Requester, unit: str | None = None) -> HTMLResponse:
    return await _request_page(request, user, values=_new_values(unit))


@router.post("/deployments/new")
async def create_request(request: Request, user: Requester) -> Response:
    form = await _form(request)
    data = coerce(DeploymentRequest, form_tree(form.items(), prefix=PREFIX))
    try:
        body = DeploymentRequest.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc, prefix=PREFIX)
        return await _request_page(request, user, values=data, errors=errors, status_code=422)
    flow = workflow_for(request)
    try:
        row = await flow.create(user, body)
    except DeploymentError as exc:
        return await _request_page(
            request, user, values=data, errors={PREFIX: sentence(exc)}, status_code=409
        )
    if form.get("then") == "submit":
        try:
            await flow.submit(user, row.id)
        except ControllerError as exc:
            raise HTTPException(
                409, f"Draft {row.id} was saved but not submitted: {sentence(exc)}"
            ) from exc
        return _back(f"/deployments/{row.id}", "submitted", row.id)
    return _back(f"/deployments/{row.id}", "created", row.id)


# --------------------------------------------------------------------------- the queue


@router.get("/deployments", response_class=HTMLResponse)
async def deployments(request: Request, user: Reader) -> HTMLResponse:
    flow = workflow_for(request)
    async with request.app.state.db.session() as session:
        queue = await listing.deployment_queue(
            session, now=datetime.now(UTC), reminder_days=flow.policy.reminder_days
        )
    return page(
        request,
        "deployments.html",
        user,
        title="Deployments",
        section="deployments",
        notice=_notice(request),
        queue=queue,
        reminder_days=flow.policy.reminder_days,
    )


@router.get("/deployments/{deployment_id}", response_class=HTMLResponse)
async def deployment(request: Request, deployment_id: str, user: Reader) -> HTMLResponse:
    async with request.app.state.db.session() as session:
        row, location, line = await listing.deployment_with_location(session, deployment_id)
    pia = PrivacyImpactAssessment.model_validate(row.pia)
    return page(
        request,
        "deployment.html",
        user,
        title=f"Deployment {deployment_id}",
        section="deployments",
        notice=_notice(request),
        d=row,
        line=line,
        location=location,
        pia=pia,
        pia_html=model_view(pia),
        needs_consultation=pia.residual_risk.value == "high" and pia.prior_consultation is None,
        consultation_form=model_form(PriorConsultationRequest, prefix="ico"),
        independent=user.username not in (row.created_by, row.submitted_by),
    )


# ------------------------------------------------------------------------ decisions


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.multi_items() if isinstance(v, str)}


@router.post("/deployments/{deployment_id}/{decision}")
async def decide(
    request: Request, deployment_id: str, decision: str, user: Requester
) -> RedirectResponse:
    flow = workflow_for(request)
    form = await _form(request)
    reason = form.get("reason", "").strip()
    target = f"/deployments/{deployment_id}"
    needs_reason = {"reject", "revoke", "end", "not_deploy"}
    if decision in needs_reason and len(reason) < 3:
        raise HTTPException(422, "Give the reason for this decision: it is recorded and audited.")
    try:
        if decision == "submit":
            await flow.submit(user, deployment_id)
            return _back(target, "submitted", deployment_id)
        if decision == "approve":
            review = form.get("review_by") or None
            body = ApproveRequest.model_validate(
                {"review_by": review, "notes": form.get("notes", "").strip()}
            )
            await flow.approve(user, deployment_id, body)
            return _back(target, "approved", deployment_id)
        if decision == "reject":
            await flow.reject(user, deployment_id, reason)
            return _back(target, "rejected", deployment_id)
        if decision == "revoke":
            await flow.revoke(user, deployment_id, reason)
            return _back(target, "revoked", deployment_id)
        if decision == "end":
            await flow.end(user, deployment_id, reason)
            return _back(target, "ended", deployment_id)
        if decision == "not_deploy":
            await flow.decide_not_to_deploy(user, deployment_id, reason)
            return _back(target, "not_deployed", deployment_id)
        if decision == "prior_consultation":
            data = coerce(PriorConsultationRequest, form_tree(form.items(), prefix="ico"))
            consultation = PriorConsultationRequest.model_validate(data)
            await flow.record_prior_consultation(user, deployment_id, consultation)
            return _back(target, "consulted", deployment_id)
    except ValidationError as exc:
        problems = "; ".join(
            f"{k.split('.')[-1]}: {v}" for k, v in field_errors(exc, prefix="x").items()
        )
        raise HTTPException(422, f"The decision could not be recorded ({problems})") from exc
    raise HTTPException(404, f"{decision!r} is not a step of a deployment.")


# --------------------------------------------------------------------------- locations


@router.get("/locations/new", response_class=HTMLResponse)
async def new_location(request: Request, user: Requester) -> HTMLResponse:
    return page(
        request,
        "location_form.html",
        user,
        title="Add a location",
        section="deployments",
        form_html=model_form(LocationIn, prefix="loc"),
        errors={},
    )


@router.post("/locations/new")
async def create_location(request: Request, user: Requester) -> Response:
    form = await _form(request)
    data = coerce(LocationIn, form_tree(form.items(), prefix="loc"))
    try:
        body = LocationIn.model_validate(data)
        row = await loc.add_location(workflow_for(request), user, body)
    except (ValidationError, DeploymentError) as exc:
        errors = (
            field_errors(exc, prefix="loc")
            if isinstance(exc, ValidationError)
            else {"loc": sentence(exc)}
        )
        return page(
            request,
            "location_form.html",
            user,
            title="Add a location",
            section="deployments",
            status_code=422,
            form_html=model_form(LocationIn, values=data, prefix="loc", errors=errors),
            errors=errors,
        )
    return _back(f"/locations/{row.id}", "location", row.name)


@router.get("/locations/{location_id}", response_class=HTMLResponse)
async def location(request: Request, location_id: int, user: Reader) -> HTMLResponse:
    flow = workflow_for(request)
    row, history = await loc.get_location(flow, location_id)
    async with request.app.state.db.session() as session:
        lines = await listing.lines(session, history)
    return page(
        request,
        "location.html",
        user,
        title=f"Location {row.name}",
        section="deployments",
        notice=_notice(request),
        place=row,
        history=lines,
    )
