"""JSON routes for the fleet: the units a page at a time (filtered; by unit id or what needs
attention first), unit detail, remote self-test, recording index.

A contractor sees only the units on their contract (any other unit reads as unknown),
and of those only maintenance data: health, faults, callouts, power and self-tests;
never footage, snapshots, deployment or PIA content. Who may call what is
`controller.accounts.permissions`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from controller import audit
from controller.api.auth import Permission, User, allow, contractor_scope
from controller.callouts import CalloutService, CalloutView
from controller.errors import NotOnContract, UnknownUnitError
from controller.fleet import FleetOverview, RollUp, UnitSummary, unit_detail
from controller.fleet.attention import FleetFilter, Order, fleet_page
from controller.fleet.command_log import (
    MAINTENANCE_ACTIONS,
    AckView,
    CommandView,
    recent_commands,
    unmatched_acks,
)
from controller.fleet.commands import request_selftest
from controller.fleet.history import latest_power, latest_selftests
from controller.fleet.index_views import IndexSummary, SegmentView, index_summary, segments
from controller.fleet.units import unit_in_scope
from controller.store.base import Session, utcnow
from controller.store.fleet import Unit

__all__ = ["CONTRACTOR_STATUS_FIELDS", "router"]

router = APIRouter(prefix="/api", tags=["fleet"])

#: The live-status fields a contractor sees: maintenance facts only (a field added to the
#: status later stays hidden from contractors until it is listed here).
CONTRACTOR_STATUS_FIELDS = frozenset(
    {
        "online", "online_reason", "online_changed_at", "last_seen_at", "heartbeat_at",
        "agent_version", "recording", "storage_total_bytes", "storage_free_bytes",
        "outbox_depth", "outbox_dropped", "uptime_s", "temperature_c", "clock_offset_s",
        "reported_faults", "power_source",
        "on_battery", "low_battery", "charge_pct", "power_at", "last_selftest_at",
        "last_selftest_verdict", "last_selftest_id", "last_pass_at",
    }
)  # fmt: skip
HISTORY_DEFAULT = 20
FOOTAGE_SHOWN = 500


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SelfTestOut(_Model):
    report_id: str
    trigger: str
    command_id: str | None
    started_at: datetime
    finished_at: datetime
    verdict: str
    checks: list[dict[str, Any]] = Field(description="Each check: value, threshold, verdict")


class PowerOut(_Model):
    at: datetime
    source: str
    on_battery: bool
    facts: dict[str, Any]


class UnitView(_Model):
    """One unit. For a contractor, `status` holds maintenance fields only, `commands` only
    the self-tests asked for, and the inventory, sequence-gap, recording-index and
    unmatched-acknowledgement sections are left out."""

    summary: UnitSummary
    status: dict[str, Any]
    faults: list[dict[str, Any]]
    callouts: list[CalloutView]
    selftests: list[SelfTestOut]
    power: list[PowerOut]
    commands: list[CommandView] = Field(description="Latest commands sent, with their acks")
    inventory: dict[str, Any] | None = None
    gaps: list[dict[str, Any]] | None = None
    recording_index: IndexSummary | None = None
    unmatched_acks: list[AckView] | None = Field(
        None, description="Acks from the unit for commands never sent to it (flagged)"
    )


class CommandSent(_Model):
    unit_id: str
    command_id: str
    action: str
    expires_at: datetime
    detail: str


class FootageIndex(_Model):
    unit_id: str
    segments: list[SegmentView]
    detail: str


async def _visible_unit(session: Session, unit_id: str, user: User) -> Unit:
    """The unit, if it exists and `user` may see it; else UnknownUnitError (404): in the
    API a contractor cannot even learn that another contractor's unit exists."""
    try:
        return await unit_in_scope(session, unit_id, contractor_scope(user))
    except NotOnContract as exc:
        raise UnknownUnitError(unit_id) from exc


class UnitsPage(FleetOverview):
    """One page of units. `counts` are of every unit matching the filters other than
    `health`; `total` of those matching every filter; `next_cursor`, when set, asks for
    the next page."""

    total: int = Field(description="Units matching every filter")
    order: Order = Field(description="unit: by unit id; attention: what needs attention first")
    limit: int = Field(description="Units per page at most")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last")


UNITS_PAGE = 100
UNITS_PAGE_MAX = 1000
Filter = Annotated[str | None, Query(max_length=200)]


@router.get(
    "/units", response_model=UnitsPage, summary="Units with their roll-up, a page at a time"
)
async def get_units(
    request: Request,
    user: Annotated[User, Depends(allow(Permission.VIEW_FLEET))],
    limit: Annotated[int, Query(ge=1, le=UNITS_PAGE_MAX, description="Units per page")] = (
        UNITS_PAGE
    ),
    cursor: Annotated[
        str | None, Query(max_length=400, description="`next_cursor` of the previous page")
    ] = None,
    order: Annotated[
        Order, Query(description="unit (stable, to walk the fleet) or attention")
    ] = "unit",
    health: Annotated[RollUp | None, Query(description="Only units in this state")] = None,
    site: Filter = None,
    contractor: Filter = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Text in the unit id or site")
    ] = None,
) -> UnitsPage:
    scope = contractor_scope(user)
    filters = FleetFilter(
        health=health, site=site, contractor=None if scope else contractor, text=q
    )
    async with request.app.state.db.session() as session:
        found = await fleet_page(
            session, contractor=scope, filters=filters, order=order, limit=limit, after=cursor
        )
    units = found.units
    if scope is not None:
        # Where a unit stands is the control room's to share: not a maintenance fact.
        units = [u.model_copy(update={"position": None}) for u in units]
    return UnitsPage(
        counts=found.counts,
        units=units,
        total=found.total,
        order=found.order,
        limit=found.limit,
        next_cursor=found.next_cursor,
    )


@router.get("/units/{unit_id}", response_model=UnitView, summary="One unit in detail")
async def get_unit(
    unit_id: str,
    request: Request,
    user: Annotated[User, Depends(allow(Permission.VIEW_FLEET))],
    history: Annotated[
        int, Query(ge=1, le=500, description="Self-test, power and callout rows at most")
    ] = HISTORY_DEFAULT,
) -> UnitView:
    scope = contractor_scope(user)
    async with request.app.state.db.session() as session:
        unit = await _visible_unit(session, unit_id, user)
        detail = await unit_detail(session, unit_id)
        sent = await recent_commands(
            session,
            unit_id,
            now=utcnow(),
            limit=history,
            actions=MAINTENANCE_ACTIONS if scope is not None else None,
        )
        index = unmatched = None
        if scope is None:
            index = await index_summary(
                session, unit_id, has_signing_key=unit.signing_public_key is not None
            )
            unmatched = await unmatched_acks(session, unit_id, limit=history)
        callouts = await CalloutService(request.app.state.settings).list(
            session, unit_id=unit_id, contractor=scope, limit=history
        )
        selftests = await latest_selftests(session, unit_id, limit=history)
        power = await latest_power(session, unit_id, limit=history)
        view = UnitView(
            summary=detail.summary,
            status=detail.status,
            faults=detail.faults,
            callouts=callouts,
            selftests=[
                SelfTestOut(
                    report_id=r.report_id,
                    trigger=r.trigger,
                    command_id=r.command_id,
                    started_at=r.started_at,
                    finished_at=r.finished_at,
                    verdict=r.verdict,
                    checks=r.checks,
                )
                for r in selftests
            ],
            power=[
                PowerOut(at=p.at, source=p.source, on_battery=p.on_battery, facts=p.facts)
                for p in power
            ],
            commands=sent,
        )
    if scope is not None:
        status = {k: v for k, v in detail.status.items() if k in CONTRACTOR_STATUS_FIELDS}
        summary = detail.summary.model_copy(update={"position": None})
        return view.model_copy(update={"status": status, "summary": summary})
    inventory = {
        "ups": detail.ups,
        "serial": detail.serial,
        "registered_at": detail.registered_at,
        "retired_at": detail.retired_at,
    }
    return view.model_copy(
        update={
            "inventory": inventory,
            "gaps": detail.gaps,
            "recording_index": index,
            "unmatched_acks": unmatched,
        }
    )


@router.post(
    "/units/{unit_id}/selftest",
    response_model=CommandSent,
    status_code=202,
    summary="Ask the unit to run its self-test now (a signed command)",
)
async def post_selftest(
    unit_id: str,
    request: Request,
    user: Annotated[User, Depends(allow(Permission.RUN_SELFTEST))],
) -> CommandSent:
    db = request.app.state.db
    async with db.session() as session:
        await _visible_unit(session, unit_id, user)
    command = await request_selftest(db, request.app.state.link, unit_id, actor=user.username)
    return CommandSent(
        unit_id=unit_id,
        command_id=command.body.command_id,
        action="selftest_now",
        expires_at=command.body.expires_at,
        detail="Self-test requested; the unit's answers appear with the unit's commands and "
        "its report with the unit's self-tests.",
    )


@router.get(
    "/units/{unit_id}/footage",
    response_model=FootageIndex,
    summary="The unit's recording index (data controllers and managers)",
)
async def get_footage(
    unit_id: str,
    request: Request,
    user: Annotated[User, Depends(allow(Permission.VIEW_FOOTAGE))],
) -> FootageIndex:
    async with request.app.state.db.session() as session:
        await _visible_unit(session, unit_id, user)
        rows = await segments(session, unit_id, limit=FOOTAGE_SHOWN)
        await audit.record(
            session,
            actor=user.username,
            action="footage.index_viewed",
            subject=f"unit:{unit_id}",
            details={},
        )
        await session.commit()
    detail = (
        f"The latest {len(rows)} segments the unit reported, newest first, each with the "
        "status of the signed report that brought it."
        if rows
        else "The unit has reported no segments yet."
    )
    return FootageIndex(unit_id=unit_id, segments=rows, detail=detail)
