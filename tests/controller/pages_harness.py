"""The control room's pages in a real browser, for the pages' tests: Debian's headless
Chromium via Playwright (`browser`), a real controller served by uvicorn over a real
Mosquitto and SQLite with a user of each role (`site`), units played on the broker with
their own certificates (`UnitOnBroker`), signing in (`sign_in`) and screenshots (`shot`,
to test-output/screenshots/).

The fixtures are registered for the controller's tests in `tests/controller/conftest.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from controller.accounts import AuthSettings
from controller.api.app import create_app
from controller.config import ControllerSettings
from controller.service import ControllerService
from controller.store import Database
from controller.store.fleet import Callout
from protocol.faults import FaultCode
from protocol.messages import (
    CheckResult,
    Command,
    Event,
    FaultRaised,
    Heartbeat,
    PowerStatus,
    SelfTestNow,
    SelfTestReport,
    StorageStatus,
    UnitState,
    decode,
    encode,
)
from protocol.signing import Verifier
from protocol.topics import Channel
from provisioning import Fleet
from tests.controller.conftest import running_controller
from tests.harness import MosquittoBroker, free_port, mqtt_client
from tests.harness.binaries import missing

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "CONTRACTOR",
    "FAST_AUTH",
    "PASSWORD",
    "SCREENSHOTS",
    "USERS",
    "Site",
    "UnitOnBroker",
    "browser",
    "browser_env",
    "shot",
    "sign_in",
    "site",
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
PASSWORD = "a long test password"
CONTRACTOR = "Test Maintenance Ltd"  # the contractor of every unit of the test fleet
#: Cheap Argon2 parameters: the tests sign in many times; the product's defaults are slow.
FAST_AUTH = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
USERS = {
    "manager1": ("manager", None),
    "operator1": ("operator", None),
    "auditor1": ("auditor", None),
    "fixer1": ("contractor", CONTRACTOR),
    "other1": ("contractor", "Other Contractor Ltd"),
    "dc1": ("data_controller", None),
}


def browser_env() -> dict[str, str]:
    """Chromium's environment. In the year-on run (tests/test_dates_year_on.py) Chromium
    is kept off libfaketime, whose preload stalls its zygote: the browser keeps real time,
    as a client with a wrong clock would, while the controller it talks to runs a year on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKETIME", "LD_PRELOAD"))}
    preload = [lib for lib in os.environ.get("LD_PRELOAD", "").split() if "faketime" not in lib]
    if preload:
        env["LD_PRELOAD"] = " ".join(preload)
    return env


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 - one stat, before any I/O runs
        message = f"{CHROMIUM} is not installed (Debian package chromium)"
        missing(message)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, env=browser_env()
        )
        try:
            yield browser
        finally:
            await browser.close()


class UnitOnBroker:
    """One unit on the broker, speaking with its own certificate: publishes telemetry
    with its own monotonic seq, and answers signed self-test commands with a report.

    `listen_as` a probe identity: only record the unit's commands and authorizations,
    beside the unit's real agent (the broker ties a session to its certificate, so the
    unit's own certificate would knock the agent off)."""

    def __init__(self, broker: MosquittoBroker, unit_id: str, *, listen_as: str = "") -> None:
        self.broker = broker
        self.unit_id = unit_id
        self.topics = broker.fleet.topics
        self.boot_id = uuid.uuid4().hex
        self.seq = 0
        self.listening_only = bool(listen_as)
        self.client = mqtt_client(broker, listen_as or unit_id)
        self.verifier = Verifier(
            broker.fleet.controller_signing_key().public_key(), unit_id=unit_id
        )
        self.commands: list[Command] = []
        self.authorizations: list[Any] = []
        self.selftest_verdict = "pass"
        self._task: asyncio.Task[None] | None = None

    def envelope(self, at: datetime | None = None) -> dict[str, Any]:
        self.seq += 1
        return {
            "unit_id": self.unit_id,
            "seq": self.seq,
            "sent_at": at or datetime.now(UTC),
            "boot_id": self.boot_id,
        }

    async def send(self, message: Any) -> None:
        topic = self.topics.unit(self.unit_id, message.channel)
        async with asyncio.timeout(5):
            await self.client.publish(topic, encode(message), qos=1)

    async def __aenter__(self) -> UnitOnBroker:
        await self.client.__aenter__()
        async with asyncio.timeout(5):
            await self.client.subscribe(self.topics.unit(self.unit_id, Channel.CMD), qos=1)
            await self.client.subscribe(self.topics.unit(self.unit_id, Channel.AUTHZ), qos=1)
        self._task = asyncio.create_task(self._listen(), name=f"unit-{self.unit_id}")
        if not self.listening_only:
            await self.send(UnitState(**self.envelope(), online=True, agent_version="test"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.__aexit__(None, None, None)

    async def _listen(self) -> None:
        async for message in self.client.messages:
            payload = message.payload
            assert isinstance(payload, bytes | bytearray)
            decoded = decode(payload)
            if isinstance(decoded, Command):
                body = self.verifier.command(decoded)  # refuses a forged or replayed one
                self.commands.append(decoded)
                if isinstance(body.action, SelfTestNow) and not self.listening_only:
                    await self.report(command_id=body.command_id)
            else:
                self.authorizations.append(decoded)

    async def heartbeat(self, **values: Any) -> None:
        fields: dict[str, Any] = {
            "recording": False,
            "gate_open": False,
            "gate_reason": "" if values.get("gate_open") else "no deployment authorization",
            "storage": StorageStatus(total_bytes=64_000_000_000, free_bytes=40_000_000_000),
        }
        fields.update(values)
        await self.send(Heartbeat(**self.envelope(), **fields))

    async def fault(self, code: FaultCode, check: str, detail: str) -> None:
        now = datetime.now(UTC)
        await self.send(
            Event(
                **self.envelope(),
                at=now,
                event=FaultRaised(code=code, check=check, detail=detail),
            )
        )

    async def report(self, *, command_id: str | None = None) -> None:
        now = datetime.now(UTC)
        verdict = self.selftest_verdict
        checks = [
            CheckResult(
                name="image_black", verdict=verdict, value=92.0, threshold=12.0, unit="lum"
            ),
            CheckResult(
                name="camera_signal", verdict="pass", value=25.0, threshold=10.0, unit="fps"
            ),
            CheckResult(name="storage", verdict="pass", value=62.5, threshold=10.0, unit="%"),
        ]
        await self.send(
            SelfTestReport(
                **self.envelope(),
                report_id=uuid.uuid4().hex[:16],
                trigger="command" if command_id else "schedule",
                command_id=command_id,
                started_at=now - timedelta(seconds=2),
                finished_at=now,
                verdict=verdict,
                checks=checks,
            )
        )

    async def power(self, *, on_battery: bool, charge: float, at: datetime | None = None) -> None:
        await self.send(
            PowerStatus(
                **self.envelope(at),
                source="battery" if on_battery else "mains",
                on_battery=on_battery,
                charge_pct=charge,
                runtime_s=charge * 36,
                ups_status="OB DISCHRG" if on_battery else "OL",
            )
        )


@dataclass
class Site:
    base_url: str
    db: Database
    service: ControllerService
    broker: MosquittoBroker
    fleet: Fleet
    app: FastAPI

    async def callouts(self, unit_id: str) -> list[Callout]:
        from sqlalchemy import select

        async with self.db.session() as session:
            result = await session.execute(select(Callout).where(Callout.unit_id == unit_id))
            return list(result.scalars())


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
            yield Site(f"http://127.0.0.1:{port}", db, service, broker, broker.fleet, app)
        finally:
            server.should_exit = True
            async with asyncio.timeout(10):
                await task
    await db.dispose()


async def sign_in(browser: Any, site: Site, username: str) -> Any:
    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await page.goto(f"{site.base_url}/login")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state("domcontentloaded")
    assert await page.get_by_test_id("username").inner_text() == username
    return page


async def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
