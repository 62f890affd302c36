"""Cases, the review log and the release log: JSON routes.

Who may do what is the permission table's word (`controller.accounts.permissions`), the
same for the pages: `VIEW_CASES` to read cases, `VIEW_EVIDENCE_LOGS` the logs,
`RAISE_CASE` to raise one, `DECIDE_CASE` to approve, refuse (not one's own case), extend a
subject access request and close, `RECORD_CASE_OUTCOME` the outcome, `VIEW_KPIS` the
evidence figures. A contractor has none of them (403: they never see evidence); an
auditor reads and changes nothing. An error of cases answers with its own `status` and
reads as a sentence (`controller.errors`).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from controller.api.auth import Permission, User, allow
from controller.evidence.case_errors import InvalidCase
from controller.evidence.case_models import (
    CaseRequest,
    CaseType,
    CloseRequest,
    DecisionRequest,
    ExtendRequest,
    OutcomeRequest,
    RefuseRequest,
)
from controller.evidence.case_views import case_detail, list_cases
from controller.evidence.cases import CaseWorkflow
from controller.evidence.evidence_logs import (
    LogFilter,
    evidence_kpis,
    local_days,
    release_entries,
    review_entries,
)
from controller.evidence.settings import EvidenceSettings
from controller.store.evidence import CASE_STATUSES

__all__ = ["router", "workflow_for"]

router = APIRouter(prefix="/api", tags=["cases"])

Reader = Annotated[User, Depends(allow(Permission.VIEW_CASES))]
LogReader = Annotated[User, Depends(allow(Permission.VIEW_EVIDENCE_LOGS))]
Raiser = Annotated[User, Depends(allow(Permission.RAISE_CASE))]
Decider = Annotated[User, Depends(allow(Permission.DECIDE_CASE))]
OutcomeSetter = Annotated[User, Depends(allow(Permission.RECORD_CASE_OUTCOME))]
KpiReader = Annotated[User, Depends(allow(Permission.VIEW_KPIS))]


def evidence_settings(request: Request) -> EvidenceSettings:
    settings = getattr(request.app.state.settings, "evidence", None)
    return settings if isinstance(settings, EvidenceSettings) else EvidenceSettings()


def workflow_for(request: Request) -> CaseWorkflow:
    """The workflow over the app's database and broker link."""
    state = request.app.state
    return CaseWorkflow(
        state.db, link=getattr(state, "link", None), settings=evidence_settings(request)
    )


Flow = Annotated[CaseWorkflow, Depends(workflow_for)]


async def _detail(flow: CaseWorkflow, number: str) -> dict[str, Any]:
    async with flow.db.session() as session:
        view = await case_detail(
            session, number, now=flow.clock(), reminder_days=flow.settings.sar_reminder_days
        )
    return view.model_dump(mode="json")


# ------------------------------------------------------------------------------ cases


@router.get("/cases", summary="Cases, newest first; filter by status, type or overdue SARs")
async def cases(
    user: Reader,
    flow: Flow,
    status: Annotated[str | None, Query(max_length=20)] = None,
    case_type: Annotated[CaseType | None, Query(alias="type")] = None,
    overdue: bool = False,
) -> list[dict[str, Any]]:
    if status is not None and status not in CASE_STATUSES:
        raise InvalidCase(f"status must be one of {', '.join(CASE_STATUSES)}")
    async with flow.db.session() as session:
        rows = await list_cases(
            session,
            now=flow.clock(),
            reminder_days=flow.settings.sar_reminder_days,
            status=status,
            case_type=case_type,
            overdue=overdue,
        )
    return [r.model_dump(mode="json") for r in rows]


@router.post("/cases", status_code=201, summary="Raise a case")
async def raise_case(user: Raiser, flow: Flow, body: CaseRequest) -> dict[str, Any]:
    row = await flow.raise_case(user, body)
    return await _detail(flow, row.number)


@router.get("/cases/{number}", summary="A case with its ranges, holds, retrievals and timeline")
async def case(number: str, user: Reader, flow: Flow) -> dict[str, Any]:
    return await _detail(flow, number)


@router.post("/cases/{number}/approve", summary="Approve (a data controller who did not raise it)")
async def approve(
    number: str, user: Decider, flow: Flow, body: DecisionRequest | None = None
) -> dict[str, Any]:
    await flow.approve(user, number, body)
    return await _detail(flow, number)


@router.post("/cases/{number}/refuse", summary="Refuse with the reason")
async def refuse(number: str, user: Decider, flow: Flow, body: RefuseRequest) -> dict[str, Any]:
    await flow.refuse(user, number, body)
    return await _detail(flow, number)


@router.post("/cases/{number}/extend", summary="Extend a subject access request's deadline")
async def extend(number: str, user: Decider, flow: Flow, body: ExtendRequest) -> dict[str, Any]:
    await flow.extend(user, number, body)
    return await _detail(flow, number)


@router.post("/cases/{number}/outcome", summary="Record the outcome")
async def outcome(
    number: str, user: OutcomeSetter, flow: Flow, body: OutcomeRequest
) -> dict[str, Any]:
    await flow.set_outcome(user, number, body)
    return await _detail(flow, number)


@router.post("/cases/{number}/close", summary="Close the case (releases its holds)")
async def close(
    number: str, user: Decider, flow: Flow, body: CloseRequest | None = None
) -> dict[str, Any]:
    await flow.close(user, number, body)
    return await _detail(flow, number)


# ------------------------------------------------------------------------------- logs


@router.get("/review-log", summary="Who viewed, played, downloaded or exported case footage")
async def review_log(
    user: LogReader,
    flow: Flow,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
    case: Annotated[str, Query(max_length=40)] = "",
    person: Annotated[str, Query(alias="user", max_length=64)] = "",
) -> list[dict[str, Any]]:
    first, last = local_days(start, end)
    async with flow.db.session() as session:
        rows = await review_entries(session, LogFilter(first, last, case.strip(), person.strip()))
    return [r.model_dump(mode="json") for r in rows]


@router.get("/release-log", summary="What footage was released, to whom, why and how")
async def release_log(
    user: LogReader,
    flow: Flow,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
    case: Annotated[str, Query(max_length=40)] = "",
    recipient: Annotated[str, Query(max_length=200)] = "",
) -> list[dict[str, Any]]:
    first, last = local_days(start, end)
    async with flow.db.session() as session:
        rows = await release_entries(
            session, LogFilter(first, last, case.strip(), recipient.strip())
        )
    return [r.model_dump(mode="json") for r in rows]


@router.get("/evidence-kpis", summary="Footage released and cases by type and outcome")
async def kpis(
    user: KpiReader,
    flow: Flow,
    start: Annotated[date, Query(alias="from")],
    end: Annotated[date, Query(alias="to")],
) -> dict[str, Any]:
    if end < start:
        raise InvalidCase("the period must end on or after the day it starts")
    first, last = local_days(start, end)
    assert first is not None and last is not None
    async with flow.db.session() as session:
        figures = await evidence_kpis(session, first, last)
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "releases": figures.releases,
        "exhibits_released": figures.exhibits_released,
        "cases_released": figures.cases_released,
        "cases_raised": figures.cases_raised,
        "by_type": figures.by_type,
        "by_outcome": figures.by_outcome,
    }
