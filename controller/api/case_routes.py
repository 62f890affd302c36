"""Cases, the review log and the release log: JSON routes.

Who may do what (a contractor reaches none of these: 403, they never see evidence):
reading cases and logs is for manager, operator, data_controller and auditor; raising a
case for operator, manager and data_controller; approve, refuse, extend a subject access
request and close for a data_controller (approve/refuse: not the one who raised it); the
outcome for a data_controller or a manager. An auditor reads and changes nothing.
`install(app)` maps the errors of cases to statuses.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from controller.api.auth import Role, User, require_role
from controller.evidence.case_errors import (
    CaseError,
    CaseNotPermitted,
    CaseRefused,
    InvalidCase,
    UnknownCase,
)
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

__all__ = ["EVIDENCE_READERS", "install", "router", "workflow_for"]

router = APIRouter(prefix="/api", tags=["cases"])

#: Who may read cases, their footage's logs and evidence figures: never a contractor.
EVIDENCE_READERS = (Role.MANAGER, Role.OPERATOR, Role.DATA_CONTROLLER, Role.AUDITOR)
Reader = Annotated[User, Depends(require_role(*EVIDENCE_READERS))]
Raiser = Annotated[User, Depends(require_role(Role.OPERATOR, Role.MANAGER, Role.DATA_CONTROLLER))]
Decider = Annotated[User, Depends(require_role(Role.DATA_CONTROLLER))]
OutcomeSetter = Annotated[User, Depends(require_role(Role.DATA_CONTROLLER, Role.MANAGER))]
KpiReader = Annotated[User, Depends(require_role(Role.MANAGER, Role.AUDITOR))]


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
    user: Reader,
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
    user: Reader,
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


# ----------------------------------------------------------------------------- errors

_STATUS: tuple[tuple[type[CaseError], int], ...] = (
    (UnknownCase, 404),
    (CaseNotPermitted, 403),
    (CaseRefused, 409),
    (InvalidCase, 422),
)


def case_status(exc: CaseError) -> int:
    """The HTTP status of an error of cases (the pages use it too)."""
    return next((code for cls, code in _STATUS if isinstance(exc, cls)), 400)


def _sentence(message: str) -> str:
    message = message.strip()
    message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "?", "!")) else message + "."


async def _case_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CaseError)
    return JSONResponse({"detail": _sentence(str(exc))}, status_code=case_status(exc))


def install(app: FastAPI) -> None:
    """Called by `create_app`: the errors of cases leave as sentences with a status."""
    app.add_exception_handler(CaseError, _case_error)
