"""A self-test asked for from a unit's page or a callout's page shows "pending", then the
unit's report, without a reload, under the pages' Content-Security-Policy (scripts from
the site only, none inline). Real browser, real controller, the unit on the real broker
answering the signed command when the test lets it."""

from __future__ import annotations

import asyncio
from typing import Any

from protocol.faults import FaultCode
from tests.controller.conftest import eventually
from tests.controller.pages_harness import Site, UnitOnBroker, shot, sign_in


def hold_answers(unit: UnitOnBroker) -> asyncio.Event:
    """The unit answers a self-test command only once the returned event is set."""
    release = asyncio.Event()
    answer = unit.report

    async def held(*, command_id: str | None = None) -> None:
        await release.wait()
        await answer(command_id=command_id)

    unit.report = held  # type: ignore[method-assign]
    return release


async def watch_page(page: Any) -> list[str]:
    """What the page's console says about blocked scripts or failed requests."""
    problems: list[str] = []
    page.on(
        "console",
        lambda message: (
            problems.append(message.text)
            if message.type == "error" or "Content Security Policy" in message.text
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


async def assert_scripts_allowed(page: Any, response: Any) -> None:
    policy = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    assert directives["script-src"] == "'self'", policy  # no inline script, no eval
    assert await page.locator("script:not([src])").count() == 0  # nothing inline
    sources = await page.eval_on_selector_all("script[src]", "els => els.map(e => e.src)")
    assert sources and all(s.startswith(page.url.split("/", 3)[0] + "//") for s in sources)


async def test_selftest_from_the_unit_page_shows_pending_then_the_result(
    browser: Any, site: Site
) -> None:
    async with UnitOnBroker(site.broker, "cam-01") as unit:
        await unit.heartbeat()
        unit.selftest_verdict = "fail"
        release = hold_answers(unit)
        page = await sign_in(browser, site, "operator1")
        problems = await watch_page(page)
        response = await page.goto(f"{site.base_url}/units/cam-01")
        assert response is not None
        await assert_scripts_allowed(page, response)
        await page.evaluate("window.stillThisPage = true")

        await page.get_by_role("button", name="Run self-test now").click()
        live = page.get_by_test_id("selftest-live")
        pending = live.get_by_test_id("selftest-live-pending")
        await pending.filter(has_text="Self-test requested").wait_for()
        assert "waiting for the unit" in await pending.inner_text()
        assert await page.get_by_role("button", name="Run self-test now").is_disabled()
        await eventually(lambda: unit.commands, within=10)  # the signed command arrived
        await shot(page, "unit-selftest-pending")
        await asyncio.sleep(2)  # still pending while the unit has not answered
        assert await live.get_by_test_id("selftest-report").count() == 0

        release.set()
        report = live.get_by_test_id("selftest-report")
        await report.wait_for(timeout=15_000)
        text = await report.inner_text()
        assert "fail" in text and "on request" in text, text
        assert await page.evaluate("window.stillThisPage") is True  # no reload
        assert await page.get_by_role("button", name="Run self-test now").is_enabled()
        assert unit.commands[0].body.issued_by == "operator1"
        await shot(page, "unit-selftest-result")
        assert not problems, problems


async def test_selftest_from_a_callout_page_shows_pending_then_the_result(
    browser: Any, site: Site
) -> None:
    async with UnitOnBroker(site.broker, "cam-02") as unit:
        await unit.heartbeat()
        await unit.fault(FaultCode.CAMERA_NO_SIGNAL, "camera_signal", "no frames for 30 s")
        callout_id = (await eventually(lambda: site.callouts("cam-02"), within=10))[0].id
        release = hold_answers(unit)
        page = await sign_in(browser, site, "fixer1")
        problems = await watch_page(page)
        response = await page.goto(f"{site.base_url}/callouts/{callout_id}")
        assert response is not None
        await assert_scripts_allowed(page, response)
        await page.evaluate("window.stillThisPage = true")

        await page.get_by_role("button", name="Run self-test").click()
        live = page.get_by_test_id("selftest-live")
        await (
            live.get_by_test_id("selftest-live-pending")
            .filter(has_text="Self-test requested")
            .wait_for()
        )
        release.set()
        report = live.get_by_test_id("selftest-report")
        await report.wait_for(timeout=15_000)
        assert "pass" in await report.inner_text()
        assert await page.evaluate("window.stillThisPage") is True
        assert unit.commands[0].body.issued_by == "fixer1"
        await shot(page, "callout-selftest-result")
        assert not problems, problems


async def test_selftest_progress_is_for_those_who_may_see_the_unit(
    browser: Any, site: Site
) -> None:
    async with UnitOnBroker(site.broker, "cam-01") as unit:
        await unit.heartbeat()
        page = await sign_in(browser, site, "operator1")
        await page.goto(f"{site.base_url}/units/cam-01")
        await page.get_by_role("button", name="Run self-test now").click()
        await (
            page.get_by_test_id("selftest-live")
            .get_by_test_id("selftest-report")
            .wait_for(timeout=15_000)
        )
        command_id = unit.commands[0].body.command_id
        url = f"{site.base_url}/units/cam-01/selftest/{command_id}"
        mine = await page.request.get(url, headers={"Accept": "application/json"})
        body = await mine.json()
        assert mine.status == 200 and body["done"] is True and body["state"] == "done", body
        # Another contractor's user: not their unit.
        other = await sign_in(browser, site, "other1")
        refused = await other.request.get(url, headers={"Accept": "application/json"})
        assert refused.status == 403
        assert "not on the Other Contractor Ltd contract" in (await refused.json())["detail"]
        unknown = await page.request.get(
            f"{site.base_url}/units/cam-01/selftest/no-such-command",
            headers={"Accept": "application/json"},
        )
        assert unknown.status == 404
