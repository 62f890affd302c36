"""The audit log in the browser: the state of its hash chain, then its entries newest first,
each as a sentence (`audit_words`), filtered by what happened (a family of actions or one
action), who did it, which unit it concerns and the days (in the control room's zone).
The same query as the JSON API's `GET /api/audit` (`controller.audit.entries`)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from controller import audit
from controller.api.auth import Permission, User, allow
from controller.localtime import day_start
from controller.pages.audit_words import entry_words, kind_choices
from controller.pages.render import PageRoute, page
from controller.pages.templating import page_zone

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

AuditUser = Annotated[User, Depends(allow(Permission.VIEW_AUDIT))]
AUDIT_PAGE = 100


@router.get("/audit", response_class=HTMLResponse)
async def audit_log(
    request: Request,
    user: AuditUser,
    before: Annotated[int | None, Query(ge=1)] = None,
    kind: Annotated[str | None, Query(max_length=100)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    unit: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(alias="from", max_length=20)] = None,
    to: Annotated[str | None, Query(alias="to", max_length=20)] = None,
) -> HTMLResponse:
    db = request.app.state.db
    zone = page_zone()
    kind, actor, unit = (kind or "").strip(), (actor or "").strip(), (unit or "").strip()
    first, first_error = _day(since, "first")
    last, last_error = _day(to, "last")
    error = first_error or last_error
    if error is None and first and last and last < first:
        error = "The days must end on or after the day they start."
    check = await audit.verify(db)
    actions, actors = await audit.names(db)
    entries: list[tuple[audit.AuditRecord, object]] = []
    older = None
    if error is None:
        found = await audit.entries(
            db,
            limit=AUDIT_PAGE,
            before=before,
            actor=actor or None,
            action=kind if "." in kind else None,
            family=kind if kind and "." not in kind else None,
            unit=unit or None,
            since=day_start(first, zone) if first else None,
            until=day_start(last + timedelta(days=1), zone) if last else None,
        )
        entries = [(record, entry_words(record)) for record in found.records]
        older = found.older
    filters = {
        k: v
        for k, v in (
            ("kind", kind),
            ("actor", actor),
            ("unit", unit),
            ("from", first.isoformat() if first else ""),
            ("to", last.isoformat() if last else ""),
        )
        if v
    }
    return page(
        request,
        "audit.html",
        user,
        title="Audit log",
        section="audit",
        status_code=422 if error else 200,
        error=error,
        check=check,
        entries=entries,
        older_url=f"/audit?{urlencode(filters | {'before': older})}" if older else None,
        kinds=kind_choices(actions),
        actors=actors,
        kind=kind,
        actor=actor,
        unit=unit,
        first=first,
        last=last,
        filtered=bool(filters),
        zone=str(zone),
    )


def _day(value: str | None, which: str) -> tuple[date | None, str | None]:
    """A day of the filter as sent (empty: none), or the sentence saying it is not one."""
    if not value or not value.strip():
        return None, None
    try:
        return date.fromisoformat(value.strip()), None
    except ValueError:
        return None, f"The {which} day is not a date (give it as YYYY-MM-DD)."
