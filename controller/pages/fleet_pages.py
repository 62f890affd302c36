"""The fleet overview (a page of units at a time, what needs attention first, refreshing
only what changed: `fleet_list`), a unit's page (with its reference picture for the
control room: `snapshot_pages`) and the footage page (control room only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from controller.accounts.permissions import may
from controller.api.auth import Permission, User, allow, contractor_scope
from controller.callouts import CalloutService
from controller.deployments.listing import unit_deployments
from controller.fleet import unit_detail
from controller.fleet.command_log import MAINTENANCE_ACTIONS, recent_commands, unmatched_acks
from controller.fleet.history import latest_selftests, power_since
from controller.fleet.index_views import index_summary
from controller.fleet.units import unit_in_scope
from controller.pages.charts import PowerPoint, battery_periods, power_chart
from controller.pages.fleet_list import (
    MAX_HAVE,
    Filters,
    changes,
    filter_choices,
    fleet_view,
    page_context,
)
from controller.pages.render import PageRoute, page
from controller.pages.snapshot_pages import reference_panel
from controller.pages.unit_health import ACTION_WORDS, unit_health_words

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

FleetUser = Annotated[User, Depends(allow(Permission.VIEW_FLEET))]
FootageUser = Annotated[User, Depends(allow(Permission.VIEW_FOOTAGE))]
SELFTESTS_SHOWN = 10
CALLOUTS_SHOWN = 20
CHART_HOURS = (6, 24, 72, 168)
COMMANDS_SHOWN = 10
Text = Annotated[str | None, Query(max_length=200)]
PageNumber = Annotated[int, Query(alias="page", ge=1, le=100_000)]


@router.get("/fleet", response_class=HTMLResponse)
async def fleet(
    request: Request,
    user: FleetUser,
    q: Text = None,
    health: Text = None,
    site: Text = None,
    contractor: Text = None,
    page_number: PageNumber = 1,
) -> HTMLResponse:
    scoped = contractor_scope(user) is not None
    filters = Filters.read(q, health, site, contractor, page_number, scoped=scoped)
    view = await fleet_view(request, user, filters)
    sites, contractors = await filter_choices(request, user)
    return page(
        request,
        "fleet.html",
        user,
        title="Fleet",
        section="fleet",
        sites=sites,
        contractors=contractors,
        **page_context(view, filters, scoped=scoped),
    )


@router.get("/fleet/changes")
async def fleet_changes(
    request: Request,
    user: FleetUser,
    q: Text = None,
    health: Text = None,
    site: Text = None,
    contractor: Text = None,
    page_number: PageNumber = 1,
    have: Annotated[str, Query(max_length=MAX_HAVE * 13)] = "",
) -> JSONResponse:
    """What changed on a fleet page since the browser drew it (static/fleet.js)."""
    scoped = contractor_scope(user) is not None
    filters = Filters.read(q, health, site, contractor, page_number, scoped=scoped)
    view = await fleet_view(request, user, filters)
    return JSONResponse(changes(view, have, scoped=scoped), headers={"Cache-Control": "no-store"})


@router.get("/units/{unit_id}", response_class=HTMLResponse)
async def unit_page(
    request: Request,
    unit_id: str,
    user: FleetUser,
    hours: Annotated[int, Query(ge=1, le=24 * 31)] = 24,
) -> HTMLResponse:
    now = datetime.now(UTC)
    start = now - timedelta(hours=hours)
    scope = contractor_scope(user)
    async with request.app.state.db.session() as session:
        unit = await unit_in_scope(session, unit_id, scope)
        detail = await unit_detail(session, unit_id)
        sent = await recent_commands(
            session,
            unit_id,
            now=now,
            limit=COMMANDS_SHOWN,
            actions=MAINTENANCE_ACTIONS if scope is not None else None,
        )
        index = unmatched = None
        if scope is None:
            index = await index_summary(
                session, unit_id, has_signing_key=unit.signing_public_key is not None
            )
            unmatched = await unmatched_acks(session, unit_id, limit=COMMANDS_SHOWN)
        tests = await latest_selftests(session, unit_id, limit=SELFTESTS_SHOWN)
        readings = await power_since(session, unit_id, start)
        callouts = await CalloutService(request.app.state.settings).list(
            session, unit_id=unit_id, contractor=scope, limit=CALLOUTS_SHOWN
        )
        deployments = None
        if may(user.role, Permission.VIEW_DEPLOYMENTS):
            deployments = await unit_deployments(session, unit_id)
        reference = None
        if may(user.role, Permission.VIEW_REFERENCE_FRAME):
            reference = await reference_panel(session, unit_id)
    points = [PowerPoint(r.at, r.on_battery, _float(r.facts.get("charge_pct"))) for r in readings]
    return page(
        request,
        "unit.html",
        user,
        title=f"Unit {unit_id}",
        section="fleet",
        detail=detail,
        unit=detail.summary,
        tests=tests,
        chart=power_chart(points, start=start, end=now),
        battery=battery_periods(points, now),
        readings=readings[-1:],
        hours=hours,
        chart_hours=CHART_HOURS,
        callouts=callouts,
        deployments=deployments,
        health=unit_health_words(detail.summary, detail.status, contractor=scope is not None),
        commands=sent,
        action_words=ACTION_WORDS,
        unmatched_acks=unmatched,
        index=index,
        reference=reference,
    )


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@router.get("/units/{unit_id}/footage", response_class=HTMLResponse)
async def footage(request: Request, unit_id: str, user: FootageUser) -> HTMLResponse:
    async with request.app.state.db.session() as session:
        await unit_in_scope(session, unit_id, contractor_scope(user))
        detail = await unit_detail(session, unit_id)
    return page(
        request,
        "footage.html",
        user,
        title=f"Footage of {unit_id}",
        section="fleet",
        detail=detail,
        unit=detail.summary,
    )
