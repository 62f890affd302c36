"""The fleet overview (with its self-refreshing table), a unit's page, its reference frame
and the footage page (control room only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from controller.accounts.permissions import may
from controller.api.auth import Permission, User, allow, contractor_scope
from controller.callouts import CalloutService
from controller.callouts.board import open_callout_counts
from controller.deployments.listing import unit_deployments
from controller.fleet import FleetOverview, UnitSummary, fleet_overview, unit_detail
from controller.fleet.command_log import MAINTENANCE_ACTIONS, recent_commands, unmatched_acks
from controller.fleet.history import latest_selftests, power_since
from controller.fleet.index_views import index_summary
from controller.fleet.units import unit_in_scope
from controller.pages.charts import PowerPoint, battery_periods, power_chart
from controller.pages.render import PageRoute, page
from controller.pages.templating import macro
from controller.pages.unit_health import ACTION_WORDS, unit_health_words

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

FleetUser = Annotated[User, Depends(allow(Permission.VIEW_FLEET))]
FrameUser = Annotated[User, Depends(allow(Permission.VIEW_REFERENCE_FRAME))]
FootageUser = Annotated[User, Depends(allow(Permission.VIEW_FOOTAGE))]
HEALTH = ("ok", "degraded", "fault")
SELFTESTS_SHOWN = 10
CALLOUTS_SHOWN = 20
CHART_HOURS = (6, 24, 72, 168)
COMMANDS_SHOWN = 10
_placeholder_frame = macro("_frames.html", "placeholder_frame")


def _filtered(
    overview: FleetOverview, health: str | None, site: str | None, contractor: str | None
) -> list[UnitSummary]:
    return [
        u
        for u in overview.units
        if (not health or u.state == health)
        and (not site or u.site == site)
        and (not contractor or u.contractor == contractor)
    ]


async def _fleet_context(
    request: Request, user: User, health: str | None, site: str | None, contractor: str | None
) -> dict[str, Any]:
    scope = contractor_scope(user)
    async with request.app.state.db.session() as session:
        overview = await fleet_overview(session, contractor=scope)
        callouts = await open_callout_counts(session, scope)
    health = health if health in HEALTH else None
    query = "&".join(
        f"{k}={v}" for k, v in (("health", health), ("site", site), ("contractor", contractor)) if v
    )
    return {
        "overview": overview,
        "units": _filtered(overview, health, site, None if scope else contractor),
        "callouts": callouts,
        "sites": sorted({u.site for u in overview.units if u.site}),
        "contractors": sorted({u.contractor for u in overview.units if u.contractor}),
        "health": health or "",
        "site": site or "",
        "contractor": contractor or "",
        "scoped": scope is not None,
        "table_url": "/fleet/table" + (f"?{query}" if query else ""),
    }


Filter = Annotated[str | None, Query(max_length=200)]


@router.get("/fleet", response_class=HTMLResponse)
async def fleet(
    request: Request,
    user: FleetUser,
    health: Filter = None,
    site: Filter = None,
    contractor: Filter = None,
) -> HTMLResponse:
    context = await _fleet_context(request, user, health, site, contractor)
    return page(request, "fleet.html", user, title="Fleet", section="fleet", **context)


@router.get("/fleet/table", response_class=HTMLResponse)
async def fleet_table(
    request: Request,
    user: FleetUser,
    health: Filter = None,
    site: Filter = None,
    contractor: Filter = None,
) -> HTMLResponse:
    context = await _fleet_context(request, user, health, site, contractor)
    return page(request, "fleet_table.html", user, title="Fleet", **context)


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
    )


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@router.get("/units/{unit_id}/reference-frame")
async def reference_frame(request: Request, unit_id: str, user: FrameUser) -> Response:
    """The unit's reference frame for drawing privacy masks; without a snapshot from the
    unit, a neutral 16:9 grid of the same proportions."""
    async with request.app.state.db.session() as session:
        await unit_in_scope(session, unit_id, contractor_scope(user))
    return Response(
        _placeholder_frame(unit_id),
        media_type="image/svg+xml",
        headers={"Cache-Control": "no-store"},
    )


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
