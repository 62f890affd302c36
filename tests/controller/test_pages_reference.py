"""The camera's real view in the browser (Debian's Chromium via Playwright), end to end: the
real edge agent plays the sample clip through the real broker; an operator asks it for a
reference picture from the mask editor, which shows that picture (decoded from the page and
matched against the clip's frames); the PIA records the picture's SHA-256; the manager sees
the masks over it and approves; the mask drawn on it is black in the footage the unit then
records, once decrypted; a contractor is refused the picture and offered no link to it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from controller.evidence.decrypt import decrypt_segments
from edge_agent.recorder.index import SegmentIndex
from protocol.messages import Heartbeat
from protocol.signing import load_private_key
from tests.controller.pages_harness import SCREENSHOTS, Site, shot, sign_in
from tests.controller.test_pages import _fill_need, _fill_privacy, _fill_rest, _start_request
from tests.edge_agent.test_agent_service import watch
from tests.harness.agent import AgentProcess
from tests.harness.axe import assert_accessible
from tests.harness.fleet import FLEET_PASSPHRASE
from tests.harness.footage import closest_clip_frame, require_sample_clip

pytestmark = pytest.mark.slow

#: The mask `_fill_privacy` draws (fractions of the picture): the windows of no. 12.
MASK_X, MASK_Y = (0.70, 0.95), (0.10, 0.40)
#: Pixels kept clear of the mask's edges when checking it (the encoder smears an edge).
MARGIN = 8
#: Largest mean difference (grey levels, 0-255) between the picture the page shows and the
#: closest frame of the clip: JPEG and scaling cost about 1; another picture costs over 20.
SAME_PICTURE = 3.0
#: How far the page scrolls sideways (> 0: it does).
SIDEWAYS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


async def shown_picture(page: Any) -> bytes:
    """The reference picture as the page shows it: its pixels, drawn from the <img> onto a
    canvas in the page and read back as PNG."""
    data_url = await page.evaluate(
        """() => {
            const img = document.querySelector(".mask-editor img[data-reference-picture]");
            const canvas = document.createElement("canvas");
            canvas.width = img.naturalWidth;
            canvas.height = img.naturalHeight;
            canvas.getContext("2d").drawImage(img, 0, 0);
            return canvas.toDataURL("image/png");
        }"""
    )
    assert data_url.startswith("data:image/png;base64,")
    return base64.b64decode(data_url.split(",", 1)[1])


def masked_frames(agent: AgentProcess, site: Site, out: Path) -> int:
    """Decrypt the unit's footage (as a data controller would) and check every picture is
    black under the mask and not elsewhere; the number of pictures checked."""
    files = agent.segments()
    assert files, agent.log()[-3000:]
    key = load_private_key((agent.dir / "unit-signing.key").read_bytes())
    index = SegmentIndex(agent.data_dir / "index.sqlite", unit_id="cam-02", signing_key=key)
    try:
        manifest = index.export_manifest()
    finally:
        index.close()
    report = decrypt_segments(
        files,
        manifest=manifest,
        unit_key=site.fleet.unit_signing_public_key("cam-02"),
        evidence_key=site.fleet.evidence_private_key(FLEET_PASSPHRASE),
        out_dir=out,
    )
    assert not report.tampering, report
    pictures = 0
    for result in report.results:
        if not result.output:
            continue
        with av.open(str(out / result.output)) as container:
            for frame in container.decode(video=0):
                grey = frame.to_ndarray(format="gray")
                h, w = grey.shape
                inside = grey[
                    int(MASK_Y[0] * h) + MARGIN : int(MASK_Y[1] * h) - MARGIN,
                    int(MASK_X[0] * w) + MARGIN : int(MASK_X[1] * w) - MARGIN,
                ]
                outside = grey[:, : int(0.6 * w)]
                assert inside.max() <= 24, "black under the mask drawn on the picture"
                assert float(np.mean(outside)) > 60, "the rest of the view is not black"
                pictures += 1
    return pictures


@pytest.mark.dates
async def test_masks_drawn_on_the_units_picture_are_black_in_its_footage(
    browser: Any, site: Site, tmp_path: Path
) -> None:
    require_sample_clip()
    agent = AgentProcess(site.fleet, "cam-02", site.broker, tmp_path / "agent")  # the clip
    agent.start()
    try:
        async with watch(site.broker) as w:
            await w.wait(lambda: w.of(Heartbeat), 30, "the agent's first heartbeat")
            now = datetime.now(UTC)
            operator = await sign_in(browser, site, "operator1")
            await operator.goto(f"{site.base_url}/locations/new")
            await operator.locator("#f-loc-name").fill("Market Street car park")
            await operator.locator("#f-loc-address").fill("Market Street, north entrance")
            await operator.locator("#f-loc-lat").fill("51.4545")
            await operator.locator("#f-loc-lon").fill("-2.5879")
            await operator.get_by_role("button", name="Add the location").click()
            await operator.get_by_role("heading", name="Market Street car park").wait_for()

            # The request's privacy step: the mask editor over the unit's view, no picture
            # yet, then the one asked for.
            await operator.goto(f"{site.base_url}/deployments/new")
            deployment_id = await _start_request(operator, now)
            await _fill_need(operator, now)
            editor = operator.locator(".mask-editor")
            caption = editor.get_by_test_id("reference-caption")
            await caption.filter(has_text="No picture from cam-02 yet").wait_for()
            asked = time.monotonic()
            await editor.get_by_role("button", name="Ask cam-02 for a new picture").click()
            await caption.filter(has_text="before privacy masks").wait_for(timeout=20_000)
            print(f"asked -> picture in the mask editor: {time.monotonic() - asked:.2f} s")
            sha = await operator.locator("#f-d-pia-reference-frame").input_value()
            assert len(sha) == 64 and sha in await caption.inner_text()
            picture = editor.locator("img[data-reference-picture]")
            assert (await picture.get_attribute("src") or "").endswith(f"/reference-frames/{sha}")
            await operator.wait_for_function(
                "() => document.querySelector('.mask-editor img').naturalWidth > 0"
            )
            assert await picture.evaluate("img => img.naturalWidth") == 1280
            index, difference = closest_clip_frame(await shown_picture(operator))
            print(f"page's picture: closest clip frame {index}, {difference:.2f} grey levels off")
            assert difference < SAME_PICTURE, "the editor shows the camera's own picture"
            response = await operator.request.get(f"{site.base_url}/units/cam-02/reference-frame")
            assert hashlib.sha256(await response.body()).hexdigest() == sha
            await assert_accessible(operator, "the mask editor", within=".mask-editor")

            # The unit's page shows the same picture to the control room, on a phone too.
            unit_page = await operator.context.new_page()
            await unit_page.goto(f"{site.base_url}/units/cam-02")
            panel = unit_page.get_by_test_id("reference")
            assert sha in await panel.get_by_test_id("reference-caption").inner_text()
            shown = panel.locator("img[data-reference-picture]")
            assert (await shown.get_attribute("src") or "").endswith(f"/reference-frames/{sha}")
            for width in (1366, 390):
                await unit_page.set_viewport_size({"width": width, "height": 900})
                await assert_accessible(
                    unit_page,
                    f"unit page's picture at {width} px",
                    within="[data-testid=reference]",
                )
                wide = await unit_page.evaluate(SIDEWAYS)
                assert wide <= 0, f"the unit page scrolls sideways at {width} px"
                await panel.screenshot(
                    path=str(SCREENSHOTS / f"unit-reference-picture-{width}.png")
                )
            await unit_page.close()

            await _fill_privacy(operator, now)  # the mask over the windows, on the picture
            assert await operator.locator("#f-d-pia-reference-frame").input_value() == sha
            await shot(operator, "deployment-request-masks-on-picture")
            await _fill_rest(operator, now)
            checked = operator.get_by_test_id("masks-frame")
            assert sha in await checked.inner_text(), "the check of the answers names it"
            await operator.get_by_role("button", name="Submit for a manager's decision").click()
            status = operator.get_by_test_id("deployment-status")
            await status.wait_for()
            assert await status.inner_text() == "submitted"

            # The manager decides on the masks over that picture, its SHA-256 in view.
            manager = await sign_in(browser, site, "manager1")
            await manager.goto(f"{site.base_url}/deployments/{deployment_id}")
            drawn = manager.locator("#pia").get_by_test_id("masks-picture")
            assert (await drawn.get_attribute("href") or "").endswith(f"/reference-frames/{sha}")
            assert sha in await manager.locator("#pia").get_by_test_id("masks-frame").inner_text()
            assert sha in await manager.get_by_test_id("decision-frame").inner_text()
            await shot(manager, "deployment-masks-on-picture")
            for part in ("pia-masks", "decision-frame"):
                await assert_accessible(manager, part, within=f"[data-testid={part}]")
            await manager.get_by_label("I have read the assessment").check()
            await manager.get_by_role("button", name="Approve and authorise the unit").click()
            await manager.get_by_role("status").filter(has_text="approved").wait_for()
            await w.wait(lambda: w.events("recording_started"), 15, "masked recording")
            await asyncio.sleep(12)  # two sealed segments of 5 s
            assert await asyncio.to_thread(agent.terminate) == 0

        pictures = await asyncio.to_thread(masked_frames, agent, site, tmp_path / "decrypted")
        print(f"decrypted footage: {pictures} pictures black under the mask")
        assert pictures > 100

        # A contractor: refused the picture, and offered no way to it.
        fixer = await sign_in(browser, site, "fixer1")
        for path in ("/units/cam-02/reference-frame", f"/units/cam-02/reference-frames/{sha}"):
            refused = await fixer.goto(f"{site.base_url}{path}")
            assert refused is not None and refused.status == 403, path
        await fixer.goto(f"{site.base_url}/units/cam-02")
        assert await fixer.get_by_role("heading", name="Reference picture").count() == 0
        assert await fixer.locator("img[data-reference-picture]").count() == 0
        asked_by_api = await fixer.request.post(
            f"{site.base_url}/api/units/cam-02/reference-snapshots",
            headers={
                "X-CSRF-Token": await fixer.locator("input[name=csrf_token]").first.input_value()
            },
        )
        assert asked_by_api.status == 403
    finally:
        agent.kill()
