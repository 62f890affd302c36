"""Guessing is throttled without handing out a lockout: device cookies (OWASP), over HTTP
from several client addresses against the app on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from controller.accounts import Accounts, AuthSettings, device_cookies
from controller.api.app import create_app
from controller.config import ControllerSettings
from controller.store.audit import AuditEntry
from controller.store.base import Database

PASSWORD = "correct horse battery staple"
WRONG = "not the password at all"
LIMITS = AuthSettings(
    argon2_time_cost=1,
    argon2_memory_kib=1024,
    argon2_parallelism=1,
    max_failures_per_user=3,
    max_failures_per_device=3,
    max_failures_per_client=20,
)


@pytest.fixture
async def app(db: Database) -> FastAPI:
    accounts = Accounts(db, LIMITS)
    await accounts.add_user("mia", "manager", PASSWORD, contractor=None, actor="test")
    await accounts.add_user(
        "carl", "contractor", PASSWORD, contractor="Acme Maintenance Ltd", actor="test"
    )
    return create_app(ControllerSettings(database_url=db.url), db, auth=LIMITS)


@asynccontextmanager
async def browser(app: FastAPI, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser (its own cookie jar) at `address`."""
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def _login(client: httpx.AsyncClient, username: str, password: str) -> int:
    response = await client.post("/api/login", json={"username": username, "password": password})
    return response.status_code


async def test_a_guesser_locks_out_only_browsers_the_user_never_signed_in_on(
    app: FastAPI, db: Database
) -> None:
    async with browser(app, "192.0.2.10") as mine:
        assert await _login(mine, "mia", PASSWORD) == 200
        cookie = mine.cookies[device_cookies.cookie_name("mia")]
        # someone guesses mia's password from three addresses
        statuses = []
        for n in range(3):
            async with browser(app, f"198.51.100.{n}") as guesser:
                statuses += [await _login(guesser, "mia", WRONG) for _ in range(2)]
        assert statuses == [401, 401, 401, 429, 429, 429]
        # ... and stays throttled, even with the right password from a new address
        async with browser(app, "198.51.100.99") as guesser:
            assert await _login(guesser, "mia", PASSWORD) == 429
        # the cost of the scheme: a browser mia never used waits too
        async with browser(app, "192.0.2.10") as new_browser:
            assert await _login(new_browser, "mia", PASSWORD) == 429
            # a forged device cookie does not help; nor does one made for another user
            new_browser.cookies.set(device_cookies.cookie_name("mia"), cookie[:-4] + "AAAA")
            assert await _login(new_browser, "mia", PASSWORD) == 429
        async with browser(app, "192.0.2.11") as carls:
            assert await _login(carls, "carl", PASSWORD) == 200
            assert await _login(carls, "mia", PASSWORD) == 429
        # mia, on her own browser, signs in
        assert await _login(mine, "mia", PASSWORD) == 200
        assert (await mine.get("/api/me")).json()["username"] == "mia"
        assert mine.cookies[device_cookies.cookie_name("mia")] != cookie  # a new one each time
    async with db.session() as s:
        rows = (await s.execute(select(AuditEntry).order_by(AuditEntry.seq))).scalars()
        mias = [(r.action, json.loads(r.details_json)) for r in rows if r.subject == "user:mia"]
    logins = [d["browser"] for action, d in mias if action == "auth.login"]
    assert logins == ["unknown", "known"]
    refusals = {d["browser"] for action, d in mias if action != "auth.login" and "browser" in d}
    assert refusals == {"unknown"}


async def test_a_known_browser_has_its_own_limit(app: FastAPI) -> None:
    async with browser(app, "192.0.2.10") as mine, browser(app, "192.0.2.20") as laptop:
        assert await _login(mine, "mia", PASSWORD) == 200
        assert await _login(laptop, "mia", PASSWORD) == 200
        assert [await _login(mine, "mia", WRONG) for _ in range(4)] == [401, 401, 401, 429]
        assert await _login(mine, "mia", PASSWORD) == 429
        # mia's other known browser, and browsers she never used, are not affected
        assert await _login(laptop, "mia", PASSWORD) == 200
        async with browser(app, "192.0.2.30") as new_browser:
            assert await _login(new_browser, "mia", PASSWORD) == 200


async def test_the_limit_per_address_still_holds_for_unknown_browsers(app: FastAPI) -> None:
    async with browser(app, "198.51.100.7") as guesser:
        statuses = [await _login(guesser, f"user{n}", WRONG) for n in range(21)]
        assert statuses == [401] * 20 + [429]
        assert await _login(guesser, "carl", PASSWORD) == 429
    async with browser(app, "198.51.100.8") as elsewhere:
        assert await _login(elsewhere, "carl", PASSWORD) == 200


def test_device_cookies_are_bound_to_the_user_and_the_key() -> None:
    key, other_key = b"k" * 32, b"o" * 32
    value = device_cookies.issue(key, "mia")
    device = device_cookies.verify(key, "mia", value)
    assert device is not None and len(device) == 32 and device not in value
    assert device_cookies.verify(key, "carl", value) is None
    assert device_cookies.verify(other_key, "mia", value) is None
    for junk in (None, "", ".", value + "x", "x" + value, value.replace(".", ""), "\x00." * 3):
        assert device_cookies.verify(key, "mia", junk) is None
    assert device_cookies.issue(key, "mia") != value
    assert device_cookies.cookie_name("mia") != device_cookies.cookie_name("carl")
    assert "mia" not in device_cookies.cookie_name("mia")
