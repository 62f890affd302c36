"""X-Forwarded-For and -Proto are believed only from `http.trusted_proxies`: for the login
limit per address and for the audit log, over HTTP into the app (SQLite and PostgreSQL),
and through the controller's own uvicorn server as `cctv-controller serve` runs it."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from ipaddress import ip_network
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select

from controller.accounts import Accounts, AuthSettings
from controller.api.app import create_app
from controller.api.proxies import client_address
from controller.config import ControllerSettings
from controller.service import ControllerService
from controller.store.audit import AuditEntry
from controller.store.base import Database
from tests.harness import MosquittoBroker, free_port

PASSWORD = "correct horse battery staple"
LIMITS = AuthSettings(
    argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1, max_failures_per_client=3
)
PROXY = "10.0.0.5"
_names = itertools.count()


async def _app(db: Database, trusted: list[str]) -> FastAPI:
    accounts = Accounts(db, LIMITS)
    await accounts.add_user("mia", "manager", PASSWORD, contractor=None, actor="test")
    settings = ControllerSettings(database_url=db.url, http={"trusted_proxies": trusted})
    return create_app(settings, db, auth=LIMITS)


@asynccontextmanager
async def _from(app: FastAPI, peer: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def _fail(client: httpx.AsyncClient, forwarded_for: str | None = None) -> int:
    """A failed login for a new unknown username (so only the limit per address counts)."""
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    username = f"nobody{next(_names)}"
    response = await client.post(
        "/api/login", json={"username": username, "password": "x" * 12}, headers=headers
    )
    return response.status_code


async def _audited_clients(db: Database) -> list[str]:
    async with db.session() as s:
        rows = (await s.execute(select(AuditEntry).order_by(AuditEntry.seq))).scalars()
        return [json.loads(r.details_json)["client"] for r in rows if r.action.startswith("auth.")]


async def test_without_trusted_proxies_the_header_is_ignored(db: Database) -> None:
    app = await _app(db, [])
    async with _from(app, PROXY) as client:
        # a new forged address every time does not escape the limit per address
        statuses = [await _fail(client, f"203.0.113.{n}") for n in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert set(await _audited_clients(db)) == {PROXY}


async def test_from_a_trusted_proxy_the_forwarded_address_counts(db: Database) -> None:
    app = await _app(db, [PROXY])
    async with _from(app, PROXY) as proxy:
        assert [await _fail(proxy, "203.0.113.1") for _ in range(4)] == [401, 401, 401, 429]
        assert await _fail(proxy, "203.0.113.2") == 401  # another client: its own count
        # what the client wrote itself is left of what the proxy appended: not believed
        assert await _fail(proxy, "203.0.113.1, 203.0.113.3") == 401
        assert await _fail(proxy, "198.51.100.4, 10.0.0.5") == 401  # proxy chain
        assert await _fail(proxy, "not-an-address") == 401  # junk: the proxy itself
    async with _from(app, "10.0.0.6") as untrusted:
        assert await _fail(untrusted, "203.0.113.9") == 401
    assert await _audited_clients(db) == [
        *["203.0.113.1"] * 4,
        "203.0.113.2",
        "203.0.113.3",
        "198.51.100.4",
        PROXY,
        "10.0.0.6",
    ]


async def test_forwarded_https_marks_cookies_secure_only_from_a_trusted_proxy(
    db: Database,
) -> None:
    app = await _app(db, [PROXY])
    credentials = {"username": "mia", "password": PASSWORD}
    headers = {"X-Forwarded-Proto": "https"}
    for peer, secure in ((PROXY, True), ("10.0.0.6", False)):
        async with _from(app, peer) as client:
            response = await client.post("/api/login", json=credentials, headers=headers)
        assert response.status_code == 200
        session = next(c for c in response.headers.get_list("set-cookie") if "cctv_session" in c)
        assert ("Secure" in session) is secure, peer


def test_client_address_walks_the_chain_from_the_right() -> None:
    trusted = [ip_network("10.0.0.0/24"), ip_network("::1/128")]
    assert client_address("10.0.0.5", ["203.0.113.7"], trusted) == "203.0.113.7"
    assert client_address("10.0.0.5", ["6.6.6.6, 203.0.113.7, 10.0.0.9"], trusted) == (
        "203.0.113.7"
    )
    assert client_address("10.0.0.5", ["6.6.6.6", "203.0.113.7"], trusted) == "203.0.113.7"
    assert client_address("::1", ["[2001:db8::1]:443"], trusted) == "2001:db8::1"
    assert client_address("10.0.0.5", ["203.0.113.7:5555"], trusted) == "203.0.113.7"
    assert client_address("10.0.0.5", ["x\x00y"], trusted) == "10.0.0.5"
    assert client_address("10.0.0.5", ["6.6.6.6, junk, 10.0.0.9"], trusted) == "10.0.0.9"
    assert client_address("10.0.0.5", [], trusted) == "10.0.0.5"
    assert client_address("192.0.2.1", ["203.0.113.7"], trusted) == "192.0.2.1"
    assert client_address("192.0.2.1", ["203.0.113.7"], []) == "192.0.2.1"


# ------------------------------------------- the controller's own server, as deployed


@asynccontextmanager
async def _serving(
    settings: ControllerSettings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    """The controller with its HTTP server, as `cctv-controller serve` runs it; stopped
    the way a signal stops it (uvicorn exits, then the service stops)."""
    servers: list[uvicorn.Server] = []

    class KeptServer(uvicorn.Server):  # the service's own server, kept to stop it cleanly
        def __init__(self, config: uvicorn.Config) -> None:
            super().__init__(config)
            servers.append(self)

    monkeypatch.setattr(uvicorn, "Server", KeptServer)
    service = ControllerService(settings, db=db)
    task = asyncio.create_task(service.run(), name="test-controller-http")
    base = f"http://127.0.0.1:{settings.http.port}"
    try:
        async with asyncio.timeout(20), httpx.AsyncClient() as probe:
            while True:
                if task.done():
                    task.result()
                try:
                    if (await probe.get(f"{base}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        yield base
    finally:
        for server in servers:
            server.should_exit = True
        if not servers:
            service.stop()
        async with asyncio.timeout(15):
            await task


@pytest.mark.parametrize("trusted", [[], ["127.0.0.1"]], ids=["default", "loopback-proxy"])
async def test_the_served_controller_believes_only_configured_proxies(
    trusted: list[str],
    broker: MosquittoBroker,
    controller_settings: Callable[..., ControllerSettings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'controller.db'}"
    settings = controller_settings(
        broker, database_url=url, http={"port": free_port(), "trusted_proxies": trusted}
    )
    async with Database(url) as db:
        await db.migrate()
        async with (
            _serving(settings, db, monkeypatch) as base,
            httpx.AsyncClient(base_url=base) as client,
        ):
            response = await client.post(
                "/api/login",
                json={"username": "nobody", "password": "x" * 12},
                headers={"X-Forwarded-For": "203.0.113.50"},
            )
            assert response.status_code == 401
        clients = await _audited_clients(db)
    assert clients == (["127.0.0.1"] if not trusted else ["203.0.113.50"])
