"""The case pages in a real browser (Debian's headless Chromium via Playwright) over a real
controller and broker: an operator raises a case on the form (a wrong form first), a second
data controller approves it and the hold goes to the unit, a subject access request is
extended on its page, the logs filter and download as CSV, the KPI page counts cases; every
page passes axe-core's WCAG 2.2 AA rules, on a desktop and on a phone; a contractor is
refused. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import asyncio
import csv
import io
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select

from controller.api.app import create_app
from controller.config import ControllerSettings
from controller.evidence.case_models import CaseRequest
from controller.evidence.cases import CaseWorkflow, load_case
from controller.evidence.sar import LOCAL_ZONE
from controller.service import ControllerService
from controller.store import Database
from controller.store.evidence import ExhibitRow, ReleaseRow, ReviewLogRow
from controller.store.reports import CommandRecord
from tests.controller.conftest import eventually, running_controller
from tests.controller.pages_harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    FAST_AUTH,
    PASSWORD,
    browser_env,
    shot,
)
from tests.harness import MosquittoBroker, free_port
from tests.harness.axe import axe_violations
from tests.harness.binaries import missing

USERS = {
    "olly": ("operator", None),
    "dora": ("data_controller", None),
    "dan": ("data_controller", None),
    "aude": ("auditor", None),
    "fixer1": ("contractor", "Test Maintenance Ltd"),
}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 - one stat, before any I/O runs
        missing(f"{CHROMIUM} is not installed (Debian package chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, env=browser_env()
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Site:
    base_url: str
    db: Database
    service: ControllerService


@dataclass(frozen=True)
class Person:
    username: str
    role: str


@pytest.fixture
async def site(
    broker: MosquittoBroker,
    tmp_path: Path,
    controller_settings: Callable[..., ControllerSettings],
) -> AsyncIterator[Site]:
    settings = controller_settings(broker)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'controller.db'}")
    async with running_controller(settings, db) as service:
        app = create_app(settings, db, service.link, auth=FAST_AUTH)
        for username, (role, contractor) in USERS.items():
            await app.state.accounts.add_user(
                username, role, PASSWORD, contractor=contractor, actor="test"
            )
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        task = asyncio.create_task(server.serve(), name="test-http")
        try:
            async with asyncio.timeout(10):
                while not server.started:
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.02)
            yield Site(f"http://127.0.0.1:{port}", db, service)
        finally:
            server.should_exit = True
            async with asyncio.timeout(10):
                await task
    await db.dispose()


async def sign_in(
    browser: Any, site: Site, username: str, viewport: dict[str, int] | None = None
) -> Any:
    context = await browser.new_context(
        viewport=viewport or {"width": 1366, "height": 900}, accept_downloads=True
    )
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await page.goto(f"{site.base_url}/login")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state("domcontentloaded")
    assert await page.get_by_test_id("username").inner_text() == username
    return page


async def accessible(page: Any, name: str) -> None:
    """axe finds nothing, and the page does not scroll sideways (tables scroll in their
    own box)."""
    await shot(page, name)
    assert await axe_violations(page) == [], name
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"{name} is {overflow}px wider than the screen"


def _local_input(at: datetime) -> str:
    return at.astimezone(LOCAL_ZONE).strftime("%Y-%m-%dT%H:%M:%S")


async def test_raise_approve_extend_and_read_the_logs(browser: Any, site: Site) -> None:
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=2), now - timedelta(hours=1, minutes=30)

    # An operator raises a case; a form with mistakes comes back with what to fix.
    page = await sign_in(browser, site, "olly")
    await page.get_by_role("link", name="Cases").click()
    await page.get_by_role("link", name="Raise a case").click()
    await page.get_by_label("Name", exact=True).fill("PC 7 Patel")
    await page.get_by_role("button", name="Raise the case").click()
    summary = page.locator("#error-summary")
    await summary.wait_for()
    assert "Give at least one unit and time range." in await summary.inner_text()
    await accessible(page, "case-form-errors")
    await page.get_by_label("Type of request").select_option("police_request")
    await page.get_by_label("Their reference").fill("URN 55/777")
    await page.get_by_label("Organisation").fill("Example Constabulary")
    await page.get_by_label("Lawful basis").fill("Prevention and detection of crime")
    await page.get_by_label("Reason", exact=True).fill("Robbery at the cash machine.")
    await page.locator("#f-r0-unit_id").select_option("cam-01")
    await page.locator("#f-r0-start").fill(_local_input(start))
    await page.locator("#f-r0-end").fill(_local_input(end))
    await page.get_by_role("button", name="Raise the case").click()
    await page.get_by_role("status").filter(has_text="raised").wait_for()
    number = (await page.locator("h1").inner_text()).split()[1]
    assert await page.get_by_test_id("case-status").inner_text() == "Waiting for a decision"
    await accessible(page, "case-requested")
    async with site.db.session() as session:
        case = await load_case(session, number)
    assert case.raised_by == "olly"

    # A data controller who did not raise it approves: the hold goes to the unit.
    page = await sign_in(browser, site, "dora")
    await page.goto(f"{site.base_url}/cases")
    await page.locator(f"[data-case='{number}']").wait_for()
    await accessible(page, "cases-list")
    await page.get_by_role("link", name=number).click()
    await page.get_by_label("Notes on the decision").fill("Proportionate to the offence.")
    await page.get_by_role("button", name="Approve and hold the footage").click()
    await page.get_by_role("status").filter(has_text="approved").wait_for()
    assert await page.get_by_test_id("case-status").inner_text() == "Approved, footage on hold"

    async def sent() -> bool:
        async with site.db.session() as session:
            rows = await session.execute(
                select(CommandRecord).where(CommandRecord.action == "set_hold")
            )
            return any(r.params["reference"] == number for r in rows.scalars())

    await eventually(sent, within=10)
    await page.reload()
    assert "sent, waiting for the unit to confirm" in await page.locator("[data-hold]").inner_text()
    assert "Approved" in await page.get_by_test_id("timeline").inner_text()
    await accessible(page, "case-approved")

    # A subject access request, raised by dora and extended by dan; seen on a phone.
    flow = CaseWorkflow(site.db)
    sar = await flow.raise_case(
        Person("dora", "data_controller"),
        CaseRequest.model_validate(
            {
                "case_type": "subject_access",
                "external_ref": "SAR-2",
                "requester_name": "A Person",
                "lawful_basis": "UK GDPR Article 15",
                "reason": "Wants footage of themselves.",
                "received_at": now - timedelta(days=3),
                "ranges": [{"unit_id": "cam-02", "start": start, "end": end}],
            }
        ),
    )
    page = await sign_in(browser, site, "dan", viewport=PHONE)
    await page.goto(f"{site.base_url}/cases/{sar.number}")
    assert "You raised this case" not in await page.content()
    await page.get_by_label("Further months").select_option("1")
    await page.get_by_label("Why more time is needed").fill("Footage of many people to redact.")
    await page.get_by_role("button", name="Extend").click()
    await page.get_by_role("status").filter(has_text="extended").wait_for()
    assert sar.received_at is not None
    assert "Extended to" in await page.locator("#sar-h").locator("..").inner_text()
    await accessible(page, "case-sar-phone")

    # The logs, as an auditor: filters, CSV download, and the KPI figures.
    async with site.db.session() as session:
        case = await load_case(session, number)
        exhibit = ExhibitRow(
            case_id=case.id,
            number=f"{number}/EX1",
            created_at=now,
            created_by="dora",
            path="exhibits/x",
            manifest_sha256="cd" * 32,
            kind="master",
        )
        session.add(exhibit)
        await session.flush()
        session.add(
            ReleaseRow(
                case_id=case.id,
                exhibit_id=exhibit.id,
                released_at=now,
                released_by="dora",
                recipient_name="PC 7 Patel",
                recipient_org="Example Constabulary",
                reason="Charging file",
                lawful_basis="Prevention and detection of crime",
                reference="URN 55/777",
                method="encrypted USB",
                notes="",
            )
        )
        session.add(
            ReviewLogRow(
                at=now,
                user="dora",
                case_id=case.id,
                exhibit_id=exhibit.id,
                action="played",
                client="127.0.0.1",
                detail="whole exhibit",
            )
        )
        await session.commit()
    page = await sign_in(browser, site, "aude")
    await page.get_by_role("link", name="Evidence logs").click()
    await page.get_by_label("User").fill("dora")
    await page.get_by_role("button", name="Show").click()
    assert "played" in await page.locator("table").inner_text()
    await accessible(page, "review-log")
    await page.get_by_role("link", name="Release log").click()
    await page.get_by_label("Recipient or organisation").fill("constabulary")
    await page.get_by_role("button", name="Show").click()
    assert "encrypted USB" in await page.locator("table").inner_text()
    await accessible(page, "release-log")
    async with page.expect_download() as waiting:
        await page.get_by_role("link", name="Download as CSV").click()
    download = await waiting.value
    saved = await download.path()
    text = await asyncio.to_thread(Path(saved).read_text, encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert download.suggested_filename == "release-log.csv"
    assert [r[1] for r in rows[1:]] == [number] and rows[1][3] == "PC 7 Patel"
    await page.get_by_role("link", name="KPIs").click()
    assert await page.get_by_test_id("releases").inner_text() == "1"
    assert await page.get_by_test_id("cases-raised").inner_text() == "2"
    await accessible(page, "kpis-evidence")
    # An auditor sees no decision forms.
    await page.goto(f"{site.base_url}/cases/{number}")
    assert await page.locator("form[action^='/cases/']").count() == 0

    # A contractor reaches none of it.
    page = await sign_in(browser, site, "fixer1")
    for path in ("/cases", f"/cases/{number}", "/logs/review", "/logs/releases.csv"):
        answer = await page.goto(f"{site.base_url}{path}")
        assert answer is not None and answer.status == 403, path
    assert await page.get_by_role("link", name="Cases").count() == 0
