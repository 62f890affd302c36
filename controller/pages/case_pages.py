"""Cases and the evidence logs as pages: the list of cases with filters, the form that raises
one, a case with its ranges, holds, retrievals, exhibits, releases and timeline, the
decisions on it; the review log and the release log with filters and CSV download.

Permissions as in `controller.api.case_routes` (the same table, workflow and queries
underneath): a contractor reaches none of these pages (403), an auditor reads and changes
nothing. An error of cases is shown with its own `status` as a sentence (`PageRoute`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from controller.api.auth import Permission, User, allow
from controller.api.case_routes import workflow_for
from controller.errors import sentence
from controller.evidence.case_errors import CaseError
from controller.evidence.case_models import (
    CaseRequest,
    CloseRequest,
    DecisionRequest,
    ExtendRequest,
    OutcomeRequest,
    RefuseRequest,
)
from controller.evidence.case_views import (
    CASE_TYPE_WORDS,
    OUTCOME_WORDS,
    STATUS_WORDS,
    case_detail,
    list_cases,
)
from controller.evidence.evidence_logs import (
    LogFilter,
    local_days,
    release_csv,
    release_entries,
    review_csv,
    review_entries,
)
from controller.fleet.units import units_in_service
from controller.pages.local_time import from_local_input
from controller.pages.render import PageRoute, page
from controller.store.evidence import CASE_STATUSES
from controller.store.fleet import Unit

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

Reader = Annotated[User, Depends(allow(Permission.VIEW_CASES))]
LogReader = Annotated[User, Depends(allow(Permission.VIEW_EVIDENCE_LOGS))]
Raiser = Annotated[User, Depends(allow(Permission.RAISE_CASE))]
Decider = Annotated[User, Depends(allow(Permission.DECIDE_CASE))]
OutcomeSetter = Annotated[User, Depends(allow(Permission.RECORD_CASE_OUTCOME))]
RANGE_ROWS = 4
DONE = {
    "raised": "Case {ref} raised: a data controller who did not raise it decides it next.",
    "approve": "Case {ref} approved: holds are being placed on its units.",
    "refuse": "Case {ref} refused; the reason is recorded.",
    "extend": "The deadline of case {ref} is extended.",
    "outcome": "The outcome of case {ref} is recorded.",
    "close": "Case {ref} closed: its holds are being released.",
}


def _notice(request: Request) -> str | None:
    done = request.query_params.get("done", "")
    ref = "".join(c for c in request.query_params.get("ref", "") if c.isalnum() or c in "-")
    return DONE[done].format(ref=ref[:40]) if done in DONE else None


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.multi_items() if isinstance(v, str)}


# ------------------------------------------------------------------------------ list


@router.get("/cases", response_class=HTMLResponse)
async def cases(
    request: Request,
    user: Reader,
    status: Annotated[str, Query(max_length=20)] = "",
    case_type: Annotated[str, Query(alias="type", max_length=30)] = "",
    overdue: Annotated[str, Query(max_length=5)] = "",
) -> HTMLResponse:
    flow = workflow_for(request)
    error = None
    if status and status not in CASE_STATUSES:
        error, status = f"There is no status {status!r}; showing every status.", ""
    if case_type and case_type not in CASE_TYPE_WORDS:
        error, case_type = f"There is no case type {case_type!r}; showing every type.", ""
    async with flow.db.session() as session:
        rows = await list_cases(
            session,
            now=flow.clock(),
            reminder_days=flow.settings.sar_reminder_days,
            status=status or None,
            case_type=case_type or None,
            overdue=bool(overdue),
        )
    return page(
        request,
        "cases.html",
        user,
        title="Cases",
        section="cases",
        status_code=200 if error is None else 422,
        notice=_notice(request),
        error=error,
        rows=rows,
        status=status,
        case_type=case_type,
        overdue=bool(overdue),
        statuses=STATUS_WORDS,
        types=CASE_TYPE_WORDS,
    )


# -------------------------------------------------------------------------- raising


async def _units_in_service(request: Request) -> list[Unit]:
    async with request.app.state.db.session() as session:
        return await units_in_service(session)


async def _case_form(
    request: Request,
    user: User,
    *,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return page(
        request,
        "case_form.html",
        user,
        title="Raise a case",
        section="cases",
        status_code=status_code,
        values=values,
        errors=errors or {},
        units=await _units_in_service(request),
        types=CASE_TYPE_WORDS,
        range_rows=RANGE_ROWS,
        max_hours=workflow_for(request).settings.max_range_hours,
    )


@router.get("/cases/new", response_class=HTMLResponse)
async def new_case(request: Request, user: Raiser, unit: str = "") -> HTMLResponse:
    return await _case_form(request, user, values={"r0.unit_id": unit[:64]})


def _read_case_form(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The request as data for `CaseRequest`, and the fields that could not be read."""
    errors: dict[str, str] = {}
    data: dict[str, Any] = {
        key: form.get(key, "").strip()
        for key in (
            "case_type",
            "external_ref",
            "requester_name",
            "requester_org",
            "requester_contact",
            "lawful_basis",
            "reason",
        )
    }
    if data["case_type"] == "subject_access" and form.get("received_at", "").strip():
        try:
            data["received_at"] = from_local_input(form["received_at"])
        except ValueError:
            errors["received_at"] = "Give the date and time the request was received."
    ranges = []
    for n in range(RANGE_ROWS):
        unit_id = form.get(f"r{n}.unit_id", "").strip()
        start, end = form.get(f"r{n}.start", "").strip(), form.get(f"r{n}.end", "").strip()
        if not (unit_id or start or end):
            continue
        span: dict[str, Any] = {"unit_id": unit_id}
        for key, text in (("start", start), ("end", end)):
            try:
                span[key] = from_local_input(text)
            except ValueError:
                errors[f"r{n}.{key}"] = f"Give the {key} of range {n + 1} as a date and time."
        if not unit_id:
            errors[f"r{n}.unit_id"] = f"Choose the unit of range {n + 1}."
        ranges.append((n, span))
    if not ranges:
        errors["r0.unit_id"] = "Give at least one unit and time range."
    data["ranges"] = [span for _, span in ranges]
    data["_rows"] = [n for n, _ in ranges]
    return data, errors


_FIELD_OF = {
    "case_type": "case_type",
    "requester_name": "requester_name",
    "lawful_basis": "lawful_basis",
    "reason": "reason",
    "external_ref": "external_ref",
    "requester_org": "requester_org",
    "requester_contact": "requester_contact",
    "received_at": "received_at",
}


def _validation_errors(exc: ValidationError, rows: list[int]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ())]
        message = str(error.get("msg", "not valid")).removeprefix("Value error, ")
        if loc and loc[0] == "ranges" and len(loc) > 1 and loc[1].isdigit():
            row = rows[int(loc[1])] if int(loc[1]) < len(rows) else 0
            key = f"r{row}.{loc[2]}" if len(loc) > 2 else f"r{row}.end"
            errors.setdefault(key, sentence(f"Range {row + 1}: {message}"))
        elif loc and loc[0] in _FIELD_OF:
            errors.setdefault(_FIELD_OF[loc[0]], sentence(message))
        else:
            errors.setdefault("form", sentence(message))
    return errors


@router.post("/cases/new")
async def create_case(request: Request, user: Raiser) -> Response:
    form = await _form(request)
    values = {k: v for k, v in form.items() if k != "csrf_token"}
    data, errors = _read_case_form(form)
    rows = data.pop("_rows")
    body = None
    if not errors:
        try:
            body = CaseRequest.model_validate(data)
        except ValidationError as exc:
            errors = _validation_errors(exc, rows)
    if body is None:
        return await _case_form(request, user, values=values, errors=errors, status_code=422)
    try:
        row = await workflow_for(request).raise_case(user, body)
    except CaseError as exc:
        if exc.status == 403:
            raise
        return await _case_form(
            request, user, values=values, errors={"form": sentence(exc)}, status_code=422
        )
    return _back(row.number, "raised")


def _back(number: str, done: str) -> RedirectResponse:
    return RedirectResponse(
        f"/cases/{number}?{urlencode({'done': done, 'ref': number})}", status_code=303
    )


# ------------------------------------------------------------------------- one case


@router.get("/cases/{number}", response_class=HTMLResponse)
async def case(request: Request, number: str, user: Reader) -> HTMLResponse:
    flow = workflow_for(request)
    async with flow.db.session() as session:
        detail = await case_detail(
            session, number, now=flow.clock(), reminder_days=flow.settings.sar_reminder_days
        )
    return page(
        request,
        "case.html",
        user,
        title=f"Case {number}",
        section="cases",
        notice=_notice(request),
        c=detail,
        s=detail.summary,
        outcomes=OUTCOME_WORDS,
        independent=user.username != detail.summary.raised_by,
    )


def _step_refused(exc: ValidationError) -> HTTPException:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())) or 'value'}: "
        f"{str(e.get('msg', 'not valid')).removeprefix('Value error, ')}"
        for e in exc.errors()[:3]
    )
    return HTTPException(422, f"The step could not be recorded ({problems}).")


@router.post("/cases/{number}/approve")
async def approve(request: Request, number: str, user: Decider) -> RedirectResponse:
    form = await _form(request)
    try:
        body = DecisionRequest(notes=form.get("notes", ""))
    except ValidationError as exc:
        raise _step_refused(exc) from exc
    await workflow_for(request).approve(user, number, body)
    return _back(number, "approve")


@router.post("/cases/{number}/refuse")
async def refuse(request: Request, number: str, user: Decider) -> RedirectResponse:
    form = await _form(request)
    try:
        body = RefuseRequest(reason=form.get("reason", ""))
    except ValidationError as exc:
        raise _step_refused(exc) from exc
    await workflow_for(request).refuse(user, number, body)
    return _back(number, "refuse")


@router.post("/cases/{number}/extend")
async def extend(request: Request, number: str, user: Decider) -> RedirectResponse:
    form = await _form(request)
    try:
        body = ExtendRequest.model_validate(
            {"months": form.get("months", ""), "reason": form.get("reason", "")}
        )
    except ValidationError as exc:
        raise _step_refused(exc) from exc
    await workflow_for(request).extend(user, number, body)
    return _back(number, "extend")


@router.post("/cases/{number}/outcome")
async def outcome(request: Request, number: str, user: OutcomeSetter) -> RedirectResponse:
    form = await _form(request)
    try:
        body = OutcomeRequest.model_validate(
            {"outcome": form.get("outcome", ""), "note": form.get("note", "")}
        )
    except ValidationError as exc:
        raise _step_refused(exc) from exc
    await workflow_for(request).set_outcome(user, number, body)
    return _back(number, "outcome")


@router.post("/cases/{number}/close")
async def close(request: Request, number: str, user: Decider) -> RedirectResponse:
    form = await _form(request)
    try:
        body = CloseRequest(note=form.get("note", ""))
    except ValidationError as exc:
        raise _step_refused(exc) from exc
    await workflow_for(request).close(user, number, body)
    return _back(number, "close")


# ------------------------------------------------------------------------------ logs


def _day(text: str, what: str) -> date | None:
    """A day from a date field; an empty field is no limit."""
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise HTTPException(422, f"The {what} day is not a date (give it as YYYY-MM-DD).") from None


def _period(start: str, end: str) -> tuple[datetime | None, datetime | None]:
    first, last = _day(start, "first"), _day(end, "last")
    if first is not None and last is not None and last < first:
        raise HTTPException(422, "The period must end on or after the day it starts.")
    return local_days(first, last)


def _csv_response(text: str, name: str) -> Response:
    return Response(
        text.encode("utf-8-sig"),  # a spreadsheet opens it as UTF-8
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


Since = Annotated[str, Query(alias="from", max_length=10)]
Until = Annotated[str, Query(alias="to", max_length=10)]
CaseNumber = Annotated[str, Query(alias="case", max_length=40)]


async def _review(request: Request, start: str, end: str, case: str, person: str) -> list[Any]:
    first, last = _period(start, end)
    async with request.app.state.db.session() as session:
        return await review_entries(session, LogFilter(first, last, case.strip(), person.strip()))


async def _releases(request: Request, start: str, end: str, case: str, recipient: str) -> list[Any]:
    first, last = _period(start, end)
    async with request.app.state.db.session() as session:
        return await release_entries(
            session, LogFilter(first, last, case.strip(), recipient.strip())
        )


def _filters(**values: Any) -> str:
    return urlencode({k: v for k, v in values.items() if v})


@router.get("/logs/review", response_class=HTMLResponse)
async def review_log(
    request: Request,
    user: LogReader,
    start: Since = "",
    end: Until = "",
    case: CaseNumber = "",
    person: Annotated[str, Query(alias="user", max_length=64)] = "",
) -> HTMLResponse:
    rows = await _review(request, start, end, case, person)
    return page(
        request,
        "review_log.html",
        user,
        title="Review log",
        section="evidence-logs",
        rows=rows,
        start=start,
        end=end,
        case=case,
        person=person,
        query=_filters(**{"from": start, "to": end, "case": case, "user": person}),
    )


@router.get("/logs/review.csv")
async def review_log_csv(
    request: Request,
    user: LogReader,
    start: Since = "",
    end: Until = "",
    case: CaseNumber = "",
    person: Annotated[str, Query(alias="user", max_length=64)] = "",
) -> Response:
    rows = await _review(request, start, end, case, person)
    return _csv_response(review_csv(rows), "review-log.csv")


@router.get("/logs/releases", response_class=HTMLResponse)
async def release_log(
    request: Request,
    user: LogReader,
    start: Since = "",
    end: Until = "",
    case: CaseNumber = "",
    recipient: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    rows = await _releases(request, start, end, case, recipient)
    return page(
        request,
        "release_log.html",
        user,
        title="Release log",
        section="evidence-logs",
        rows=rows,
        start=start,
        end=end,
        case=case,
        recipient=recipient,
        query=_filters(**{"from": start, "to": end, "case": case, "recipient": recipient}),
    )


@router.get("/logs/releases.csv")
async def release_log_csv(
    request: Request,
    user: LogReader,
    start: Since = "",
    end: Until = "",
    case: CaseNumber = "",
    recipient: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    rows = await _releases(request, start, end, case, recipient)
    return _csv_response(release_csv(rows), "release-log.csv")
