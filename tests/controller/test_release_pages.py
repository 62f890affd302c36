"""Releasing a retrieved case on the pages, in a real browser (Debian's headless Chromium
via Playwright) over uvicorn: a data controller opens the case, enters the release record
(a wrong passphrase first), follows the exhibit being made, watches the footage in the
page and downloads the exhibit, which verifies on its own; the review log holds the view,
the playback and the download. Every page passes axe-core's WCAG 2.2 AA rules; a
contractor is refused. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select

from controller.api.app import create_app
from controller.store import Database
from controller.store.evidence import CaseRow, ReviewLogRow
from tests.controller.pages_harness import FAST_AUTH, PASSWORD, shot
from tests.controller.retrieved_case import (
    PASSPHRASE,
    Person,
    RecordedUnit,
    RetrievedCase,
    make_recorded_unit,
    retrieved_case,
)
from tests.harness import free_port
from tests.harness.axe import axe_violations

USERS = {
    "olly": ("operator", None),
    "dora": ("data_controller", None),
    "dan": ("data_controller", None),
    "mia": ("manager", None),
    "fixer1": ("contractor", "Test Maintenance Ltd"),
}
PHONE = {"width": 390, "height": 844}


@dataclass
class Site:
    base_url: str
    db: Database
    case: RetrievedCase


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> RecordedUnit:
    return make_recorded_unit(tmp_path_factory.mktemp("recorded"))


@pytest.fixture
async def site(tmp_path: Path, recorded: RecordedUnit) -> AsyncIterator[Site]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'controller.db'}")
    await db.migrate()
    case = await retrieved_case(
        db, recorded, tmp_path / "store",
        raised_by=Person("olly", "operator"), approved_by=Person("dora", "data_controller"),
    )  # fmt: skip
    app = create_app(case.settings, db, auth=FAST_AUTH)
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
        yield Site(f"http://127.0.0.1:{port}", db, case)
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
    page.set_default_timeout(15_000)
    await page.goto(f"{site.base_url}/login")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state("domcontentloaded")
    assert await page.get_by_test_id("username").inner_text() == username
    return page


async def accessible(page: Any, name: str) -> None:
    """axe finds nothing, and the page does not scroll sideways."""
    await shot(page, name)
    assert await axe_violations(page) == [], name
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"{name} is {overflow}px wider than the screen"


async def review_log(db: Database) -> list[tuple[str, str]]:
    async with db.session() as session:
        rows = (await session.execute(select(ReviewLogRow).order_by(ReviewLogRow.id))).scalars()
        return [(r.user, r.action) for r in rows]


async def test_release_watch_and_download_on_the_pages(
    browser: Any, site: Site, tmp_path: Path
) -> None:
    number = site.case.number
    page = await sign_in(browser, site, "dan")
    await page.goto(f"{site.base_url}/cases/{number}")
    await page.get_by_role("link", name="Release footage of this case").click()
    await page.wait_for_url(f"**/cases/{number}/release")
    # The record starts from what the case says.
    assert await page.get_by_label("Recipient's name").input_value() == "PC 1234 Ali Khan"
    assert await page.get_by_label("Their reference").input_value() == "URN 01XY2345678"
    await accessible(page, "release-form")

    await page.get_by_label("Method of transfer").select_option("encrypted USB")
    await page.get_by_label("Notes for the release log").fill("Handed to the officer at the desk")
    await page.get_by_label("Evidence key passphrase").fill("not the passphrase")
    await page.get_by_role("button", name="Make the exhibit and release it").click()
    errors = page.get_by_test_id("form-errors")
    await errors.wait_for()
    assert "does not unlock the evidence key" in await errors.inner_text()
    assert await page.get_by_label("Evidence key passphrase").input_value() == ""  # not echoed
    assert await page.get_by_label("Method of transfer").input_value() == "encrypted USB"
    await accessible(page, "release-form-wrong-passphrase")

    await page.get_by_label("Evidence key passphrase").fill(PASSPHRASE)
    await page.get_by_role("button", name="Make the exhibit and release it").click()
    await page.wait_for_url("**/release-jobs/*")
    await accessible(page, "release-progress")
    opening = page.get_by_role("link", name=f"Open exhibit {number}/EX1")
    await opening.wait_for(timeout=60_000)  # the page follows the job by itself
    await accessible(page, "release-done")
    await opening.click()
    await page.wait_for_url(f"**/cases/{number}/exhibits/EX1")
    record = await page.get_by_test_id("release-record").inner_text()
    assert "PC 1234 Ali Khan" in record and "encrypted USB" in record
    assert "Handed to the officer at the desk" in record
    await accessible(page, "exhibit")

    # Watch it: the browser fetches the MP4 (range requests) and decodes the pictures.
    video = page.get_by_test_id("exhibit-video")
    await video.evaluate("v => { v.muted = true; return v.play(); }")
    await page.wait_for_function(
        "() => { const v = document.querySelector('video'); "
        "return v.currentTime > 0.5 && v.videoWidth === 1280; }",
        timeout=20_000,
    )
    await shot(page, "exhibit-playing")

    async with page.expect_download() as caught:
        await page.get_by_test_id("download").click()
    download = await caught.value
    archive = tmp_path / "exhibit.zip"
    await download.save_as(archive)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "unzipped")
    (folder,) = (tmp_path / "unzipped").iterdir()
    python = getattr(sys, "_base_executable", None) or sys.executable
    checked = await asyncio.to_thread(
        subprocess.run,
        [python, "-I", "verify.py"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "EVERYTHING VERIFIES" in checked.stdout

    assert await review_log(site.db) == [
        ("dan", "viewed"),
        ("dan", "played"),
        ("dan", "downloaded"),
    ]
    async with site.db.session() as session:
        row = await session.scalar(select(CaseRow).where(CaseRow.number == number))
        assert row is not None and row.status == "released"

    # A manager watches too, on a phone; the case page links the exhibit.
    phone = await sign_in(browser, site, "mia", PHONE)
    await phone.goto(f"{site.base_url}/cases/{number}")
    await phone.get_by_role("link", name=f"Watch or download exhibit {number}/EX1").click()
    await phone.wait_for_url(f"**/cases/{number}/exhibits/EX1")
    await accessible(phone, "exhibit-phone")
    assert (await review_log(site.db))[-1] == ("mia", "viewed")


async def test_a_contractor_is_refused_every_release_page(browser: Any, site: Site) -> None:
    number = site.case.number
    page = await sign_in(browser, site, "fixer1")
    for path in (f"/cases/{number}/release", f"/cases/{number}/exhibits/EX1",
                 f"/cases/{number}/exhibits/EX1/download"):  # fmt: skip
        answer = await page.goto(f"{site.base_url}{path}")
        assert answer is not None and answer.status == 403, path
        assert "You cannot open this page" in await page.content()
    await accessible(page, "release-refused-contractor")
    assert await review_log(site.db) == []
