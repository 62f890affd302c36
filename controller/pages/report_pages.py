"""The pages of account and oversight: KPIs over a period (with the evidence figures:
footage released, cases by type and outcome), the audit log with the state of its hash
chain, and the list of users."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from controller import audit
from controller.accounts import Accounts
from controller.api.auth import Permission, User, allow, contractor_scope
from controller.evidence.case_views import CASE_TYPE_WORDS, OUTCOME_WORDS
from controller.evidence.evidence_logs import evidence_kpis
from controller.fleet.kpis import kpi_report
from controller.pages.render import PageRoute, page

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

KpiUser = Annotated[User, Depends(allow(Permission.VIEW_KPIS))]
AuditUser = Annotated[User, Depends(allow(Permission.VIEW_AUDIT))]
UsersUser = Annotated[User, Depends(allow(Permission.VIEW_USERS))]
AUDIT_PAGE = 100
DEFAULT_PERIOD_DAYS = 30


def _period(start: date | None, end: date | None, today: date) -> tuple[date, date]:
    """The inclusive days of the report: default the last 30 days up to today."""
    last = end or today
    first = start or last - timedelta(days=DEFAULT_PERIOD_DAYS - 1)
    return first, last


@router.get("/kpis", response_class=HTMLResponse)
async def kpis(
    request: Request,
    user: KpiUser,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
) -> HTMLResponse:
    now = datetime.now(UTC)
    first, last = _period(start, end, now.date())
    if last < first:
        return page(
            request,
            "kpis.html",
            user,
            title="KPIs",
            section="kpis",
            status_code=422,
            error="The period must end on or after the day it starts.",
            first=first,
            last=last,
            report=None,
        )
    begin = datetime.combine(first, time(), UTC)
    finish = min(datetime.combine(last + timedelta(days=1), time(), UTC), now)
    if finish <= begin:
        finish = begin + timedelta(seconds=1)
    scope = contractor_scope(user)
    async with request.app.state.db.session() as session:
        report = await kpi_report(session, begin, finish, contractor=scope)
        evidence = None if scope is not None else await evidence_kpis(session, begin, finish)
    return page(
        request,
        "kpis.html",
        user,
        title="KPIs",
        section="kpis",
        first=first,
        last=last,
        report=report,
        error=None,
        evidence=evidence,
        evidence_types=CASE_TYPE_WORDS,
        evidence_outcomes=OUTCOME_WORDS,
    )


@router.get("/audit", response_class=HTMLResponse)
async def audit_log(
    request: Request,
    user: AuditUser,
    before: Annotated[int | None, Query(ge=1)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=100)] = None,
) -> HTMLResponse:
    db = request.app.state.db
    check = await audit.verify(db)
    found = await audit.entries(
        db, limit=AUDIT_PAGE, before=before, actor=actor or None, action=action or None
    )
    entries = [(record, _details(record.details)) for record in found.records]
    older = found.older
    return page(
        request,
        "audit.html",
        user,
        title="Audit log",
        section="audit",
        check=check,
        entries=entries,
        older=older,
        actor=actor or "",
        action=action or "",
    )


def _details(details: dict[str, Any]) -> list[tuple[str, str]]:
    """Each detail as (name, text): text as it is, anything else as JSON."""
    return [
        (str(k), v if isinstance(v, str) else json.dumps(v, sort_keys=True)[:300])
        for k, v in details.items()
    ]


@router.get("/users", response_class=HTMLResponse)
async def users(request: Request, user: UsersUser) -> HTMLResponse:
    accounts: Accounts = request.app.state.accounts
    rows = await accounts.users()
    return page(request, "users.html", user, title="Users", section="users", rows=rows)
