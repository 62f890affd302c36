"""Locations and deployments with their PIA: JSON routes.

A request is raised whole (`POST /deployments`) or in steps: a draft started with its unit,
place and dates (`POST /deployments/drafts`), saved as it stands as often as needed
(`PATCH /deployments/{id}/draft`; a draft answers with `problems`, what still keeps it from
being submitted, field by field), then submitted. A rejected request is copied into a new
draft to be revised (`POST /deployments/{id}/copy`).

Who may do what (a contractor reaches none of these: 403, they never see PIA content):
reading is for manager, operator, data_controller and auditor; requests, edits, submit,
decision not to deploy, end and evaluation for operator and manager; approve, reject,
revoke, renew and retiring a location for a manager (approve/reject: not the one who
raised or submitted the request), as `controller.accounts.permissions` says. The workflow's
errors answer with their own `status` (`controller.api.app`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from controller.api.auth import Permission, User, allow
from controller.deployments import listing
from controller.deployments import locations as loc
from controller.deployments.drafts import problems
from controller.deployments.models import (
    ApproveRequest,
    DeploymentPolicy,
    DeploymentRequest,
    DraftSave,
    DraftStart,
    EvaluationRequest,
    LocationIn,
    PriorConsultationRequest,
    ReasonRequest,
    RenewRequest,
)
from controller.deployments.views import deployment_summary, deployment_view, location_view
from controller.deployments.workflow import DeploymentWorkflow
from controller.store.deployments import DeploymentRow

__all__ = ["router", "workflow_for"]

router = APIRouter(prefix="/api", tags=["deployments"])

Reader = Annotated[User, Depends(allow(Permission.VIEW_DEPLOYMENTS))]
Requester = Annotated[User, Depends(allow(Permission.REQUEST_DEPLOYMENTS))]
Manager = Annotated[User, Depends(allow(Permission.DECIDE_DEPLOYMENTS))]


def workflow_for(request: Request) -> DeploymentWorkflow:
    """The workflow over the app's database and broker link (signer from the link)."""
    state = request.app.state
    link = getattr(state, "link", None)
    policy = getattr(state.settings, "deployments", None)
    return DeploymentWorkflow(
        state.db,
        signer=getattr(link, "signer", None),
        link=link,
        policy=policy if isinstance(policy, DeploymentPolicy) else None,
    )


Flow = Annotated[DeploymentWorkflow, Depends(workflow_for)]


# ------------------------------------------------------------------------- locations


@router.get("/locations", summary="Locations (add ?retired=true for retired ones)")
async def list_locations(user: Reader, flow: Flow, retired: bool = False) -> list[dict[str, Any]]:
    return [location_view(r) for r in await loc.list_locations(flow, include_retired=retired)]


@router.post("/locations", status_code=201, summary="Add a location")
async def add_location(user: Requester, flow: Flow, body: LocationIn) -> dict[str, Any]:
    return location_view(await loc.add_location(flow, user, body))


@router.get("/locations/{location_id}", summary="A location and every deployment there")
async def get_location(location_id: int, user: Reader, flow: Flow) -> dict[str, Any]:
    row, history = await loc.get_location(flow, location_id)
    return location_view(row, history)


@router.put("/locations/{location_id}", summary="Change a location")
async def update_location(
    location_id: int, user: Requester, flow: Flow, body: LocationIn
) -> dict[str, Any]:
    return location_view(await loc.update_location(flow, user, location_id, body))


@router.delete("/locations/{location_id}", summary="Retire a location (kept for its history)")
async def retire_location(location_id: int, user: Manager, flow: Flow) -> dict[str, Any]:
    return location_view(await loc.retire_location(flow, user, location_id))


# ----------------------------------------------------------------------- deployments


@router.get("/deployments", summary="Deployments, filtered by status, unit or location")
async def list_all(
    user: Reader,
    flow: Flow,
    status: Annotated[list[str] | None, Query()] = None,
    unit_id: str | None = None,
    location_id: int | None = None,
) -> list[dict[str, Any]]:
    async with flow.db.session() as session:
        rows = await listing.find_deployments(
            session, statuses=status, unit_id=unit_id, location_id=location_id
        )
    return [deployment_summary(r) for r in rows]


@router.get("/deployments/queue", summary="Submitted requests awaiting a decision")
async def queue(user: Reader, flow: Flow) -> list[dict[str, Any]]:
    async with flow.db.session() as session:
        rows = await listing.awaiting_decision(session)
    return [deployment_summary(r) for r in rows]


@router.get("/deployments/reviews", summary="Live deployments by review date (due first)")
async def reviews(user: Reader, flow: Flow, within_days: int = 30) -> list[dict[str, Any]]:
    horizon = flow.clock() + timedelta(days=max(0, within_days))
    async with flow.db.session() as session:
        rows = await listing.reviews_due_by(session, horizon)
    return [deployment_summary(r) for r in rows]


@router.post("/deployments", status_code=201, summary="Raise a deployment request (draft)")
async def create(user: Requester, flow: Flow, body: DeploymentRequest) -> dict[str, Any]:
    return deployment_view(await flow.create(user, body))


@router.post(
    "/deployments/drafts",
    status_code=201,
    summary="Start a request as a draft: unit, place and dates; the PIA follows in steps",
)
async def start_draft(user: Requester, flow: Flow, body: DraftStart) -> dict[str, Any]:
    return _with_problems(await flow.start_draft(user, body))


@router.patch(
    "/deployments/{deployment_id}/draft",
    summary="Save a draft as it stands: its unit, place and dates, and/or its PIA so far",
)
async def save_draft(
    deployment_id: str, user: Requester, flow: Flow, body: DraftSave
) -> dict[str, Any]:
    row = await flow.save_draft(user, deployment_id, start=body.start, pia=body.pia, step="api")
    return _with_problems(row)


@router.post(
    "/deployments/{deployment_id}/copy",
    status_code=201,
    summary="Copy a rejected request into a new draft, to revise and submit again",
)
async def copy_rejected(deployment_id: str, user: Requester, flow: Flow) -> dict[str, Any]:
    return _with_problems(await flow.copy_rejected(user, deployment_id))


def _with_problems(row: DeploymentRow) -> dict[str, Any]:
    """A draft with what still keeps it from being submitted, field by field."""
    return {**deployment_view(row), "problems": problems(row)}


@router.get("/deployments/{deployment_id}", summary="A deployment with its PIA")
async def get_one(deployment_id: str, user: Reader, flow: Flow) -> dict[str, Any]:
    row = await flow.get(deployment_id)
    return _with_problems(row) if row.status == "draft" else deployment_view(row)


@router.put("/deployments/{deployment_id}", summary="Replace a draft request")
async def update(
    deployment_id: str, user: Requester, flow: Flow, body: DeploymentRequest
) -> dict[str, Any]:
    return deployment_view(await flow.update(user, deployment_id, body))


@router.post("/deployments/{deployment_id}/submit", summary="Submit a draft for decision")
async def submit(deployment_id: str, user: Requester, flow: Flow) -> dict[str, Any]:
    return deployment_view(await flow.submit(user, deployment_id))


@router.post(
    "/deployments/{deployment_id}/prior-consultation",
    summary="Record prior consultation with the ICO (needed for a high residual risk)",
)
async def prior_consultation(
    deployment_id: str, user: Requester, flow: Flow, body: PriorConsultationRequest
) -> dict[str, Any]:
    return deployment_view(await flow.record_prior_consultation(user, deployment_id, body))


@router.post("/deployments/{deployment_id}/approve", summary="Approve (another manager)")
async def approve(
    deployment_id: str, user: Manager, flow: Flow, body: ApproveRequest | None = None
) -> dict[str, Any]:
    return deployment_view(await flow.approve(user, deployment_id, body))


@router.post("/deployments/{deployment_id}/reject", summary="Reject with reasons")
async def reject(
    deployment_id: str, user: Manager, flow: Flow, body: ReasonRequest
) -> dict[str, Any]:
    return deployment_view(await flow.reject(user, deployment_id, body.reason))


@router.post("/deployments/{deployment_id}/not-deploy", summary="Record a decision not to deploy")
async def not_deploy(
    deployment_id: str, user: Requester, flow: Flow, body: ReasonRequest
) -> dict[str, Any]:
    return deployment_view(await flow.decide_not_to_deploy(user, deployment_id, body.reason))


@router.post("/deployments/{deployment_id}/revoke", summary="Revoke: recording stops at once")
async def revoke(
    deployment_id: str, user: Manager, flow: Flow, body: ReasonRequest
) -> dict[str, Any]:
    return deployment_view(await flow.revoke(user, deployment_id, body.reason))


@router.post("/deployments/{deployment_id}/end", summary="End a deployment (unit removed)")
async def end(
    deployment_id: str, user: Requester, flow: Flow, body: ReasonRequest
) -> dict[str, Any]:
    return deployment_view(await flow.end(user, deployment_id, body.reason))


@router.post("/deployments/{deployment_id}/renew", summary="Renew after a fresh PIA review")
async def renew(
    deployment_id: str, user: Manager, flow: Flow, body: RenewRequest
) -> dict[str, Any]:
    return deployment_view(await flow.renew(user, deployment_id, body))


@router.post("/deployments/{deployment_id}/evaluation", summary="Attach the evaluation")
async def evaluation(
    deployment_id: str, user: Requester, flow: Flow, body: EvaluationRequest
) -> dict[str, Any]:
    return deployment_view(await flow.attach_evaluation(user, deployment_id, body))
