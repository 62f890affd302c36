"""The fleet overview (with its self-refreshing table), a unit's page, its reference frame
and the footage page (control room only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.api.auth import Role, User, contractor_scope, current_user, require_role
from controller.command_log import MAINTENANCE_ACTIONS, recent_commands, unmatched_acks
from controller.fleet import FleetOverview, UnitSummary, fleet_overview, unit_detail
from controller.index_views import index_summary
from controller.pages import deployment_views
from controller.pages.charts import PowerPoint, battery_periods, power_chart
from controller.pages.render import PageRoute, page
from controller.pages.unit_health import ACTION_WORDS, unit_health_words
from controller.store.fleet import Callout, PowerReading, SelfTestRecord, Unit

__all__ = ["open_callout_counts", "router", "scoped_unit"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

AnyUser = Annotated[User, Depends(current_user)]
RoomUser = Annotated[User, Depends(require_role(Role.MANAGER, Role.OPERATOR, Role.DATA_CONTROLLER))]
FootageUser = Annotated[User, Depends(require_role(Role.MANAGER, Role.DATA_CONTROLLER))]
HEALTH = ("ok", "degraded", "fault")
SELFTESTS_SHOWN = 10
CALLOUTS_SHOWN = 20
CHART_HOURS = (6, 24, 72, 168)
COMMANDS_SHOWN = 10


async def open_callout_counts(session: AsyncSession, contractor: str | None) -> dict[str, int]:
    query = (
        select(Callout.unit_id, func.count())
        .where(Callout.open_key.is_not(None))
        .group_by(Callout.unit_id)
    )
    if contractor is not None:
        query = query.where(Callout.contractor == contractor)
    return {unit_id: int(count) for unit_id, count in (await session.execute(query)).all()}


async def scoped_unit(session: AsyncSession, user: User, unit_id: str) -> Unit:
    """The unit, if this user may see it (a contractor: only units on their contract)."""
    unit = await session.get(Unit, unit_id)
    if unit is None:
        raise HTTPException(404, f"There is no unit {unit_id!r} in the inventory.")
    scope = contractor_scope(user)
    if scope is not None and unit.contractor != scope:
        raise HTTPException(403, f"Unit {unit_id} is not on the {scope} contract.")
    return unit


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
    user: AnyUser,
    health: Filter = None,
    site: Filter = None,
    contractor: Filter = None,
) -> HTMLResponse:
    context = await _fleet_context(request, user, health, site, contractor)
    return page(request, "fleet.html", user, title="Fleet", section="fleet", **context)


@router.get("/fleet/table", response_class=HTMLResponse)
async def fleet_table(
    request: Request,
    user: AnyUser,
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
    user: AnyUser,
    hours: Annotated[int, Query(ge=1, le=24 * 31)] = 24,
) -> HTMLResponse:
    now = datetime.now(UTC)
    start = now - timedelta(hours=hours)
    scope = contractor_scope(user)
    async with request.app.state.db.session() as session:
        unit = await scoped_unit(session, user, unit_id)
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
        tests = list(
            (
                await session.execute(
                    select(SelfTestRecord)
                    .where(SelfTestRecord.unit_id == unit_id)
                    .order_by(SelfTestRecord.finished_at.desc())
                    .limit(SELFTESTS_SHOWN)
                )
            ).scalars()
        )
        readings = list(
            (
                await session.execute(
                    select(PowerReading)
                    .where(PowerReading.unit_id == unit_id, PowerReading.at >= start)
                    .order_by(PowerReading.at)
                )
            ).scalars()
        )
        callouts = list(
            (
                await session.execute(
                    select(Callout)
                    .where(Callout.unit_id == unit_id)
                    .order_by(Callout.raised_at.desc())
                    .limit(CALLOUTS_SHOWN)
                )
            ).scalars()
        )
        deployments = None
        if user.role is not Role.CONTRACTOR:
            deployments = await deployment_views.unit_deployments(session, unit_id)
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
async def reference_frame(request: Request, unit_id: str, user: RoomUser) -> Response:
    """The unit's reference frame for drawing privacy masks; without a snapshot from the
    unit, a neutral 16:9 grid of the same proportions."""
    async with request.app.state.db.session() as session:
        await scoped_unit(session, user, unit_id)
    return Response(
        _placeholder_grid(unit_id),
        media_type="image/svg+xml",
        headers={"Cache-Control": "no-store"},
    )


def _placeholder_grid(unit_id: str, width: int = 1280, height: int = 720) -> str:
    lines = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}">',
        f'<rect width="{width}" height="{height}" fill="#dfe4ea"/>',
    ]
    for x in range(0, width + 1, 80):
        lines.append(f'<line x1="{x}" y1="0" x2="{x}" y2="{height}" stroke="#c3cbd4"/>')
    for y in range(0, height + 1, 80):
        lines.append(f'<line x1="0" y1="{y}" x2="{width}" y2="{y}" stroke="#c3cbd4"/>')
    lines.append(
        f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" font-family="sans-serif" '
        f'font-size="28" fill="#6b7785">No reference frame from {unit_id} yet: '
        "draw masks on the grid</text></svg>"
    )
    return "".join(lines)


@router.get("/units/{unit_id}/footage", response_class=HTMLResponse)
async def footage(request: Request, unit_id: str, user: FootageUser) -> HTMLResponse:
    async with request.app.state.db.session() as session:
        await scoped_unit(session, user, unit_id)
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
