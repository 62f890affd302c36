"""The PIA in steps, in a real browser (Debian's Chromium via Playwright) over a real
controller: an operator's request saved as a draft and resumed, errors beside each field,
the ICO's prior consultation asked for only at a high residual risk, a warning of another
request for the unit on overlapping dates; the manager's decision after the assessment,
refused until they confirm they have read it; a rejected request copied and revised.
Every step page is checked with axe-core at 1366 px and at 390 px (no sideways
scrolling); screenshots go to test-output/screenshots/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.deployments import DeploymentWorkflow, LocationIn
from controller.deployments import locations as loc
from controller.deployments.models import DeploymentRequest
from tests.controller.pages_harness import Site, shot, sign_in
from tests.controller.test_deployments import OLLY, pia
from tests.controller.test_pages import (
    _continue,
    _fields,
    _fill_need,
    _fill_privacy,
    _start_request,
)
from tests.harness.axe import assert_accessible

pytestmark = pytest.mark.dates

SIDEWAYS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


async def check_page(page: Any, name: str) -> None:
    """axe-core finds nothing serious at 1366 px and at 390 px, the page never scrolls
    sideways, and a screenshot of each width is kept."""
    for width in (1366, 390):
        await page.set_viewport_size({"width": width, "height": 900})
        await assert_accessible(page, f"{name} at {width} px")
        assert await page.evaluate(SIDEWAYS) <= 0, f"{name} scrolls sideways at {width} px"
        await shot(page, f"{name}-{width}")
    await page.set_viewport_size({"width": 1366, "height": 900})


async def other_request(site: Site, now: datetime) -> str:
    """The place, and a request for cam-02 already submitted for overlapping dates."""
    flow = DeploymentWorkflow(site.db, signer=None)
    place = await loc.add_location(
        flow, OLLY, LocationIn(name="Market Street car park", lat=51.4545, lon=-2.5879)
    )
    start, end = now + timedelta(days=10), now + timedelta(days=20)
    request = DeploymentRequest.model_validate(
        {
            "unit_id": "cam-02",
            "location_id": place.id,
            "planned_start": start,
            "planned_end": end,
            "pia": pia(start=start.date(), end=end.date()),
        }
    )
    other = await flow.create(OLLY, request)
    await flow.submit(OLLY, other.id)
    return other.id


async def fill_risk(page: Any, likelihood: str, severity: str, effect: str, residual: str) -> None:
    fill, choose = _fields(page)
    await fill("pia-risks-0-title", "Residents' windows in view")
    await fill("pia-risks-0-description", "Footage could show the inside of homes.")
    await choose("pia-risks-0-likelihood", likelihood)
    await choose("pia-risks-0-severity", severity)
    await fill("pia-risks-0-measures-0-description", "Privacy mask over the windows.")
    await choose("pia-risks-0-measures-0-effect", effect)
    await choose("pia-risks-0-measures-0-residual-risk", residual)


async def test_the_pia_in_steps_with_a_draft_and_the_managers_decision(
    browser: Any, site: Site
) -> None:
    now = datetime.now(UTC)
    today = now.date()
    other = await other_request(site, now)
    operator = await sign_in(browser, site, "operator1")
    await operator.goto(f"{site.base_url}/deployments/new")

    # An empty first step: a summary linking to each field, the error beside the field.
    await operator.get_by_role("button", name="Save and continue").click()
    summary = operator.locator("#error-summary")
    await summary.wait_for()
    assert await operator.evaluate("document.activeElement.id") == "error-summary"
    unit = operator.locator("#f-d-unit-id")
    assert await unit.get_attribute("aria-invalid") == "true"
    assert "f-d-unit-id-error" in (await unit.get_attribute("aria-describedby") or "")
    assert await operator.locator("#f-d-unit-id-error").inner_text() == "This is required."
    await check_page(operator, "pia-step-request-errors")

    # Step 1 saved: the draft exists; the need step half done, then kept as a draft.
    draft = await _start_request(operator, now)
    fill, choose = _fields(operator)
    await fill("pia-purpose", "Prevent and detect vehicle crime in the car park.")
    await check_page(operator, "pia-step-need")
    await operator.get_by_role("button", name="Save as draft").click()
    await operator.get_by_test_id("deployment-status").filter(has_text="draft").wait_for()
    assert "saved" in await operator.get_by_role("status").first.inner_text()
    steps = operator.locator("nav.steps")
    assert "not started" in await steps.inner_text()
    await shot(operator, "pia-draft")

    # Resumed later from the draft: what was typed is still there.
    await operator.get_by_role("link", name="Continue the request").click()
    assert await operator.locator("#f-d-pia-purpose").input_value() == (
        "Prevent and detect vehicle crime in the car park."
    )
    # A wrong value is kept as typed and named beside its field; nothing moves on.
    await fill("pia-evidence-of-need-items-0-count", "-3")
    await operator.get_by_role("button", name="Save and continue").click()
    count_error = operator.locator("#f-d-pia-evidence-of-need-items-0-count-error")
    await count_error.wait_for()
    assert "greater than or equal to 0" in await count_error.inner_text()
    assert await operator.locator("#f-d-pia-evidence-of-need-items-0-count").input_value() == "-3"
    await _fill_need(operator, now)
    await check_page(operator, "pia-step-privacy")
    await _fill_privacy(operator, now)
    await _continue(operator, "Consultation and equality")
    await check_page(operator, "pia-step-people")
    await _continue(operator, "Risks and measures")
    await fill_risk(operator, "possible", "significant", "reduced", "low")
    await check_page(operator, "pia-step-risks")
    await _continue(operator, "Advice")

    # At a low residual risk the ICO's prior consultation is not asked for.
    assert "low" in await operator.get_by_test_id("ico-not-needed").inner_text()
    assert await operator.locator("#f-d-pia-prior-consultation-reference").count() == 0
    await fill("pia-dpo-advice-dpo-name", "J. Okafor")
    await fill("pia-dpo-advice-advised-on", (today - timedelta(days=3)).isoformat())
    await fill("pia-dpo-advice-advice", "Proceed with the mask; review in three months.")
    await choose("pia-dpo-advice-outcome", "accepted")
    await _continue(operator, "Check and submit")

    # The check of the answers warns of the other request for cam-02 on those dates.
    warning = operator.get_by_test_id("overlap-warning")
    assert other in await warning.inner_text() and "submitted" in await warning.inner_text()
    await check_page(operator, "pia-check")

    # The risk reassessed as high: now the ICO's prior consultation is asked for.
    await operator.locator("nav.steps").get_by_role("link", name="Risks and measures").click()
    await fill_risk(operator, "probable", "severe", "accepted", "high")
    await _continue(operator, "Advice")
    await operator.get_by_test_id("ico-needed").wait_for()
    await check_page(operator, "pia-step-advice-high-risk")
    await fill("pia-prior-consultation-consulted-on", (today - timedelta(days=2)).isoformat())
    await fill("pia-prior-consultation-reference", "ICO/RFA0123456")
    await operator.get_by_role("button", name="Save and continue").click()
    outcome_error = operator.locator("#f-d-pia-prior-consultation-outcome-error")
    await outcome_error.wait_for()  # a consultation half recorded is named, field by field
    assert await outcome_error.inner_text() == "This is required."
    await fill("pia-prior-consultation-outcome", "The ICO advised the masks are sufficient.")
    await _continue(operator, "Check and submit")
    await operator.get_by_role("button", name="Submit for a manager's decision").click()
    status = operator.get_by_test_id("deployment-status")
    await status.filter(has_text="submitted").wait_for()
    assert operator.url.split("/deployments/")[1].split("?")[0] == draft

    # The manager reads the assessment, then decides: the panel comes after it, and
    # approving asks them to confirm they have read it.
    manager = await sign_in(browser, site, "manager1")
    await manager.goto(f"{site.base_url}/deployments/{draft}")
    before = await manager.evaluate(
        "() => !!(document.querySelector('#pia').compareDocumentPosition("
        "document.querySelector('section.decision')) & Node.DOCUMENT_POSITION_FOLLOWING)"
    )
    assert before, "the decision panel follows the assessment"
    assert "ICO/RFA0123456" in await manager.locator("section.decision").inner_text()
    assert other in await manager.get_by_test_id("overlap-warning").inner_text()
    await manager.get_by_role("button", name="Approve and authorise the unit").click()
    confirm = manager.get_by_label("I have read the assessment")
    await manager.locator("#assessment-read-error").wait_for()
    assert await confirm.get_attribute("aria-invalid") == "true"
    assert await manager.get_by_test_id("deployment-status").inner_text() == "submitted"
    await check_page(manager, "pia-decision-unconfirmed")
    await manager.get_by_role("button", name="Reject").click()
    assert await manager.locator("#reject-reason-error").inner_text() == (
        "Give the reason for this decision: it is recorded and audited."
    )
    await manager.get_by_label("Reasons for rejecting").fill(
        "The evidence covers six months only: give the year's figures."
    )
    await manager.get_by_role("button", name="Reject").click()
    await manager.get_by_test_id("deployment-status").filter(has_text="rejected").wait_for()

    # The operator copies the rejected request and revises it: every answer is kept.
    await operator.goto(f"{site.base_url}/deployments/{draft}")
    await operator.get_by_role("button", name="Copy and revise this request").click()
    await operator.get_by_role("status").filter(has_text="copy of the rejected request").wait_for()
    copy = operator.url.split("/deployments/")[1].split("/")[0]
    assert copy != draft
    await operator.get_by_role("button", name="Save and continue").click()
    await operator.get_by_role("note").filter(has_text=draft).first.wait_for()
    assert await operator.locator("#f-d-pia-purpose").input_value() == (
        "Prevent and detect vehicle crime in the car park."
    )
    await shot(operator, "pia-revision")
    await operator.goto(f"{site.base_url}/deployments/{draft}")
    assert copy in await operator.get_by_role("note").filter(has_text="revised").inner_text()
