"""The control room's pages in a real browser (Debian's headless Chromium via Playwright),
served by uvicorn over a real controller (ingest from a real Mosquitto, SQLite).

Units are played by aiomqtt clients holding the units' own certificates: they publish
telemetry, answer a signed self-test command with a report, and receive the retained
deployment authorization. Screenshots of every page go to test-output/screenshots/.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.deployments.pia import ProtectedCharacteristic
from protocol.faults import FaultCode
from tests.controller.conftest import eventually
from tests.controller.pages_harness import (
    CONTRACTOR,
    PASSWORD,
    Site,
    UnitOnBroker,
    shot,
    sign_in,
)


async def test_contractor_works_a_callout_with_a_remote_selftest(browser: Any, site: Site) -> None:
    async with UnitOnBroker(site.broker, "cam-01") as unit:
        await unit.heartbeat()
        await unit.power(on_battery=False, charge=100)
        unit.selftest_verdict = "fail"
        await unit.fault(FaultCode.IMAGE_BLACK, "image_black", "mean luminance 3 below 12")
        callouts = await eventually(lambda: site.callouts("cam-01"), within=10)
        callout_id = callouts[0].id

        page = await sign_in(browser, site, "fixer1")
        assert page.url.endswith("/callouts")  # a contractor starts on their callouts
        card = page.locator(f"[data-callout='{callout_id}']")
        await card.get_by_test_id("callout-status").wait_for()
        assert await card.get_by_test_id("callout-status").inner_text() == "raised"
        await shot(page, "callouts-contractor-raised")

        await card.get_by_role("button", name="Acknowledge").click()
        await (
            page.get_by_role("status")
            .filter(has_text=f"Callout #{callout_id} acknowledged")
            .wait_for()
        )
        assert await card.get_by_test_id("callout-status").inner_text() == "acknowledged"

        # Remote self-test: a signed command through the real broker, answered by the
        # unit; the board re-fetches itself and shows the report without a reload.
        await card.get_by_role("button", name="Run self-test").click()
        await card.get_by_test_id("selftest-pending").wait_for()
        await (
            card.get_by_test_id("selftest-report").filter(has_text="fail").wait_for(timeout=15_000)
        )
        assert len(unit.commands) == 1
        assert unit.commands[0].body.issued_by == "fixer1"
        report = await card.get_by_test_id("selftest-report").inner_text()
        assert "Picture brightness (fail, 92 of 255)" in report and "image_black" not in report
        await shot(page, "callouts-contractor-selftest")

        await card.get_by_role("button", name="Attending").click()
        await page.get_by_role("status").filter(has_text="marked as attending").wait_for()
        # A resolve needs a note; it sends the unit a self-test, whose passing report
        # verifies the repair (the board follows without a reload).
        unit.selftest_verdict = "pass"
        await card.get_by_label("What was done").fill("Cleaned the dome; IR lamp replaced")
        await card.get_by_role("button", name="Resolve").click()
        await (
            page.get_by_role("status").filter(has_text=f"Callout #{callout_id} resolved").wait_for()
        )
        await (
            card.get_by_test_id("callout-status")
            .filter(has_text="verified by the unit")
            .wait_for(timeout=15_000)
        )
        assert len(unit.commands) == 2 and unit.commands[1].body.issued_by == "fixer1"
        await shot(page, "callouts-contractor-verified")
        await page.goto(f"{site.base_url}/callouts/{callout_id}")
        assert "pass" in await page.get_by_test_id("selftest-checks").inner_text()
        history = await page.locator("table").last.inner_text()
        for step in (
            "raised",
            "acknowledged",
            "attending",
            "resolved",
            "self-test sent to check the repair",
            "verified by the unit",
        ):
            assert step in history
        assert "Cleaned the dome" in history
        await shot(page, "callout-detail")


def _local(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M")


def _fields(page: Any) -> tuple[Any, Any]:
    async def fill(name: str, value: str) -> None:
        await page.locator(f"#f-d-{name}").fill(value)

    async def choose(name: str, value: str) -> None:
        await page.locator(f"#f-d-{name}").select_option(value)

    return fill, choose


async def _continue(page: Any, heading: str) -> None:
    """Save the step and wait for the next one (the step list marks it current)."""
    await page.get_by_role("button", name="Save and continue").click()
    current = page.locator("nav.steps [aria-current=step]")
    await current.filter(has_text=heading).wait_for()


async def _start_request(page: Any, now: datetime, unit: str = "cam-02") -> str:
    """Step 1 on the new request's page: the unit, the place and the dates; the draft's id."""
    fill, choose = _fields(page)
    await choose("unit-id", unit)
    await page.locator("#f-d-location-id").select_option(label="Market Street car park")
    await fill("planned-start", _local(now - timedelta(minutes=5)))
    await fill("planned-end", _local(now + timedelta(days=30)))
    await _continue(page, "Why the camera is needed")
    return str(page.url.split("/deployments/")[1].split("/")[0])


async def _fill_need(page: Any, now: datetime) -> None:
    """Step 2: who asked, the evidence of need, purpose and the alternatives."""
    today = now.date()
    fill, choose = _fields(page)
    await choose("pia-referral-source", "police")
    await fill("pia-referral-referrer", "Neighbourhood policing team, PC 4127")
    await fill("pia-referral-received-on", (today - timedelta(days=20)).isoformat())
    await fill("pia-evidence-of-need-period-start", (today - timedelta(days=200)).isoformat())
    await fill("pia-evidence-of-need-period-end", (today - timedelta(days=20)).isoformat())
    await fill("pia-evidence-of-need-items-0-reference", "CAD 2291/25")
    await fill("pia-evidence-of-need-items-0-category", "vehicle crime")
    await fill("pia-evidence-of-need-items-0-count", "14")
    await fill("pia-evidence-of-need-summary", "Fourteen thefts from vehicles in six months.")
    await fill("pia-purpose", "Prevent and detect vehicle crime in the car park.")
    await fill("pia-pressing-need", "Thefts rose threefold; patrols have not reduced them.")
    await fill("pia-alternatives-considered", "Lighting was improved in spring without effect.")
    await _continue(page, "Privacy")


async def _fill_privacy(page: Any, now: datetime) -> None:
    """Step 3 up to its button: who is affected, a home in view with one mask drawn over
    the unit's picture, the signs (the caller saves the step)."""
    today = now.date()
    fill, choose = _fields(page)
    await fill("pia-affected", "Car park users and passers-by on Market Street.")
    await choose("pia-collateral-intrusion-0-kind", "home")
    await fill("pia-collateral-intrusion-0-description", "Upper windows of no. 12 at the edge.")
    await page.locator("#f-d-pia-collateral-intrusion-0-masked").check()
    # Draw one mask: four clicks on the reference frame, then finish the polygon.
    canvas = page.get_by_test_id("mask-canvas")
    box = await canvas.bounding_box()
    assert box is not None
    await page.locator("#f-d-pia-masks-label").fill("windows of no. 12")
    for fx, fy in ((0.70, 0.10), (0.95, 0.10), (0.95, 0.40), (0.70, 0.40)):
        await canvas.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
    await page.get_by_role("button", name="Finish polygon").click()
    await page.get_by_text("1 mask drawn.").wait_for()
    await fill(
        "pia-signage-description", "Two A3 signs at the entrances with the council's number."
    )
    await fill("pia-signage-erect-by", (today - timedelta(days=1)).isoformat())
    await fill("pia-signage-remove-by", (today + timedelta(days=31)).isoformat())


async def _fill_rest(page: Any, now: datetime) -> None:
    """From step 3's button to the check of the answers: the equality impact as listed,
    one risk with its measure, the DPO's advice."""
    today = now.date()
    fill, choose = _fields(page)
    await _continue(page, "Consultation and equality")
    await _continue(page, "Risks and measures")
    await fill("pia-risks-0-title", "Residents' windows in view")
    await fill("pia-risks-0-description", "Footage could show the inside of homes.")
    await choose("pia-risks-0-likelihood", "possible")
    await choose("pia-risks-0-severity", "significant")
    await fill("pia-risks-0-measures-0-description", "Privacy mask over the windows.")
    await choose("pia-risks-0-measures-0-effect", "reduced")
    await choose("pia-risks-0-measures-0-residual-risk", "low")
    await _continue(page, "Advice")
    assert "not needed" in await page.get_by_test_id("ico-not-needed").inner_text()
    await fill("pia-dpo-advice-dpo-name", "J. Okafor")
    await fill("pia-dpo-advice-advised-on", (today - timedelta(days=3)).isoformat())
    await fill("pia-dpo-advice-advice", "Proceed with the mask; review in three months.")
    await choose("pia-dpo-advice-outcome", "accepted")
    await _continue(page, "Check and submit")


async def _fill_request(page: Any, now: datetime) -> str:
    """The operator's request for cam-02 with its full PIA, step by step from the new
    request's page to the check of the answers, masks drawn on the frame; its id."""
    deployment_id = await _start_request(page, now)
    await _fill_need(page, now)
    await _fill_privacy(page, now)
    await _fill_rest(page, now)
    return deployment_id


@pytest.mark.dates
async def test_operator_requests_manager_approves_and_the_unit_is_authorised(
    browser: Any, site: Site, tmp_path: Path
) -> None:
    from tests.harness.agent import AgentProcess

    # The real edge agent for cam-02: it records only once the manager has approved.
    agent = AgentProcess(site.fleet, "cam-02", site.broker, tmp_path / "agent")
    agent.start()
    async with UnitOnBroker(site.broker, "cam-02", listen_as="probe-1") as unit:
        now = datetime.now(UTC)

        operator = await sign_in(browser, site, "operator1")
        await operator.goto(f"{site.base_url}/locations/new")
        await operator.locator("#f-loc-name").fill("Market Street car park")
        await operator.locator("#f-loc-address").fill("Market Street, north entrance")
        await operator.locator("#f-loc-lat").fill("51.4545")
        await operator.locator("#f-loc-lon").fill("-2.5879")
        await operator.get_by_role("button", name="Add the location").click()
        await operator.get_by_role("heading", name="Market Street car park").wait_for()

        await operator.goto(f"{site.base_url}/deployments/new")
        # An empty request is refused field by field, with a summary that links to them.
        await operator.get_by_role("button", name="Save and continue").click()
        summary = operator.locator("#error-summary")
        await summary.wait_for()
        assert "This is required." in await summary.inner_text()
        await shot(operator, "deployment-request-errors")
        deployment_id = await _fill_request(operator, now)
        await shot(operator, "deployment-request-check")
        await operator.get_by_role("button", name="Submit for a manager's decision").click()
        status = operator.get_by_test_id("deployment-status")
        await status.wait_for()
        assert await status.inner_text() == "submitted"
        assert operator.url.split("/deployments/")[1].split("?")[0] == deployment_id
        # The submitter cannot decide their own request (and an operator cannot at all).
        assert (
            await operator.get_by_role("button", name="Approve and authorise the unit").count() == 0
        )

        manager = await sign_in(browser, site, "manager1")
        await manager.goto(f"{site.base_url}/deployments")
        queue = manager.locator("#queue + .table-wrap")
        await queue.get_by_role("link", name=deployment_id).click()
        pia = manager.locator("#pia")
        assert "Fourteen thefts from vehicles" in await pia.inner_text()
        assert "windows of no. 12" in await pia.inner_text()
        await shot(manager, "deployment-submitted")
        await manager.get_by_label("Notes on the decision").fill("Proportionate with the mask.")
        await manager.get_by_label("I have read the assessment").check()
        await manager.get_by_role("button", name="Approve and authorise the unit").click()
        approved_at = time.monotonic()
        await manager.get_by_role("status").filter(has_text="approved").wait_for()
        assert await manager.get_by_test_id("deployment-status").inner_text() == "active"
        await shot(manager, "deployment-approved")

        # The signed authorization reaches the unit (retained), with the mask as drawn.
        authz = await eventually(lambda: unit.authorizations, within=10)
        body = unit.verifier.authorization(authz[-1])
        assert body.deployment_id == deployment_id
        assert len(body.masks) == 1 and len(body.masks[0]) == 4
        assert abs(body.masks[0][0][0] - 0.70) < 0.02 and abs(body.masks[0][2][1] - 0.40) < 0.02

        # The real unit opens its gate and records; its page shows it within seconds.
        await manager.goto(f"{site.base_url}/units/cam-02")
        while time.monotonic() - approved_at < 10:
            gate = await manager.get_by_test_id("gate").inner_text()
            recording = await manager.get_by_test_id("recording").inner_text()
            if "authorised" in gate and recording.strip().startswith("recording"):
                break
            await asyncio.sleep(0.25)
            await manager.reload()
        print(f"approved -> unit page shows recording: {time.monotonic() - approved_at:.1f} s")
        assert "authorised" in await manager.get_by_test_id("gate").inner_text()
        assert (
            (await manager.get_by_test_id("recording").inner_text()).strip().startswith("recording")
        ), agent.log()[-3000:]
        assert await manager.get_by_test_id("deployment-state").inner_text() == "active"
        await shot(manager, "unit-authorised")
        await manager.goto(f"{site.base_url}/deployments")
        live = manager.locator("#live + .table-wrap")
        assert deployment_id in await live.inner_text()
        await shot(manager, "deployments")
        await live.get_by_role("link", name="Market Street car park").click()
        assert deployment_id in await manager.locator("table").inner_text()
        await shot(manager, "location-history")
    assert await asyncio.to_thread(agent.terminate) == 0


async def test_contractor_is_refused_deployments_footage_and_users(
    browser: Any, site: Site
) -> None:
    page = await sign_in(browser, site, "fixer1")
    for path in (
        "/deployments",
        "/deployments/new",
        "/deployments/dep-000000000000",
        "/units/cam-01/footage",
        "/units/cam-01/reference-frame",
        "/users",
        "/audit",
    ):
        response = await page.goto(f"{site.base_url}{path}")
        assert response is not None and response.status == 403, path
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert await page.get_by_role("heading", name="You cannot open this page").count() == 1
        refusal = await page.get_by_test_id("refusal").inner_text()
        assert refusal.endswith(".") and "contractor" in refusal, (path, refusal)
    await shot(page, "refused-contractor")
    # Their own unit's page carries faults and self-tests but no deployment (PIA) content.
    response = await page.goto(f"{site.base_url}/units/cam-01")
    assert response is not None and response.status == 200
    assert await page.get_by_role("heading", name="Deployments").count() == 0
    assert await page.get_by_role("link", name="Footage").count() == 0
    assert [await a.inner_text() for a in await page.locator("header nav a").all()] == [
        "Fleet",
        "Callouts",
    ]
    # Another contractor's unit is not theirs to open.
    other = await sign_in(browser, site, "other1")
    response = await other.goto(f"{site.base_url}/units/cam-01")
    assert response is not None and response.status == 403
    assert (
        "not on the Other Contractor Ltd contract"
        in await other.get_by_test_id("refusal").inner_text()
    )
    # Signed out, a page sends the browser to sign in, and back to the page afterwards.
    anonymous = await (await browser.new_context()).new_page()
    await anonymous.goto(f"{site.base_url}/units/cam-01?hours=6")
    assert "/login?next=" in anonymous.url
    await anonymous.get_by_label("Username").fill("fixer1")
    await anonymous.get_by_label("Password").fill("not the password at all")
    await anonymous.get_by_role("button", name="Sign in").click()
    assert "Wrong username or password" in await anonymous.get_by_role("alert").inner_text()
    await anonymous.get_by_label("Password").fill(PASSWORD)
    await anonymous.get_by_role("button", name="Sign in").click()
    await anonymous.wait_for_url("**/units/cam-01?hours=6")
    # A form posted without the session's CSRF token is refused.
    response = await other.request.post(f"{site.base_url}/units/cam-01/selftest", form={})
    assert response.status == 403


async def test_fleet_overview_refreshes_and_unit_page_draws_power(browser: Any, site: Site) -> None:
    async with (
        UnitOnBroker(site.broker, "cam-01") as cam1,
        UnitOnBroker(site.broker, "cam-02") as cam2,
        UnitOnBroker(site.broker, "cam-03") as cam3,
    ):
        await cam1.heartbeat(recording=True, gate_open=True, deployment_id="dep-a")
        await cam1.report()
        await cam2.heartbeat()
        await cam2.fault(FaultCode.CAMERA_NO_SIGNAL, "camera_signal", "no frames for 30 s")
        await cam3.heartbeat(recording=True, gate_open=True, deployment_id="dep-b")
        # A mains failure three hours ago, the supply back, and a new failure now.
        now = datetime.now(UTC)
        for hours, on_battery, charge in (
            (9, False, 100), (6, True, 97), (5.5, True, 81), (5, True, 64), (4.5, False, 62),
            (3, False, 88), (2, False, 100), (0.2, True, 96), (0, True, 93),
        ):  # fmt: skip
            at = now - timedelta(hours=hours)
            await cam3.power(on_battery=on_battery, charge=charge, at=at)
        await eventually(lambda: site.callouts("cam-02"), within=10)

        page = await sign_in(browser, site, "manager1")
        rows = page.locator("#fleet-table tbody tr[data-unit]")
        await page.locator("#fleet-table tr[data-unit='cam-02'][data-health='fault']").wait_for()
        assert await rows.count() == 3
        await shot(page, "fleet-overview")

        # Filters narrow the table (and its self-refresh keeps them).
        await page.get_by_label("Health", exact=True).select_option("fault")
        await page.get_by_role("button", name="Apply filters").click()
        await page.wait_for_url("**/fleet?*health=fault*")
        assert [await r.get_attribute("data-unit") for r in await rows.all()] == ["cam-02"]

        # The table re-fetches itself: a change on the broker shows without a reload.
        await page.goto(f"{site.base_url}/fleet")
        cam1_power = page.locator("#fleet-table tr[data-unit='cam-01'] td[data-col=power]")
        assert "on battery" not in await cam1_power.inner_text()
        await cam1.power(on_battery=True, charge=70)
        await cam1_power.get_by_text("on battery").wait_for(timeout=15_000)
        assert await page.locator("#fleet-region").get_attribute("data-refreshed-at")

        await page.goto(f"{site.base_url}/units/cam-03")
        chart = page.locator("svg.chart[role=img]")
        assert "2 period(s) on battery" in (await chart.get_attribute("aria-label") or "")
        assert await chart.locator("polyline.series").count() == 1
        await shot(page, "unit-detail")
        await page.goto(f"{site.base_url}/units/cam-01")
        checks = await page.locator("details.checks").first.inner_text()
        assert "Picture brightness" in checks and "image_black" not in checks

        auditor = await sign_in(browser, site, "auditor1")
        assert auditor.url.endswith("/kpis")
        await auditor.get_by_test_id("fleet-availability").wait_for()
        assert await auditor.get_by_test_id("selftest-pass").inner_text() == "100.0%"
        # The contractor's figures are in a table (the evidence figures have tables too).
        assert await auditor.locator("table", has_text=CONTRACTOR).count() >= 1
        await shot(auditor, "kpis")
        today = datetime.now(UTC).date()
        backwards = f"from={today}&to={today - timedelta(days=31)}"
        await auditor.goto(f"{site.base_url}/kpis?{backwards}")
        assert "must end on or after" in await auditor.get_by_role("alert").inner_text()
        await auditor.goto(f"{site.base_url}/audit")
        assert "Chain intact" in await auditor.get_by_test_id("audit-status").inner_text()
        assert await auditor.locator("tbody tr").count() >= 5
        await shot(auditor, "audit")
        await page.goto(f"{site.base_url}/users")
        await shot(page, "users")
        await page.set_viewport_size({"width": 820, "height": 1180})  # a tablet, portrait
        await page.goto(f"{site.base_url}/fleet")
        await shot(page, "fleet-overview-tablet")
        await page.goto(f"{site.base_url}/login")
        await shot(page, "login")


# ------------------------------------------------------------- the pure parts of pages


def _flatten(value: Any, prefix: str) -> list[tuple[str, str]]:
    """Form fields as a browser would send them for this data."""
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flatten(v, f"{prefix}.{k}")]
    if isinstance(value, list) and not value:
        return []
    if isinstance(value, list) and isinstance(value[0], dict | list):
        if prefix.endswith(".masks"):  # the mask editor's hidden field
            return [(prefix, json.dumps(value))]
        return [item for i, v in enumerate(value) for item in _flatten(v, f"{prefix}.{i}")]
    if isinstance(value, bool):
        return [(prefix, "false")] + ([(prefix, "true")] if value else [])
    return [(prefix, "" if value is None else str(value))]


@pytest.mark.dates
def test_pia_form_fields_read_back_into_the_same_request() -> None:
    from controller.deployments.models import DeploymentRequest
    from controller.pages.form_data import coerce, form_tree
    from controller.pages.forms import model_form

    start = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)

    def before(days: int) -> str:
        return (start - timedelta(days=days)).date().isoformat()

    pia = {
        "referral": {"source": "public", "referrer": "Residents", "received_on": before(56)},
        "evidence_of_need": {
            "period_start": before(244),
            "period_end": before(61),
            "items": [{"reference": "ASB 11", "category": "ASB", "count": 9}],
            "summary": "Nine reports of drug dealing.",
        },
        "purpose": "Detect ASB",
        "pressing_need": "Repeated reports",
        "alternatives_considered": "Patrols",
        "affected": "Passers-by",
        "collateral_intrusion": [{"kind": "school", "description": "Gate", "masked": True}],
        "masks": [{"label": "school gate", "polygon": [[0.1, 0.1], [0.3, 0.1], [0.2, 0.4]]}],
        "signage": {
            "description": "Two signs",
            "erect_by": before(1),
            "remove_by": (start + timedelta(days=59)).date().isoformat(),
        },
        "equality": [
            {"characteristic": c.value, "impact": "none", "notes": ""}
            for c in ProtectedCharacteristic
        ],
        "dpo_advice": {
            "dpo_name": "A. Shah",
            "advised_on": before(41),
            "advice": "Mask the gate",
            "outcome": "overruled",
            "reasons": "The gate is the hotspot",
        },
        "risks": [
            {
                "title": "Children in view",
                "description": "Pupils at the gate",
                "likelihood": "probable",
                "severity": "significant",
                "measures": [
                    {"description": "Mask", "effect": "reduced", "residual_risk": "medium"}
                ],
            }
        ],
    }
    original = DeploymentRequest.model_validate(
        {
            "unit_id": "cam-01",
            "location_id": 3,
            "planned_start": start,
            "planned_end": start + timedelta(days=40),
            "pia": pia,
        }
    )
    html = str(model_form(DeploymentRequest, values=original.model_dump(mode="json"), prefix="d"))
    sent = original.model_dump(mode="json", exclude_computed_fields=True, exclude_none=True)
    fields = _flatten(sent, "d")
    for name, _ in fields:
        assert f'name="{name}"' in html, name  # every field of the model is on the form
    read = coerce(DeploymentRequest, form_tree(fields, prefix="d"))
    assert DeploymentRequest.model_validate(read) == original


def test_downtime_counts_overlapping_faults_once() -> None:
    from controller.fleet.kpis import downtime

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    hours = [
        (t0 + timedelta(hours=a), t0 + timedelta(hours=b)) for a, b in ((0, 10), (5, 15), (20, 30))
    ]
    assert downtime(hours, t0, t0 + timedelta(hours=25)) == 20 * 3600


def test_power_chart_marks_each_battery_period() -> None:
    from controller.pages.charts import PowerPoint, power_chart

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    points = [
        PowerPoint(t0 + timedelta(hours=h), battery, charge)
        for h, battery, charge in ((1, False, 100), (2, True, 90), (3, False, 70), (5, True, 95))
    ]
    svg = str(power_chart(points, start=t0, end=t0 + timedelta(hours=6)))
    assert svg.count('<rect class="battery"') == 2
    assert "2 period(s) on battery" in svg
    assert svg.count("<polyline") == 1
