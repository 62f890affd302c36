"""Users and the audit log in a real browser over a real controller: a manager adds a
user, changes their role, gives them a new password, disables and enables them, each
change audited; the audit log reads as sentences and filters by what happened, who, which
unit and which days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from controller.store.audit import AuditEntry
from protocol.faults import FaultCode
from tests.controller.conftest import eventually
from tests.controller.pages_harness import PASSWORD, Site, UnitOnBroker, shot, sign_in

NEW_PASSWORD = "a new long password for olivia"


async def actions_on(site: Site, subject: str) -> list[tuple[str, str]]:
    async with site.db.session() as session:
        rows = await session.execute(
            select(AuditEntry.actor, AuditEntry.action)
            .where(AuditEntry.subject == subject)
            .order_by(AuditEntry.seq)
        )
        return [(actor, action) for actor, action in rows.all()]


async def can_sign_in(browser: Any, site: Site, username: str, password: str) -> str:
    """What the sign-in page says (or the start page's user) after trying."""
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{site.base_url}/login")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state("domcontentloaded")
    if await page.get_by_test_id("username").count():
        return "signed in as " + await page.get_by_test_id("username").inner_text()
    return await page.get_by_role("alert").inner_text()


async def test_a_manager_adds_changes_and_disables_a_user_in_the_browser(
    browser: Any, site: Site
) -> None:
    page = await sign_in(browser, site, "manager1")
    await page.goto(f"{site.base_url}/users")
    form = page.locator("form[action='/users']")

    # Mistakes are shown beside their field, and nothing is added.
    await form.get_by_label("Username").fill("olivia")
    await form.get_by_role("radio", name="Contractor").check()
    await form.get_by_label("First password").fill(PASSWORD)
    await form.get_by_label("The same password again").fill(PASSWORD + "x")
    await form.get_by_role("button", name="Add the user").click()
    confirm = page.locator("form[action='/users']").get_by_label("The same password again")
    assert await confirm.get_attribute("aria-invalid") == "true"
    assert "not the same" in await page.locator("#confirm-error").inner_text()
    form = page.locator("form[action='/users']")
    await form.get_by_label("First password").fill(PASSWORD)
    await form.get_by_label("The same password again").fill(PASSWORD)
    await form.get_by_role("button", name="Add the user").click()
    assert "their company" in await page.locator("#contractor-error").inner_text()
    await shot(page, "users-add-errors")
    assert await actions_on(site, "user:olivia") == []

    form = page.locator("form[action='/users']")
    await form.get_by_role("radio", name="Operator").check()
    await form.get_by_label("First password").fill(PASSWORD)
    await form.get_by_label("The same password again").fill(PASSWORD)
    await form.get_by_role("button", name="Add the user").click()
    await page.wait_for_url("**/users/olivia?**")
    assert "User olivia added" in await page.get_by_role("status").first.inner_text()
    assert await page.get_by_test_id("user-role").inner_text() == "Operator"
    assert await can_sign_in(browser, site, "olivia", PASSWORD) == "signed in as olivia"

    # Another role: she is an auditor from her next request on.
    await page.get_by_role("radio", name="Auditor").check()
    await page.get_by_role("button", name="Save the change").click()
    await page.get_by_role("status").filter(has_text="role of olivia has been changed").wait_for()
    assert await page.get_by_test_id("user-role").inner_text() == "Auditor"

    # A new password: the old one stops working.
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("The same password again").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Set the password").click()
    await page.get_by_role("status").filter(has_text="has a new password").wait_for()
    assert "Wrong username or password" in await can_sign_in(browser, site, "olivia", PASSWORD)
    assert await can_sign_in(browser, site, "olivia", NEW_PASSWORD) == "signed in as olivia"

    # Disabled, then enabled again.
    await page.get_by_role("button", name="Disable olivia").click()
    await page.get_by_role("status").filter(has_text="olivia is disabled").wait_for()
    assert await page.get_by_test_id("user-status").inner_text() == "disabled"
    assert "disabled" in await can_sign_in(browser, site, "olivia", NEW_PASSWORD)
    await page.get_by_role("button", name="Enable olivia").click()
    await page.get_by_role("status").filter(has_text="olivia can sign in again").wait_for()
    assert await can_sign_in(browser, site, "olivia", NEW_PASSWORD) == "signed in as olivia"
    await shot(page, "user-page")

    assert [a for a in await actions_on(site, "user:olivia") if a[0] == "manager1"] == [
        ("manager1", "user.add"),
        ("manager1", "user.change"),
        ("manager1", "user.password_set"),
        ("manager1", "user.disable"),
        ("manager1", "user.enable"),
    ]

    # Their own account: the manager cannot disable it or change its role, and is told why.
    await page.goto(f"{site.base_url}/users/manager1")
    disable = page.get_by_role("button", name="Disable")
    assert await disable.is_disabled()
    reason = await page.locator(f"#{await disable.get_attribute('aria-describedby')}").inner_text()
    assert "your own account" in reason
    await page.goto(f"{site.base_url}/users")
    await shot(page, "users")

    # An auditor is refused the users' pages, with the way back.
    auditor = await sign_in(browser, site, "auditor1")
    response = await auditor.goto(f"{site.base_url}/users/olivia")
    assert response is not None and response.status == 403
    assert "manager" in await auditor.get_by_test_id("refusal").inner_text()


async def test_the_audit_log_reads_as_sentences_and_filters(browser: Any, site: Site) -> None:
    async with UnitOnBroker(site.broker, "cam-01") as cam1, UnitOnBroker(site.broker, "cam-02"):
        await cam1.heartbeat()
        await cam1.fault(FaultCode.IMAGE_BLACK, "image_black", "mean luminance 3 below 12")
        callout_id = (await eventually(lambda: site.callouts("cam-01"), within=10))[0].id
        fixer = await sign_in(browser, site, "fixer1")
        await (
            fixer.locator(f"[data-callout='{callout_id}']")
            .get_by_role("button", name="Acknowledge")
            .click()
        )
        await fixer.get_by_role("status").filter(has_text="acknowledged").wait_for()
        operator = await sign_in(browser, site, "operator1")
        await operator.goto(f"{site.base_url}/units/cam-02")
        await operator.get_by_role("button", name="Run self-test now").click()
        await (
            operator.get_by_test_id("selftest-live")
            .get_by_test_id("selftest-report")
            .wait_for(timeout=15_000)
        )

    page = await sign_in(browser, site, "auditor1")
    await page.goto(f"{site.base_url}/audit")
    assert "Chain intact" in await page.get_by_test_id("audit-status").inner_text()
    sentences = await page.get_by_test_id("audit-sentence").all_inner_texts()
    assert f"fixer1 acknowledged callout #{callout_id} on unit cam-01." in sentences
    assert "operator1 asked unit cam-02 to run a self-test." in sentences
    assert f"The controller raised callout #{callout_id} on unit cam-01." in sentences
    assert "manager1 signed in." not in sentences  # (manager1 has not signed in here)
    text = await page.locator("main").inner_text()
    assert "callout.acknowledged" not in text and "command.selftest_now" not in text
    await shot(page, "audit-sentences")

    async def shown(**filters: str) -> list[str]:
        for name in ("kind", "actor"):
            if name in filters:
                await page.get_by_label(
                    {"kind": "What happened", "actor": "Who"}[name]
                ).select_option(filters[name])
        for name, label in (("unit", "Unit"), ("from", "From"), ("to", "To")):
            if name in filters:
                await page.get_by_label(label, exact=True).fill(filters[name])
        async with page.expect_navigation():
            await page.get_by_role("button", name="Filter").click()
        return await page.get_by_test_id("audit-sentence").all_inner_texts()

    callouts = await shown(kind="callout")
    assert callouts and all("callout #" in s for s in callouts), callouts
    await page.goto(f"{site.base_url}/audit")
    mine = await shown(actor="fixer1")
    assert mine and all(s.startswith("fixer1 ") for s in mine), mine
    await page.goto(f"{site.base_url}/audit")
    cam2 = await shown(unit="cam-02")
    assert "operator1 asked unit cam-02 to run a self-test." in cam2
    assert all("cam-02" in s for s in cam2) and not any("cam-01" in s for s in cam2), cam2
    await page.goto(f"{site.base_url}/audit")
    today = datetime.now(UTC).date()
    assert await shown(kind="command.selftest_now", **{"from": str(today - timedelta(days=1))})
    await page.goto(f"{site.base_url}/audit")
    later = str(today + timedelta(days=2))
    assert await shown(**{"from": later}) == []
    assert "Nothing matches" in await page.get_by_test_id("audit-entries").inner_text()
    await page.goto(f"{site.base_url}/audit?from={today}&to={today - timedelta(days=3)}")
    assert "end on or after" in await page.get_by_role("alert").inner_text()
