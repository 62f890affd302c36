"""Plain words: every fault code and self-test check has a label with what to check, no
bare unit where nothing was measured, times in the control room's zone with the zone named
(summer and winter), and a callout page with the facts a contractor needs: the site, its
address, a map link, the battery time left on a power fault, and the deadlines counting
down, overdue ones marked. Pages are served by the real app over SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from controller.accounts import Accounts, AuthSettings
from controller.api.app import create_app
from controller.callouts import CalloutService
from controller.callouts.notify import callout_payload, email_text
from controller.config import ControllerSettings
from controller.labels import check_label, fault_label, measured
from controller.localtime import clock, countdown, when
from controller.pages.templating import templates, use_zone
from controller.store import Database
from controller.store.deployments import DeploymentRow, LocationRow
from controller.store.fleet import Callout, PowerReading, Unit, UnitStatus
from protocol.checks import CHECK_INFO, CheckName
from protocol.faults import FAULT_INFO, FaultCode

FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PASSWORD = "a long test password"
CONTRACTOR = "Test Maintenance Ltd"
LONDON = ZoneInfo("Europe/London")
#: What a page must never show for a code: the code itself.
RAW_CODE = re.compile(r"\b[a-z]+_[a-z_]+\b")


# -- the one table of labels ----------------------------------------------------------------


@pytest.mark.parametrize("code", list(FaultCode))
def test_every_fault_code_has_words_and_what_to_check(code: FaultCode) -> None:
    label = fault_label(code.value)
    assert label.known and label.title == FAULT_INFO[code].title
    assert label.advice == FAULT_INFO[code].advice and len(label.advice) > 20
    assert "_" not in label.title and label.title != code.value and label.title[0].isupper()
    assert label.priority == code.priority.value


@pytest.mark.parametrize("name", list(CheckName))
def test_every_selftest_check_has_words_and_what_to_check(name: CheckName) -> None:
    label = check_label(name.value)
    assert label.known and label.title == CHECK_INFO[name].title
    assert "_" not in label.title and label.title != name.value and label.title[0].isupper()
    assert label.detail and label.advice  # what it looks at, and what to check
    fault = CHECK_INFO[name].fault
    assert fault is not None and label.advice == FAULT_INFO[fault].advice


def test_a_code_this_controller_does_not_know_says_so() -> None:
    assert not fault_label("gremlins").known
    assert "not known" in fault_label("gremlins").title
    assert "not known" in check_label("wobble").title
    # the advice follows the fault a check result names (storage low, not failed)
    assert check_label("storage", "storage_low").advice == FAULT_INFO[FaultCode.STORAGE_LOW].advice


def test_nothing_measured_is_said_in_words_never_as_a_bare_unit() -> None:
    for unit in ("", "%", "C", "s", "luma", "fps", "grey", "furlongs"):
        assert measured(None, unit) == "not measured"
    assert measured(3.0, "luma") == "3 of 255"
    assert measured(41.5, "C") == "41.5 °C"
    assert measured(62.5, "%") == "62.5%"
    assert measured(0.25, "s") == "0.25 s"
    assert measured(12.0, "fps") == "12 frames/s"


# -- local time, summer and winter -----------------------------------------------------------


def _next_instants() -> tuple[datetime, datetime]:
    """The next noon (UTC) on which London keeps summer time, and the next it keeps
    winter time, found from today's date."""
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    days = [noon + timedelta(days=i) for i in range(1, 370)]
    summer = next(d for d in days if d.astimezone(LONDON).dst())
    winter = next(d for d in days if not d.astimezone(LONDON).dst())
    return summer, winter


def test_times_read_in_the_control_rooms_zone_with_the_zone_named() -> None:
    summer, winter = _next_instants()
    assert when(summer) == summer.astimezone(LONDON).strftime("%d %b %Y") + " 13:00 BST"
    assert when(winter) == winter.astimezone(LONDON).strftime("%d %b %Y") + " 12:00 GMT"
    assert clock(summer) == "13:00:00 BST" and clock(winter) == "12:00:00 GMT"
    paris = ZoneInfo("Europe/Paris")
    assert when(winter, paris).endswith("13:00 CET")
    # the templates' one filter
    page = templates.env.from_string("{{ at | when }} / {{ at | clock }} / {{ none | when }}")
    assert page.render(at=summer).startswith(summer.astimezone(LONDON).strftime("%d %b %Y"))
    assert " 13:00 BST / 13:00:00 BST / never" in page.render(at=summer)
    assert " 12:00 GMT / 12:00:00 GMT / never" in page.render(at=winter)


def test_countdowns_to_a_deadline_and_past_it() -> None:
    now = datetime.now(UTC)
    assert countdown(now + timedelta(hours=2, minutes=10, seconds=5), now) == "in 2 h 10 min"
    assert countdown(now - timedelta(minutes=35), now) == "overdue by 35 min"
    assert countdown(now + timedelta(days=2, hours=3), now) == "in 2 days 3 h"


def test_a_time_zone_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        ControllerSettings(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="unknown self-test check 'wobble'"):
        ControllerSettings(sites={"Depot": {"required_checks": ["wobble"]}})


def test_callout_email_reads_in_words_and_local_time() -> None:
    summer, _ = _next_instants()
    callout = Callout(
        id=7,
        unit_id="cam-01",
        fault_code="mains_failure",
        priority="P2",
        status="raised",
        contractor=CONTRACTOR,
        title="Mains power has failed",
        check_name=None,
        detail="",
        facts={"ups": {"on_battery": True, "charge_pct": 62.0, "runtime_s": 2400.0}},
        raised_at=summer,
        respond_by=summer + timedelta(hours=8),
        repair_by=summer + timedelta(hours=16),
        respond_breached=False,
        repair_breached=False,
    )
    payload = callout_payload(callout)
    assert payload["fault_title"] == "Mains power has failed"
    text = email_text("new", payload, LONDON)
    assert "Fault:          Mains power has failed (P2 non-urgent)" in text
    assert "What to check:  The unit runs on its UPS or battery: restore the supply." in text
    assert f"Raised:         {when(summer)}" in text and "BST" in text
    assert "Battery time left: 40 min" in text and "Battery charge: 62%" in text
    assert "mains_failure" not in text and "runtime_s" not in text


# -- the callout page ------------------------------------------------------------------------


@pytest.fixture
async def app_client(db: Database) -> AsyncIterator[tuple[httpx.AsyncClient, ControllerSettings]]:
    accounts = Accounts(db, FAST)
    await accounts.add_user("fixer1", "contractor", PASSWORD, contractor=CONTRACTOR, actor="t")
    settings = ControllerSettings(database_url=db.url)
    app = create_app(settings, db, auth=FAST)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post(
            "/api/login", json={"username": "fixer1", "password": PASSWORD}
        )
        assert response.status_code == 200
        yield client, settings
    use_zone(LONDON)


async def _unit(db: Database, unit_id: str, **status: Any) -> Unit:
    async with db.session() as session:
        unit = Unit(
            unit_id=unit_id,
            site="Mill Lane depot",
            contractor=CONTRACTOR,
            registered_at=datetime.now(UTC) - timedelta(days=30),
        )
        session.add(unit)
        await session.flush()
        session.add(UnitStatus(unit_id=unit_id, online=True, **status))
        await session.commit()
        return unit


def _text(html: str) -> str:
    """The page's words, tags removed (attributes and scripts are not words)."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


async def test_callout_page_gives_the_place_battery_and_countdowns_in_words(
    db: Database, app_client: tuple[httpx.AsyncClient, ControllerSettings]
) -> None:
    client, settings = app_client
    now = datetime.now(UTC)
    unit = await _unit(db, "cam-01", position_lat=51.501, position_lon=-0.1419)
    async with db.session() as session:
        session.add(
            PowerReading(
                unit_id="cam-01",
                at=now - timedelta(minutes=2),
                source="battery",
                on_battery=True,
                facts={"charge_pct": 62.0, "runtime_s": 2400.0, "ups_status": "OB DISCHRG"},
            )
        )
        await session.commit()
    # Raised 5 hours ago: the urgent respond deadline (4 h) has passed, repair (8 h) not.
    earlier = CalloutService(settings, now=lambda: now - timedelta(hours=5))
    async with db.session() as session:
        black = await earlier.faults.fault_raised(
            session, unit, FaultCode.IMAGE_BLACK, check="image_black", detail="luminance 3"
        )
        mains = await CalloutService(settings).faults.fault_raised(
            session, unit, FaultCode.MAINS_FAILURE, detail="UPS on battery"
        )
        await session.commit()
    assert black is not None and mains is not None

    page = await client.get(f"/callouts/{black.id}")
    assert page.status_code == 200, page.text
    words = _text(page.text)
    assert "Picture is black" in words and "P1 urgent" in words
    assert "What to check: Check the lens cap, IR illuminator and exposure settings." in words
    assert "Site Mill Lane depot" in words
    link = re.search(r'href="(https://www\.openstreetmap\.org/[^"]+)"', page.text)
    assert link is not None and "mlat=51.501000&amp;mlon=-0.141900" in link.group(1)
    respond = re.search(
        r'data-testid="respond-deadline" data-state="(\w+)" class="overdue"', page.text
    )
    assert respond is not None and respond.group(1) == "overdue"
    assert "overdue by 1 h" in words  # 5 h after a 4 h target
    assert re.search(r"Repair by \d\d \w{3} \d{4} \d\d:\d\d (BST|GMT) · in 2 h 59 min", words)
    assert "UTC" not in words
    assert RAW_CODE.findall(words) == [], RAW_CODE.findall(words)

    power = _text((await client.get(f"/callouts/{mains.id}")).text)
    assert "Mains power has failed" in power and "P2 non-urgent" in power
    assert "40 min left (62% charge)" in power
    flat = when(now - timedelta(minutes=2) + timedelta(seconds=2400))
    assert f"runs flat about {flat}, before the repair deadline" in power
    assert RAW_CODE.findall(power) == [], RAW_CODE.findall(power)

    board = _text((await client.get("/callouts")).text)
    assert "40 min left" in board and "respond deadline missed" in board
    assert "Picture is black" in board and "image_black" not in board


async def test_callout_page_names_the_deployments_address(
    db: Database, app_client: tuple[httpx.AsyncClient, ControllerSettings]
) -> None:
    client, settings = app_client
    now = datetime.now(UTC)
    unit = await _unit(db, "cam-02")
    async with db.session() as session:
        place = LocationRow(
            name="Market Street car park",
            address="Market Street, Anytown AN1 2CD",
            lat=52.2053,
            lon=0.1218,
            geofence_radius_m=150,
            notes="",
            created_at=now,
            created_by="olly",
            updated_at=now,
        )
        session.add(place)
        await session.flush()
        session.add(
            DeploymentRow(
                id="dep-1",
                unit_id="cam-02",
                location_id=place.id,
                status="active",
                planned_start=now - timedelta(days=1),
                planned_end=now + timedelta(days=30),
                review_due=now + timedelta(days=30),
                retention_days=31,
                residual_risk="low",
                referral_source="police",
                pia={},
                created_by="olly",
                created_at=now,
                updated_at=now,
            )
        )
        callout = await CalloutService(settings).faults.fault_raised(
            session, unit, FaultCode.VIEW_OBSTRUCTED, check="view_obstructed"
        )
        await session.commit()
    assert callout is not None
    page = await client.get(f"/callouts/{callout.id}")
    words = _text(page.text)
    assert "Site Market Street car park" in words
    assert "Address Market Street, Anytown AN1 2CD" in words
    assert "mlat=52.205300&amp;mlon=0.121800" in page.text
    assert "the deployment's location" in words


async def test_the_control_rooms_zone_is_a_setting(db: Database) -> None:
    accounts = Accounts(db, FAST)
    await accounts.add_user("fixer1", "contractor", PASSWORD, contractor=CONTRACTOR, actor="t")
    settings = ControllerSettings(database_url=db.url, timezone="Europe/Paris")
    unit = await _unit(db, "cam-04")
    async with db.session() as session:
        callout = await CalloutService(settings).faults.fault_raised(
            session, unit, FaultCode.BLUR, check="blur"
        )
        await session.commit()
    assert callout is not None
    app = create_app(settings, db, auth=FAST)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.post("/api/login", json={"username": "fixer1", "password": PASSWORD})
            words = _text((await client.get(f"/callouts/{callout.id}")).text)
    finally:
        use_zone(LONDON)
    paris = ZoneInfo("Europe/Paris")
    assert f"Raised {when(callout.raised_at, paris)}" in words
    assert re.search(r"Raised \d\d \w{3} \d{4} \d\d:\d\d CES?T", words)
