"""Deployments gated on their PIA: the manager's queue, a deployment with its assessment and
the manager's decision after it (approval asks the manager to confirm they have read the
assessment), the steps open to each role, locations and their history. The request and
its PIA are filled in step by step (`pia_steps`). A contractor reaches none of these
pages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from controller.api.auth import Permission, User, allow
from controller.api.deployment_routes import workflow_for
from controller.deployments import listing
from controller.deployments import locations as loc
from controller.deployments.drafts import problems, revisions
from controller.deployments.errors import DeploymentError, IncompleteRequest
from controller.deployments.models import (
    ApproveRequest,
    LocationIn,
    PriorConsultationRequest,
)
from controller.deployments.pia import PrivacyImpactAssessment
from controller.errors import sentence
from controller.pages.form_data import coerce, field_errors, form_tree
from controller.pages.forms import model_form
from controller.pages.pia_steps import step_states
from controller.pages.pia_view import model_view
from controller.pages.render import PageRoute, page
from controller.pages.snapshot_pages import frame_shown

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

Reader = Annotated[User, Depends(allow(Permission.VIEW_DEPLOYMENTS))]
Requester = Annotated[User, Depends(allow(Permission.REQUEST_DEPLOYMENTS))]
DONE = {
    "created": "Draft {ref} saved.",
    "saved": "Draft {ref} saved: continue it from here whenever you are ready.",
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
    return await _deployment_page(request, user, deployment_id)


#: The decision forms' fields, as the page names them (errors are shown beside them).
REASON_FIELDS = {
    "reject": "reject-reason",
    "revoke": "revoke-reason",
    "end": "end-reason",
    "not_deploy": "nd-reason",
}
READ_FIELD = "assessment-read"


async def _deployment_page(
    request: Request,
    user: User,
    deployment_id: str,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """A deployment: its dates and decisions, its PIA (a draft: how far it has got), the
    steps open to `user`, and the manager's decision after the assessment."""
    db = request.app.state.db
    async with db.session() as session:
        row, location, line = await listing.deployment_with_location(session, deployment_id)
        draft = row.status == "draft"
        pia = None if draft else PrivacyImpactAssessment.model_validate(row.pia)
        sha = (row.pia or {}).get("reference_frame") if pia is None else pia.reference_frame
        frame = await frame_shown(session, row.unit_id, sha if isinstance(sha, str) else None, user)
        overlaps: list[listing.DeploymentLine] = []
        if row.status in listing.PENDING_OR_LIVE:
            overlaps = await listing.overlapping(
                session, row.unit_id, row.planned_start, row.planned_end, excluding=row.id
            )
    found = problems(row) if draft else {}
    return page(
        request,
        "deployment.html",
        user,
        title=f"Deployment {deployment_id}",
        section="deployments",
        status_code=status_code,
        notice=_notice(request),
        d=row,
        line=line,
        location=location,
        pia=pia,
        pia_html=None if pia is None else model_view(pia, frame=frame),
        frame=frame,
        needs_consultation=pia is not None
        and pia.residual_risk.value == "high"
        and pia.prior_consultation is None,
        consultation_form=model_form(PriorConsultationRequest, prefix="ico"),
        independent=user.username not in (row.created_by, row.submitted_by),
        steps=step_states(row, found) if draft else [],
        unfinished=len(found),
        overlaps=overlaps,
        revised=await revisions(db, row.id),
        errors=errors or {},
        values=values or {},
    )


# ------------------------------------------------------------------------ decisions


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.multi_items() if isinstance(v, str)}


@router.post("/deployments/{deployment_id}/{decision}")
async def decide(request: Request, deployment_id: str, decision: str, user: Requester) -> Response:
    flow = workflow_for(request)
    form = await _form(request)
    reason = form.get("reason", "").strip()
    target = f"/deployments/{deployment_id}"
    if decision in REASON_FIELDS and len(reason) < 3:
        field = REASON_FIELDS[decision]
        return await _deployment_page(
            request, user, deployment_id, status_code=422, values={field: reason},
            errors={field: "Give the reason for this decision: it is recorded and audited."},
        )  # fmt: skip
    try:
        if decision == "submit":
            try:
                await flow.submit(user, deployment_id)
            except IncompleteRequest:
                return RedirectResponse(f"{target}/steps/review", status_code=303)
            return _back(target, "submitted", deployment_id)
        if decision == "approve":
            notes = form.get("notes", "").strip()
            if form.get("assessment_read") != "yes":
                return await _deployment_page(
                    request, user, deployment_id, status_code=422, values={"notes": notes},
                    errors={READ_FIELD: "Confirm that you have read the assessment before "
                            "approving it."},
                )  # fmt: skip
            body = ApproveRequest.model_validate(
                {
                    "review_by": form.get("review_by") or None,
                    "notes": notes,
                    "assessment_read": True,
                }
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
        wrong = "; ".join(
            f"{k.split('.')[-1]}: {v}" for k, v in field_errors(exc, prefix="x").items()
        )
        raise HTTPException(422, f"The decision could not be recorded ({wrong})") from exc
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
