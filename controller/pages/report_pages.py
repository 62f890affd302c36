"""The key performance figures over a period of whole days in the control room's zone
(`ControllerSettings.timezone`), up to now; the availability of each unit a page at a time,
the least available first; with the evidence figures (footage released, cases by type
and outcome). (The audit log is `audit_pages`, the users `user_pages`.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from controller.api.auth import Permission, User, allow, contractor_scope
from controller.evidence.case_views import CASE_TYPE_WORDS, OUTCOME_WORDS
from controller.evidence.evidence_logs import evidence_kpis
from controller.fleet.kpis import UnitAvailability, kpi_report
from controller.localtime import day_start, local, period_end
from controller.pages.render import PageRoute, page

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

KpiUser = Annotated[User, Depends(allow(Permission.VIEW_KPIS))]
DEFAULT_PERIOD_DAYS = 30


def _period(start: date | None, end: date | None, today: date) -> tuple[date, date]:
    """The inclusive days of the report: default the last 30 days up to today."""
    last = end or today
    first = start or last - timedelta(days=DEFAULT_PERIOD_DAYS - 1)
    return first, last


#: Units in the KPI page's table of availability per unit, a page at a time.
KPI_UNITS_PAGE = 50


@dataclass(frozen=True, slots=True)
class UnitsShown:
    """A page of the availability per unit, the least available first: `rows`, their
    place among `total`, how many units were up throughout, the links to the pages
    before and after."""

    rows: list[UnitAvailability]
    offset: int
    total: int
    up_throughout: int
    previous: str | None
    next: str | None
    number: int
    count: int


def units_shown(units: list[UnitAvailability], number: int, first: date, last: date) -> UnitsShown:
    ordered = sorted(units, key=lambda u: (u.availability, u.unit_id))
    count = max(1, -(-len(ordered) // KPI_UNITS_PAGE))
    number = min(number, count)
    offset = (number - 1) * KPI_UNITS_PAGE

    def link(to: int) -> str:
        query = {"from": first.isoformat(), "to": last.isoformat(), "page": str(to)}
        return "/kpis?" + urlencode(query) + "#per-unit"

    return UnitsShown(
        rows=ordered[offset : offset + KPI_UNITS_PAGE],
        offset=offset,
        total=len(ordered),
        up_throughout=sum(1 for u in ordered if u.down_hours <= 0),
        previous=link(number - 1) if number > 1 else None,
        next=link(number + 1) if number < count else None,
        number=number,
        count=count,
    )


@router.get("/kpis", response_class=HTMLResponse)
async def kpis(
    request: Request,
    user: KpiUser,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
    units_page: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    zone = request.app.state.settings.zone
    now = datetime.now(UTC)
    today = local(now, zone).date()
    first, last = _period(start, end, today)
    error = None
    if first > today:
        error = "The period cannot start after today."
    elif last < first:
        error = "The period must end on or after the day it starts."
    if error is not None:
        return page(
            request,
            "kpis.html",
            user,
            title="KPIs",
            section="kpis",
            status_code=422,
            error=error,
            first=first,
            last=last,
            report=None,
        )
    begin = day_start(first, zone)
    finish = period_end(last, zone, now)
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
        until_now=last >= today,
        error=None,
        evidence=evidence,
        evidence_types=CASE_TYPE_WORDS,
        evidence_outcomes=OUTCOME_WORDS,
        per_unit=units_shown(report.units, units_page, first, last),
    )
