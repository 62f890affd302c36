"""The fleet page at any fleet size: one page of units (what needs attention first), its
filters and page links, and its refresh, which sends only the rows that changed.

    GET /fleet?q=&health=&site=&contractor=&page=      the page (50 units a page)
    GET /fleet/changes?...same...&have=fp.fp.fp        JSON for static/fleet.js

The browser keeps each row's fingerprint (`data-fp`, a hash of what the row shows); the
refresh answers the order of the page's units, the figures, and the HTML of each row whose
fingerprint the browser does not have. A page of units that did not change costs a few
hundred bytes to refresh; "42 s ago" is kept current by the browser from each time's
`datetime` and the server's clock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import Request

from controller.api.auth import User, contractor_scope
from controller.callouts.board import open_callout_counts
from controller.fleet.attention import HEALTH, FleetFilter, FleetPage, fleet_page
from controller.fleet.attention import filter_choices as fleet_filter_choices
from controller.fleet.rollup import RollUp, UnitSummary
from controller.pages.templating import macro

__all__ = [
    "MAX_HAVE",
    "PAGE_SIZE",
    "Filters",
    "FleetView",
    "changes",
    "filter_choices",
    "fleet_view",
    "page_context",
]

PAGE_SIZE = 50
#: Fingerprints a refresh may name (a page's worth, and some to spare).
MAX_HAVE = 200
_row = macro("_fleet.html", "row")
_caption = macro("_fleet.html", "caption")
_pager = macro("_fleet.html", "pager")
_stamp = macro("_fleet.html", "stamp")


@dataclass(frozen=True, slots=True)
class Filters:
    """The fleet page's query: the filters and the page number."""

    q: str = ""
    health: str = ""
    site: str = ""
    contractor: str = ""
    page: int = 1

    @classmethod
    def read(
        cls,
        q: str | None,
        health: str | None,
        site: str | None,
        contractor: str | None,
        page: int,
        *,
        scoped: bool,
    ) -> Filters:
        return cls(
            q=(q or "").strip(),
            health=health if health in HEALTH else "",
            site=site or "",
            contractor="" if scoped else (contractor or ""),
            page=page,
        )

    def domain(self) -> FleetFilter:
        state: RollUp | None = None
        for name in HEALTH:
            if name == self.health:
                state = name
        return FleetFilter(
            health=state,
            site=self.site or None,
            contractor=self.contractor or None,
            text=self.q or None,
        )

    def query(self, **changes: Any) -> str:
        values = {
            "q": self.q,
            "health": self.health,
            "site": self.site,
            "contractor": self.contractor,
            "page": self.page,
            **changes,
        }
        kept = {k: v for k, v in values.items() if v not in ("", None) and (k, v) != ("page", 1)}
        return urlencode(kept)


@dataclass(frozen=True, slots=True)
class Pages:
    number: int
    count: int
    previous: str | None
    next: str | None


@dataclass(frozen=True, slots=True)
class FleetView:
    fleet: FleetPage
    callouts: dict[str, int]
    groups: dict[str, str]
    fingerprints: dict[str, str]
    pages: Pages


def _link(path: str, filters: Filters, **changes: Any) -> str:
    query = filters.query(**changes)
    return f"{path}?{query}" if query else path


def _fingerprint(unit: UnitSummary, callouts: int, group: str) -> str:
    """A hash of what the unit's row shows."""
    text = f"{unit.model_dump_json()}|{callouts}|{group}"
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


async def fleet_view(request: Request, user: User, filters: Filters) -> FleetView:
    scope = contractor_scope(user)
    offset = (filters.page - 1) * PAGE_SIZE
    async with request.app.state.db.session() as session:
        fleet = await fleet_page(
            session, contractor=scope, filters=filters.domain(), limit=PAGE_SIZE, offset=offset
        )
        shown = {u.unit_id for u in fleet.units}
        callouts = {
            unit_id: n
            for unit_id, n in (await open_callout_counts(session, scope)).items()
            if unit_id in shown
        }
    groups = fleet.groups
    count = max(1, -(-fleet.total // PAGE_SIZE))
    number = min(filters.page, count)
    pages = Pages(
        number=number,
        count=count,
        previous=_link("/fleet", filters, page=number - 1) if number > 1 else None,
        next=_link("/fleet", filters, page=number + 1) if number < count else None,
    )
    fingerprints = {
        u.unit_id: _fingerprint(u, callouts.get(u.unit_id, 0), groups[u.unit_id])
        for u in fleet.units
    }
    return FleetView(fleet, callouts, groups, fingerprints, pages)


async def filter_choices(request: Request, user: User) -> tuple[list[str], list[str]]:
    """The sites and contractors the filters offer."""
    async with request.app.state.db.session() as session:
        return await fleet_filter_choices(session, contractor=contractor_scope(user))


def page_context(view: FleetView, filters: Filters, *, scoped: bool) -> dict[str, Any]:
    """What fleet.html and fleet_table.html draw."""
    return {
        "fleet": view.fleet,
        "callouts": view.callouts,
        "groups": view.groups,
        "fingerprints": view.fingerprints,
        "pages": view.pages,
        "scoped": scoped,
        "q": filters.q,
        "health": filters.health,
        "site": filters.site,
        "contractor": filters.contractor,
        "health_links": {s: _link("/fleet", filters, health=s, page=1) for s in HEALTH},
        "changes_url": _link("/fleet/changes", filters),
    }


def changes(view: FleetView, have: str, *, scoped: bool) -> dict[str, Any]:
    """The refresh of a fleet page whose rows the browser holds with the fingerprints
    `have` (dot-separated): the figures, the order of the page's units and the rows the
    browser does not have."""
    known = set(have.split(".")[:MAX_HAVE]) if have else set()
    fleet = view.fleet
    rows = {
        u.unit_id: str(
            _row(
                u,
                view.callouts.get(u.unit_id, 0),
                scoped,
                view.groups[u.unit_id],
                view.fingerprints[u.unit_id],
            )
        )
        for u in fleet.units
        if view.fingerprints[u.unit_id] not in known
    }
    return {
        "at": fleet.at.isoformat(),
        "stamp": str(_stamp(fleet.at)),
        "counts": fleet.counts,
        "attention": fleet.attention,
        "total": fleet.total,
        "caption": str(_caption(fleet)),
        "pager": str(_pager(view.pages)),
        "order": [u.unit_id for u in fleet.units],
        "rows": rows,
    }
