"""The fleet page at more units than fit on one page, in a real browser over a real
controller: a page of units at a time with what needs attention first, page links and a
search that keep the filters, and a refresh that replaces only the row that changed (the
other rows stay the same elements). Checked with axe-core at 1366 px and at 390 px."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from controller.store.base import utcnow
from controller.store.fleet import Unit, UnitStatus
from tests.controller.conftest import eventually
from tests.controller.pages_harness import CONTRACTOR, Site, UnitOnBroker, shot, sign_in
from tests.harness.axe import assert_accessible

EXTRA = 130
SIDEWAYS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


async def seed(site: Site) -> None:
    """130 more healthy units, heard from a moment ago (within the offline timeout)."""
    now = utcnow()
    async with site.db.session() as s:
        for n in range(1, EXTRA + 1):
            unit_id = f"zz-{n:03d}"
            s.add(
                Unit(
                    unit_id=unit_id,
                    site=f"Estate {n % 7}",
                    contractor=CONTRACTOR,
                    source="provisioning",
                    registered_at=now,
                )
            )
            s.add(
                UnitStatus(
                    unit_id=unit_id, online=True, online_reason="", last_seen_at=now,
                    recording=True, gate_open=True, on_battery=False, reported_faults=[],
                    storage_total_bytes=64 * 10**9, storage_free_bytes=40 * 10**9,
                    last_pass_at=now - timedelta(hours=1),
                )
            )  # fmt: skip
        await s.commit()


async def test_the_fleet_page_at_scale_pages_and_refreshes_only_what_changed(
    browser: Any, site: Site
) -> None:
    await seed(site)
    async with UnitOnBroker(site.broker, "cam-01") as cam1:
        await cam1.heartbeat(recording=True, gate_open=True)
        await cam1.power(on_battery=False, charge=100)
        await cam1.report()
        page = await sign_in(browser, site, "manager1")
        await page.goto(f"{site.base_url}/fleet")
        rows = page.locator("#fleet-table tbody tr[data-unit]")
        cam1_row = page.locator("#fleet-table tr[data-unit='cam-01'][data-health='ok']")
        await cam1_row.wait_for()
        total = EXTRA + 3
        assert await rows.count() == 50
        caption = page.locator("#fleet-table caption")
        assert (await caption.inner_text()).startswith(f"Units 1 to 50 of {total}")
        # What needs attention first: the two units never heard from lead the list.
        units = [await r.get_attribute("data-unit") for r in await rows.all()]
        assert units[:3] == ["cam-02", "cam-03", "cam-01"]
        for width in (1366, 390):
            await page.set_viewport_size({"width": width, "height": 900})
            await assert_accessible(page, f"fleet page at {width} px")
            assert await page.evaluate(SIDEWAYS) <= 0, f"the fleet page scrolls at {width} px"
            await shot(page, f"fleet-paged-{width}")
        await page.set_viewport_size({"width": 1366, "height": 900})

        # The refresh: only cam-01's row is sent again and replaced when it changes.
        await page.evaluate(
            "document.querySelectorAll('#fleet-table tbody tr').forEach(r => r.marked = true)"
        )
        answers: list[dict[str, Any]] = []

        async def keep(response: Any) -> None:
            if "/fleet/changes" in response.url and response.ok:
                answers.append(json.loads(await response.text()))

        page.on("response", keep)
        await cam1.power(on_battery=True, charge=71)
        moved = page.locator("#fleet-table tr[data-unit='cam-01'][data-health='degraded']")
        await moved.wait_for(timeout=15_000)
        seen = len(answers)
        assert "on battery" in await moved.locator("td[data-col=power]").inner_text()
        unmarked = await page.evaluate(
            "[...document.querySelectorAll('#fleet-table tbody tr')]"
            ".filter(r => !r.marked).map(r => r.dataset.unit)"
        )
        assert unmarked == ["cam-01"], "only the row that changed is replaced"
        assert await rows.count() == 50
        sent = [a for a in answers if a["rows"]]
        assert sent and all(list(a["rows"]) == ["cam-01"] for a in sent)
        assert answers[-1]["counts"]["degraded"] == 1
        units = [await r.get_attribute("data-unit") for r in await rows.all()]
        assert units[:3] == ["cam-02", "cam-03", "cam-01"]  # degraded comes before ok
        # The next refresh, with nothing changed, sends no row at all.
        quiet = await eventually(lambda: [a for a in answers[seen:] if not a["rows"]], within=12)
        print(f"refresh with nothing changed: {len(json.dumps(quiet[-1]))} bytes of JSON")

        # The page links and the search keep the filters.
        await page.get_by_role("link", name="Next page").click()
        await page.wait_for_url("**/fleet?page=2")
        assert (await caption.inner_text()).startswith(f"Units 51 to 100 of {total}")
        await page.get_by_label("Unit or site").fill("zz-1")
        await page.get_by_label("Health", exact=True).select_option("ok")
        await page.get_by_role("button", name="Apply filters").click()
        await page.wait_for_url("**/fleet?q=zz-1&health=ok**")
        assert (await caption.inner_text()).startswith("Units 1 to 31 of 31")
        await page.get_by_role("link", name="degraded units").click()
        await page.wait_for_url("**/fleet?q=zz-1&health=degraded")
        assert await page.locator("#fleet-table tbody tr[data-empty]").count() == 1
