"""The fleet a page at a time, what needs attention first: the ranking and its filters,
pages by position and by cursor, the JSON API's pages, and the fleet page's refresh that
sends only the rows that changed. Against real SQLite and PostgreSQL (the `db` fixture);
the app through its ASGI interface with a real sign-in."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from controller.accounts import Accounts, AuthSettings
from controller.api.app import create_app
from controller.callouts import CalloutService
from controller.config import ControllerSettings
from controller.fleet import fleet_overview
from controller.fleet.attention import BadCursor, FleetFilter, fleet_page
from controller.fleet.rollup import light_rollups
from controller.store import Database
from controller.store.base import utcnow
from controller.store.fleet import Unit, UnitStatus
from protocol.faults import FaultCode

FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PASSWORD = "a long test password"
ROAD, LANE = "North Road", "Mill Lane"
OURS, THEIRS = "Ours Maintenance Ltd", "Theirs Maintenance Ltd"
HEALTHY = 40
#: What needs attention, in the order the fleet shows it: an urgent fault, then the units
#: not heard from (never, or gone offline), then overdue work, then the merely degraded.
ATTENTION_FIRST = ["urg-1", "new-1", "off-1", "late-1", "deg-1"]


async def seed(db: Database) -> None:
    """40 healthy units and one of each kind that needs attention, plus a retired one."""
    now = utcnow()
    settings = ControllerSettings(database_url=db.url)
    callouts = CalloutService(settings)

    def unit(unit_id: str, *, site: str = ROAD, contractor: str = OURS) -> Unit:
        return Unit(
            unit_id=unit_id,
            site=site,
            contractor=contractor,
            source="provisioning",
            registered_at=now - timedelta(days=30),
        )

    def status(unit_id: str, **values: Any) -> UnitStatus:
        fields: dict[str, Any] = {
            "online": True, "online_reason": "", "last_seen_at": now, "recording": True,
            "gate_open": True, "on_battery": False, "reported_faults": [],
            "storage_total_bytes": 64 * 10**9, "storage_free_bytes": 40 * 10**9,
        }  # fmt: skip
        fields.update(values)
        return UnitStatus(unit_id=unit_id, **fields)

    async with db.session() as s:
        for n in range(1, HEALTHY + 1):
            contractor = OURS if n % 2 else THEIRS
            s.add(unit(f"ok-{n:03d}", site=ROAD if n <= 20 else LANE, contractor=contractor))
            s.add(status(f"ok-{n:03d}", position_lat=51.5, position_lon=-0.1))
        for unit_id in ("urg-1", "off-1", "late-1", "deg-1", "new-1", "gone-1"):
            s.add(unit(unit_id, site=LANE))
        s.add(status("urg-1"))
        s.add(status("off-1", online=False, online_reason="will"))
        s.add(status("late-1"))
        s.add(status("deg-1", on_battery=True))
        s.add(status("gone-1"))
        await s.flush()
        retired = await s.get(Unit, "gone-1")
        assert retired is not None
        retired.retired_at = now
        urgent, late = await s.get(Unit, "urg-1"), await s.get(Unit, "late-1")
        assert urgent is not None and late is not None
        await callouts.faults.fault_raised(s, urgent, FaultCode.IMAGE_BLACK, check="image_black")
        # A P2 fault raised a day ago: its callout is past its respond-by deadline.
        await callouts.faults.fault_raised(
            s, late, FaultCode.BLUR, at=now - timedelta(hours=30), check="blur"
        )
        await s.commit()


async def test_the_units_that_need_attention_come_first_a_page_at_a_time(db: Database) -> None:
    await seed(db)
    async with db.session() as session:
        first = await fleet_page(session, contractor=None, limit=5)
        assert [u.unit_id for u in first.units] == ATTENTION_FIRST
        assert first.groups == {
            "urg-1": "fault", "new-1": "offline", "off-1": "offline", "late-1": "overdue",
            "deg-1": "degraded",
        }  # fmt: skip
        assert first.total == HEALTHY + 5  # the retired unit is left out
        assert first.counts == {"ok": HEALTHY, "degraded": 2, "fault": 3}
        assert first.attention == {
            "fault": 1, "offline": 2, "overdue": 1, "degraded": 1, "ok": HEALTHY,
        }  # fmt: skip
        # By cursor: every unit exactly once, in order; by position: the same pages.
        seen, cursor = [], None
        while True:
            found = await fleet_page(session, contractor=None, limit=7, after=cursor)
            seen += [u.unit_id for u in found.units]
            by_position = await fleet_page(session, contractor=None, limit=7, offset=found.offset)
            assert [u.unit_id for u in by_position.units] == [u.unit_id for u in found.units]
            cursor = found.next_cursor
            if cursor is None:
                break
        assert seen == ATTENTION_FIRST + [f"ok-{n:03d}" for n in range(1, HEALTHY + 1)]
        # The same units by id, to walk the whole fleet in a stable order.
        walk = await fleet_page(session, contractor=None, order="unit", limit=100)
        assert [u.unit_id for u in walk.units] == sorted(seen)
        assert walk.next_cursor is None
        with pytest.raises(BadCursor, match="not a cursor"):
            await fleet_page(session, contractor=None, after="not-a-cursor!")


async def test_filters_narrow_the_pages_and_the_contractor_sees_their_own(db: Database) -> None:
    await seed(db)
    async with db.session() as session:

        async def ids(**filters: Any) -> list[str]:
            found = await fleet_page(session, contractor=None, filters=FleetFilter(**filters))
            return [u.unit_id for u in found.units]

        assert await ids(health="fault") == ["urg-1", "new-1", "off-1"]
        assert await ids(health="degraded") == ["late-1", "deg-1"]
        assert await ids(text="LATE") == ["late-1"]  # unit id or site, any case
        assert len(await ids(text="mill lane")) == 5 + HEALTHY // 2
        assert await ids(text="%") == []  # a wildcard is searched for, not obeyed
        assert await ids(site=ROAD, health="ok") == [f"ok-{n:03d}" for n in range(1, 21)]
        ours = await ids(contractor=THEIRS)
        assert ours == [f"ok-{n:03d}" for n in range(2, HEALTHY + 1, 2)]
        # A contractor's scope: only their units, and the counts of those only.
        theirs = await fleet_page(session, contractor=THEIRS, limit=100)
        assert {u.contractor for u in theirs.units} == {THEIRS}
        assert theirs.counts == {"ok": HEALTHY // 2, "degraded": 0, "fault": 0}
        # The counts are of the units matching every filter but health.
        north = await fleet_page(session, contractor=None, filters=FleetFilter(site=ROAD))
        assert north.counts == {"ok": 20, "degraded": 0, "fault": 0}


async def test_the_light_roll_up_agrees_with_the_full_one(db: Database) -> None:
    await seed(db)
    async with db.session() as session:
        full = {u.unit_id: u.state for u in (await fleet_overview(session)).units}
        light = {u.unit_id: u.state for u in await light_rollups(session)}
    assert light == full and len(full) == HEALTHY + 5


@contextlib.asynccontextmanager
async def signed_in(app: Any, username: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(base_url="http://t", transport=transport, timeout=10) as client:
        answer = await client.post("/api/login", json={"username": username, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        yield client


async def app_with_users(db: Database) -> Any:
    await seed(db)
    accounts = Accounts(db, FAST)
    await accounts.add_user("mia", "manager", PASSWORD, contractor=None, actor="test")
    await accounts.add_user("carl", "contractor", PASSWORD, contractor=THEIRS, actor="test")
    return create_app(ControllerSettings(database_url=db.url), db, auth=FAST)


async def test_the_api_answers_a_page_of_units_with_a_cursor_to_the_next(db: Database) -> None:
    app = await app_with_users(db)
    async with signed_in(app, "mia") as mia:
        first = (await mia.get("/api/units")).json()
        # The fields the API always had, and where the page stands.
        assert set(first) == {"counts", "units", "total", "order", "limit", "next_cursor"}
        assert first["order"] == "unit" and first["limit"] == 100 and first["next_cursor"] is None
        assert first["total"] == len(first["units"]) == HEALTHY + 5
        assert [u["unit_id"] for u in first["units"]][:3] == ["deg-1", "late-1", "new-1"]
        assert first["units"][10]["position"] == [51.5, -0.1]
        walked, cursor = [], None
        while True:
            params: dict[str, Any] = {"order": "attention", "limit": 4}
            if cursor:
                params["cursor"] = cursor
            page = (await mia.get("/api/units", params=params)).json()
            walked += [u["unit_id"] for u in page["units"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert walked[:5] == ATTENTION_FIRST and len(walked) == len(set(walked)) == HEALTHY + 5
        faults = (await mia.get("/api/units", params={"health": "fault", "q": "off"})).json()
        assert [u["unit_id"] for u in faults["units"]] == ["off-1"] and faults["total"] == 1
        bad = await mia.get("/api/units", params={"cursor": "nonsense*"})
        assert bad.status_code == 422 and "not a cursor" in bad.json()["detail"]
        too_many = await mia.get("/api/units", params={"limit": 5000})
        assert too_many.status_code == 422
    async with signed_in(app, "carl") as carl:
        theirs = (await carl.get("/api/units", params={"contractor": OURS})).json()
        assert {u["contractor"] for u in theirs["units"]} == {THEIRS}  # their scope holds
        assert all(u["position"] is None for u in theirs["units"])


async def test_the_fleet_page_refresh_sends_only_the_rows_that_changed(db: Database) -> None:
    app = await app_with_users(db)
    async with signed_in(app, "mia") as mia:
        drawn = await mia.get("/fleet")
        assert drawn.status_code == 200
        rows = re.findall(
            r'<tr data-unit="([^"]+)" data-health="[a-z]+" data-fp="([0-9a-f]+)"', drawn.text
        )
        assert [unit for unit, _ in rows[:5]] == ATTENTION_FIRST and len(rows) == 45
        assert "Units 1 to 45 of 45" in drawn.text
        have = ".".join(fp for _, fp in rows)
        same = (await mia.get("/fleet/changes", params={"have": have})).json()
        assert same["rows"] == {} and same["order"] == [unit for unit, _ in rows]
        assert same["counts"] == {"ok": HEALTHY, "degraded": 2, "fault": 3}
        # One unit goes on battery: it moves up among the degraded, and only its row is sent.
        async with db.session() as session:
            await session.execute(
                update(UnitStatus).where(UnitStatus.unit_id == "ok-007").values(on_battery=True)
            )
            await session.commit()
        changed = await mia.get("/fleet/changes", params={"have": have})
        body = changed.json()
        assert list(body["rows"]) == ["ok-007"]
        assert 'data-health="degraded"' in body["rows"]["ok-007"]
        assert body["order"][:7] == [*ATTENTION_FIRST, "ok-007", "ok-001"][:7]
        assert body["counts"] == {"ok": HEALTHY - 1, "degraded": 3, "fault": 3}
        assert len(changed.content) < 5_000
        # Filtered, the links of the figures keep the filters.
        paged = await mia.get("/fleet", params={"health": "ok", "q": "ok-0"})
        assert "Units 1 to 39 of 39" in paged.text
        assert 'href="/fleet?q=ok-0&amp;health=ok"' in paged.text  # the card links keep them
    async with signed_in(app, "carl") as carl:
        theirs = await carl.get("/fleet", params={"contractor": OURS})
        units = re.findall(r'<tr data-unit="([^"]+)"', theirs.text)
        assert units == [f"ok-{n:03d}" for n in range(2, HEALTHY + 1, 2)]  # their scope holds
        assert "Contractor</th>" not in theirs.text
        refreshed = (await carl.get("/fleet/changes")).json()
        assert refreshed["order"] == units and set(refreshed["rows"]) == set(units)


async def test_the_kpi_page_lists_the_least_available_units_a_page_at_a_time(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.pages import report_pages

    monkeypatch.setattr(report_pages, "KPI_UNITS_PAGE", 10)
    app = await app_with_users(db)
    async with signed_in(app, "mia") as mia:
        first = await mia.get("/kpis")
        assert first.status_code == 200
        shown = re.findall(r'<tr><th scope="row"><a href="/units/([^"]+)">', first.text)
        assert len(shown) == 10 and shown[0] == "urg-1"  # down while its P1 fault is open
        # Every unit in service during the period: the one retired today too.
        assert f"{HEALTHY + 5} of {HEALTHY + 6} units were available throughout" in first.text
        assert "units 1 to 10 of 46" in first.text and "Page 1 of 5" in first.text
        last = await mia.get("/kpis", params={"page": 9})  # past the end: the last page
        rows = re.findall(r'<tr><th scope="row"><a href="/units/([^"]+)">', last.text)
        assert len(rows) == 6 and "Page 5 of 5" in last.text and "Next page" not in last.text
        assert not set(rows) & set(shown)
