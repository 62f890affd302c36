"""Every page, for every role that may open it, at 1366 px and at 390 px (a phone on site),
in a real browser over a real controller with a seeded fleet: no sideways scrolling, no
raw code or JSON in the visible text, and no serious or critical WCAG 2.2 A/AA violation
found by axe-core. A screenshot of each goes to test-output/screenshots/pages/.

The pages are the app's own GET page routes (`PageRoute`), enumerated from the app, each
with real ids from the seeded fleet; who may open each is read from its guard, as the API
reference does. A new page is therefore checked as soon as it exists; one with a path
parameter this test has no id for fails, naming it. Everything found is reported at once.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi.responses import HTMLResponse
from fastapi.routing import iter_route_contexts
from playwright.async_api import Error as PlaywrightError

from controller.accounts.roles import Role
from controller.api.auth import User, guard_roles
from controller.deployments import DeploymentWorkflow
from controller.deployments import locations as loc
from controller.deployments.drafts import STEPS
from controller.deployments.models import ApproveRequest, LocationIn
from controller.pages.render import PageRoute
from protocol.faults import FaultCode
from tests.controller.conftest import eventually
from tests.controller.pages_harness import SCREENSHOTS, USERS, Site, UnitOnBroker, sign_in
from tests.controller.test_deployments import request as deployment_request
from tests.harness.axe import axe_problems, preload

WIDTHS = {"desktop": (1366, 900), "phone": (390, 844)}
#: The user of each role who opens the pages.
AS = {Role(role): name for name, (role, _) in USERS.items() if name != "other1"}
#: Pages whose purpose is to show code: the API reference (checked for all but raw code).
CODE_PAGES = {"/api/docs"}
#: What reads as code or data rather than words.
RAW = (
    (re.compile(r"[{\[]\s*\""), "JSON"),
    (re.compile(r"\"\s*:\s*[\"{\[\d]"), "JSON"),
    (re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]*[a-z0-9]\b"), "an identifier"),
    (
        re.compile(r"\b(?:auth|user|token|callout|command|unit|deployment|location)\.[a-z]+"),
        "a code",
    ),
    # "None" as a value, not the word ("None recorded.")
    (re.compile(r"\b(?:None(?!\s+[a-z])|True|False|null|undefined|NaN)\b"), "a program value"),
    (re.compile(r"Traceback|object at 0x|\bdict\(|\blist\("), "program output"),
)
OVERFLOW = r"""() => {
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth <= width) { return []; }
  const wide = [];
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.right > width + 1 && box.width > 0) {
      const classes = typeof el.className === "string" && el.className
        ? "." + el.className.trim().split(/\s+/).join(".") : "";
      wide.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + classes +
        " (" + Math.round(box.right) + " px)");
    }
  }
  return wide.slice(-3);
}"""


#: The pages of one case (its detail, release, jobs and exhibits) need a case carried through
#: retrieval to an exhibit; the case and release page tests build one and check these pages
#: the same way (axe, no sideways scroll at 390 px). Not yet seeded here.
CASE_PAGES = "/cases/{number}"


@dataclass(frozen=True)
class Ids:
    """Real ids of the seeded fleet by path parameter name (each page is opened with each
    of its values), and those of one route where it needs others."""

    values: dict[str, tuple[str, ...]]
    only: dict[str, dict[str, tuple[str, ...]]]

    def paths(self, template: str) -> list[str] | None:
        """The paths to open for the route `template`; None when an id is missing."""
        values = {**self.values, **self.only.get(template, {})}
        paths = [template]
        for name in re.findall(r"{(\w+)}", template):
            if name not in values:
                return None
            paths = [
                p.replace(f"{{{name}}}", quote(v, safe="")) for p in paths for v in values[name]
            ]
        return paths


async def seed(site: Site, browser: Any) -> Ids:
    """A fleet with something on every page: telemetry and power, faults and callouts,
    self-tests asked for and reported, a location with a submitted and an approved
    deployment, and an audit log of it all."""
    now = datetime.now(UTC)
    async with (
        UnitOnBroker(site.broker, "cam-01") as cam1,
        UnitOnBroker(site.broker, "cam-02") as cam2,
        UnitOnBroker(site.broker, "cam-03") as cam3,
    ):
        await cam1.heartbeat(recording=True, gate_open=True, deployment_id="dep-a")
        await cam1.report()
        await cam2.heartbeat()
        await cam2.fault(FaultCode.CAMERA_NO_SIGNAL, "camera_signal", "no frames for 30 s")
        await cam3.heartbeat()
        for hours, on_battery, charge in ((6, False, 100), (3, True, 80), (1, False, 90)):
            await cam3.power(on_battery=on_battery, charge=charge, at=now - timedelta(hours=hours))
        callout = (await eventually(lambda: site.callouts("cam-02"), within=10))[0]
        page = await sign_in(browser, site, "operator1")
        await page.goto(f"{site.base_url}/units/cam-01")
        await page.get_by_role("button", name="Run self-test now").click()
        await (
            page.get_by_test_id("selftest-live")
            .get_by_test_id("selftest-report")
            .wait_for(timeout=15_000)
        )
        await page.context.close()

    link = site.service.link
    flow = DeploymentWorkflow(site.db, signer=link.signer, link=link)
    operator = User(username="operator1", role=Role.OPERATOR)
    manager = User(username="manager1", role=Role.MANAGER)
    place = await loc.add_location(
        flow,
        operator,
        LocationIn(
            name="Mill Lane underpass", address="Mill Lane, Anytown", lat=51.5, lon=-0.12,
            geofence_radius_m=120, notes="Column 14",
        ),
    )  # fmt: skip
    submitted = await flow.create(operator, deployment_request(place.id, unit="cam-01"))
    await flow.submit(operator, submitted.id)
    approved = await flow.create(operator, deployment_request(place.id, unit="cam-03"))
    await flow.submit(operator, approved.id)
    await flow.approve(manager, approved.id, ApproveRequest())
    draft = await flow.create(operator, deployment_request(place.id, unit="cam-02"))
    return Ids(
        {
            "unit_id": ("cam-01",),
            "callout_id": (str(callout.id),),
            "deployment_id": (submitted.id, approved.id),
            "location_id": (str(place.id),),
            "username": ("fixer1",),
        },
        {
            # The steps of the PIA form are a draft's.
            "/deployments/{deployment_id}/steps/{key}": {
                "deployment_id": (draft.id,),
                "key": (*(step.key for step in STEPS), "review"),
            },
        },
    )


def page_routes(site: Site) -> list[Any]:
    """The app's GET routes that answer HTML as pages (`PageRoute`, `HTMLResponse`),
    included routers' too, by path (a fragment one of them re-fetches is found out when
    it is opened: it has no `main`)."""
    found = []
    for route in iter_route_contexts(site.app.routes):
        original = route.original_route
        kind = getattr(original, "response_class", None)
        html = isinstance(kind, type) and issubclass(kind, HTMLResponse)
        if isinstance(original, PageRoute) and html and "GET" in (route.methods or ()):
            found.append(route)
    return sorted(found, key=lambda r: r.path)


def slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "start"


async def test_every_page_for_every_role_on_a_desktop_and_a_phone(browser: Any, site: Site) -> None:
    ids = await seed(site, browser)
    shutil.rmtree(SCREENSHOTS / "pages", ignore_errors=True)  # this run's pages only
    routes = page_routes(site)
    assert len(routes) >= 15, [r.path for r in routes]  # the enumeration found the pages
    problems: list[str] = []
    checked: list[str] = []
    not_pages: set[str] = set()
    plan: list[tuple[Role | None, Any, str]] = []
    for route in routes:
        paths = ids.paths(route.path)
        if paths is None and route.path.startswith(CASE_PAGES):
            continue  # see CASE_PAGES
        if paths is None:
            problems.append(f"{route.path}: no id for its parameters; add one to seed()")
            continue
        allowed = guard_roles(route.dependant)
        for role in allowed if allowed is not None else (None,):
            plan.extend((role, route, path) for path in paths)

    for role in (*AS, None):
        if role is None:
            context = await browser.new_context()
            page = await context.new_page()
            page.set_default_timeout(10_000)
        else:
            page = await sign_in(browser, site, AS[role])
        await preload(page.context)
        who = role.value if role is not None else "signed-out"
        for width_name, (width, height) in WIDTHS.items():
            await page.set_viewport_size({"width": width, "height": height})
            for _, route, path in (p for p in plan if p[0] == role):
                where = f"{path} as {who} at {width} px"
                response = await page.goto(f"{site.base_url}{path}")
                if response is None or response.status != 200:
                    status = None if response is None else response.status
                    problems.append(f"{where}: answered {status}")
                    continue
                kind = response.headers.get("content-type", "")
                if not kind.startswith("text/html") or await page.locator("main").count() == 0:
                    not_pages.add(route.path)  # a fragment, a picture, JSON: not a page
                    continue
                await page.wait_for_load_state("load")
                checked.append(where)
                wide = await page.evaluate(OVERFLOW)
                if wide:
                    problems.append(f"{where}: scrolls sideways; widest: {', '.join(wide)}")
                if route.path not in CODE_PAGES:
                    text = await page.locator("body").inner_text()
                    for pattern, what in RAW:
                        found = pattern.search(text)
                        if found:
                            start = max(0, found.start() - 30)
                            context_text = text[start : found.end() + 30].replace("\n", " ")
                            problems.append(f"{where}: shows {what}: “…{context_text}…”")
                for problem in await axe_problems(page):
                    problems.append(f"{where}: {problem}")
                shots = SCREENSHOTS / "pages" / width_name
                shots.mkdir(parents=True, exist_ok=True)
                name = shots / f"{who}-{slug(path)}.png"
                try:
                    await page.screenshot(path=str(name), full_page=True, timeout=30_000)
                except PlaywrightError as exc:
                    problems.append(f"{where}: no screenshot: {exc.message.splitlines()[0]}")
        await page.context.close()

    print(f"checked {len(checked)} page views; not pages: {sorted(not_pages)}")
    assert len(checked) >= 2 * len(AS) * 3, checked  # every role saw pages at both widths
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
