"""Sessions and errors in a real browser (Debian's Chromium via Playwright) over a real
controller: a session that ends in the middle of a contractor's work keeps what they were
doing for them to finish after signing in again; errors in the browser are pages with a
way back, the JSON API keeps JSON; a button a user may not use says why beside it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from controller.store.audit import AuditEntry
from controller.store.fleet import Callout
from controller.store.users import SessionRow, UserRow
from protocol.faults import FaultCode
from tests.controller.conftest import eventually
from tests.controller.pages_harness import PASSWORD, Site, UnitOnBroker, shot, sign_in

#: The callouts board, with or without its filters.
BOARD = re.compile(r".*/callouts(\?.*)?$")


async def end_sessions_of(site: Site, username: str) -> None:
    """The user's sessions run out: unused for longer than the idle limit."""
    long_ago = datetime.now(UTC) - timedelta(days=1)
    async with site.db.session() as session:
        user_id = (
            await session.execute(select(UserRow.id).where(UserRow.username == username))
        ).scalar_one()
        await session.execute(
            update(SessionRow).where(SessionRow.user_id == user_id).values(last_seen_at=long_ago)
        )
        await session.commit()


async def callout_of(site: Site, callout_id: int) -> Callout:
    async with site.db.session() as session:
        found = await session.get(Callout, callout_id)
        assert found is not None
        return found


async def audit_of(site: Site, subject: str) -> list[tuple[str, str]]:
    async with site.db.session() as session:
        rows = await session.execute(
            select(AuditEntry.actor, AuditEntry.action)
            .where(AuditEntry.subject == subject)
            .order_by(AuditEntry.seq)
        )
        return [(actor, action) for actor, action in rows.all()]


async def sign_in_here(page: Any, username: str) -> None:
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state("domcontentloaded")


async def test_session_ending_while_acknowledging_keeps_the_acknowledgement(
    browser: Any, site: Site
) -> None:
    async with UnitOnBroker(site.broker, "cam-01") as unit:
        await unit.heartbeat()
        await unit.fault(FaultCode.IMAGE_BLACK, "image_black", "mean luminance 3 below 12")
        callouts = await eventually(lambda: site.callouts("cam-01"), within=10)
        callout_id = callouts[0].id

        page = await sign_in(browser, site, "fixer1")
        card = page.locator(f"[data-callout='{callout_id}']")
        await card.get_by_role("button", name="Acknowledge").wait_for()
        await end_sessions_of(site, "fixer1")
        await card.get_by_role("button", name="Acknowledge").click()

        # The sign-in page says why, and that the acknowledgement is kept, not done.
        await page.wait_for_url("**/login?**")
        ended = await page.get_by_test_id("session-ended").inner_text()
        assert "Your session has ended" in ended
        kept = await page.get_by_test_id("kept-action").inner_text()
        assert f"acknowledge callout #{callout_id}" in kept
        assert "{" not in await page.locator("body").inner_text()  # no raw JSON anywhere
        await shot(page, "session-ended-login")
        assert (await callout_of(site, callout_id)).status == "raised"

        # Signed in again: back on the board, the action ready; nothing done until asked.
        await sign_in_here(page, "fixer1")
        await page.wait_for_url(BOARD)
        panel = page.get_by_test_id("pending-action")
        await panel.wait_for()
        assert "has not been done yet" in await panel.inner_text()
        await shot(page, "session-ended-resume")
        assert (await callout_of(site, callout_id)).status == "raised"
        await panel.get_by_role("button", name=f"Acknowledge callout #{callout_id}").click()
        await (
            page.get_by_role("status")
            .filter(has_text=f"Callout #{callout_id} acknowledged")
            .wait_for()
        )
        assert await page.get_by_test_id("pending-action").count() == 0
        assert await card.get_by_test_id("callout-status").inner_text() == "acknowledged"
        assert (await callout_of(site, callout_id)).status == "acknowledged"
        assert ("fixer1", "callout.acknowledged") in await audit_of(site, f"callout:{callout_id}")
        # Done once: another visit offers nothing.
        await page.goto(f"{site.base_url}/callouts")
        assert await page.get_by_test_id("pending-action").count() == 0

        # A resolve with its note, on the callout's own page: the note survives the sign-in.
        await page.goto(f"{site.base_url}/callouts/{callout_id}")
        await page.get_by_role("button", name="Attending").click()
        await page.get_by_role("status").filter(has_text="marked as attending").wait_for()
        await page.get_by_label("What was done").fill("Replaced the camera cable at the column")
        await end_sessions_of(site, "fixer1")
        await page.get_by_role("button", name="Resolve").click()
        await page.wait_for_url("**/login?**")
        await sign_in_here(page, "fixer1")
        await page.wait_for_url(f"**/callouts/{callout_id}")
        panel = page.get_by_test_id("pending-action")
        assert "Replaced the camera cable at the column" in await panel.inner_text()
        assert (await callout_of(site, callout_id)).status == "attending"
        await panel.get_by_role("button", name=f"Resolve callout #{callout_id}").click()
        await (
            page.get_by_role("status").filter(has_text=f"Callout #{callout_id} resolved").wait_for()
        )
        resolved = await callout_of(site, callout_id)
        assert resolved.resolved_at is not None  # (then verified by the unit's self-test)
        assert ("fixer1", "callout.resolved") in await audit_of(site, f"callout:{callout_id}")
        history = await page.locator("table").last.inner_text()
        assert "Replaced the camera cable at the column" in history


async def test_a_kept_action_is_only_for_its_own_user_and_can_be_dropped(
    browser: Any, site: Site
) -> None:
    async with UnitOnBroker(site.broker, "cam-01") as unit:
        await unit.heartbeat()
        await unit.fault(FaultCode.IMAGE_BLACK, "image_black", "mean luminance 3 below 12")
        callout_id = (await eventually(lambda: site.callouts("cam-01"), within=10))[0].id
        page = await sign_in(browser, site, "fixer1")
        await end_sessions_of(site, "fixer1")
        await (
            page.locator(f"[data-callout='{callout_id}']")
            .get_by_role("button", name="Acknowledge")
            .click()
        )
        await page.wait_for_url("**/login?**")
        # Someone else signs in on this browser: they are not offered fixer1's action.
        await sign_in_here(page, "operator1")
        await page.goto(f"{site.base_url}/callouts")
        assert await page.get_by_test_id("pending-action").count() == 0

        page = await sign_in(browser, site, "fixer1")
        await end_sessions_of(site, "fixer1")
        await (
            page.locator(f"[data-callout='{callout_id}']")
            .get_by_role("button", name="Acknowledge")
            .click()
        )
        await page.wait_for_url("**/login?**")
        await sign_in_here(page, "fixer1")
        panel = page.get_by_test_id("pending-action")
        await panel.get_by_role("button", name="Do not do it").click()
        await page.wait_for_url(BOARD)
        assert await page.get_by_test_id("pending-action").count() == 0
        assert (await callout_of(site, callout_id)).status == "raised"


async def test_a_form_from_before_signing_in_again_is_offered_back(
    browser: Any, site: Site
) -> None:
    async with UnitOnBroker(site.broker, "cam-01") as unit:
        await unit.heartbeat()
        await unit.fault(FaultCode.IMAGE_BLACK, "image_black", "mean luminance 3 below 12")
        callout_id = (await eventually(lambda: site.callouts("cam-01"), within=10))[0].id
        old_tab = await sign_in(browser, site, "fixer1")
        await old_tab.goto(f"{site.base_url}/callouts/{callout_id}")
        # In another tab of the same browser: signed out and in again (a new session).
        new_tab = await old_tab.context.new_page()
        await new_tab.goto(f"{site.base_url}/callouts")
        await new_tab.get_by_role("button", name="Sign out").click()
        await new_tab.wait_for_url("**/login")
        await sign_in_here(new_tab, "fixer1")
        # The old tab's form carries the old session's token: offered back, not refused.
        await old_tab.get_by_role("button", name="Acknowledge").click()
        await old_tab.wait_for_url(f"**/callouts/{callout_id}")
        panel = old_tab.get_by_test_id("pending-action")
        await panel.get_by_role("button", name=f"Acknowledge callout #{callout_id}").click()
        await old_tab.get_by_role("status").filter(has_text="acknowledged").wait_for()
        assert (await callout_of(site, callout_id)).status == "acknowledged"


async def test_errors_in_the_browser_are_pages_and_the_api_keeps_json(
    browser: Any, site: Site
) -> None:
    async with UnitOnBroker(site.broker, "cam-01") as unit:
        await unit.heartbeat()
        await unit.fault(FaultCode.IMAGE_BLACK, "image_black", "mean luminance 3 below 12")
        callout_id = (await eventually(lambda: site.callouts("cam-01"), within=10))[0].id
    page = await sign_in(browser, site, "operator1")

    response = await page.goto(f"{site.base_url}/no/such/page")
    assert response is not None and response.status == 404
    assert response.headers["content-type"].startswith("text/html")
    assert await page.get_by_role("heading", name="Not found").count() == 1
    assert await page.get_by_test_id("username").inner_text() == "operator1"  # the top bar
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    await shot(page, "error-404")

    # A form's address opened as a page: 405 as a page, with the way back to the callout.
    response = await page.goto(f"{site.base_url}/callouts/{callout_id}/acknowledge")
    assert response is not None and response.status == 405
    assert "not a page to open" in await page.get_by_test_id("refusal").inner_text()
    await shot(page, "error-405")
    await page.get_by_test_id("refusal-back").click()
    await page.wait_for_url(f"**/callouts/{callout_id}")

    # Values that are not valid: 422 as a page, in words.
    response = await page.goto(f"{site.base_url}/units/cam-01?hours=many")
    assert response is not None and response.status == 422
    refusal = await page.get_by_test_id("refusal").inner_text()
    assert refusal.startswith("Some values are not valid (Hours:"), refusal
    assert await page.get_by_test_id("refusal-back").get_attribute("href") == "/units/cam-01"
    await shot(page, "error-422")

    # The JSON API keeps JSON, whatever the browser asks for.
    for path, status in (("/api/no/such/thing", 404), ("/api/audit?before=0", 422)):
        response = await page.goto(f"{site.base_url}{path}")
        assert response is not None and response.status in (status, 403), path
        assert response.headers["content-type"] == "application/json", path
        assert "detail" in await response.json()

    # Signed out, an unknown page offers to sign in.
    anonymous = await (await browser.new_context()).new_page()
    response = await anonymous.goto(f"{site.base_url}/no/such/page")
    assert response is not None and response.status == 404
    assert await anonymous.get_by_role("link", name="Sign in").count() == 1


async def test_refusals_link_back_and_buttons_say_why_they_cannot_be_used(
    browser: Any, site: Site
) -> None:
    async with UnitOnBroker(site.broker, "cam-01") as unit:
        await unit.heartbeat()
        await unit.fault(FaultCode.IMAGE_BLACK, "image_black", "mean luminance 3 below 12")
        callout_id = (await eventually(lambda: site.callouts("cam-01"), within=10))[0].id

    fixer = await sign_in(browser, site, "fixer1")
    response = await fixer.goto(f"{site.base_url}/units/cam-01/footage")
    assert response is not None and response.status == 403
    back = fixer.get_by_test_id("refusal-back")
    assert await back.inner_text() == "Back to unit cam-01"
    await back.click()
    await fixer.wait_for_url("**/units/cam-01")

    other = await sign_in(browser, site, "other1")  # another contractor: not their unit
    response = await other.goto(f"{site.base_url}/units/cam-01")
    assert response is not None and response.status == 403
    assert await other.get_by_test_id("refusal-back").get_attribute("href") == "/fleet"

    auditor = await sign_in(browser, site, "auditor1")
    await auditor.goto(f"{site.base_url}/callouts/{callout_id}")
    for name in ("Acknowledge", "Run self-test"):
        button = auditor.get_by_role("button", name=name)
        assert await button.is_disabled(), name
        reason_id = await button.get_attribute("aria-describedby")
        reason = await auditor.locator(f"#{reason_id}").inner_text()
        assert "you are signed in as an auditor" in reason, reason
        assert reason.startswith("Only a manager, an operator or a contractor may do this")
    await shot(auditor, "callout-auditor-disabled-buttons")
    await auditor.goto(f"{site.base_url}/units/cam-01")
    button = auditor.get_by_role("button", name="Run self-test now")
    assert await button.is_disabled()
    assert "auditor" in await auditor.get_by_test_id("refused-reason").inner_text()
    # The refusal of the step itself, had the button been sent anyway, links to the callout.
    token = await auditor.locator("header input[name=csrf_token]").get_attribute("value")
    response = await auditor.request.post(
        f"{site.base_url}/callouts/{callout_id}/acknowledge",
        form={"csrf_token": token or "", "note": ""},
        headers={"Accept": "text/html", "Sec-Fetch-Site": "same-origin"},
    )
    assert response.status == 403
    assert f'href="/callouts/{callout_id}"' in await response.text()
