"""Controller fixtures.

- `db`: a migrated `Database`, parametrized over a SQLite file AND a PostgreSQL database
  created for the test on 127.0.0.1:5432 (user postgres, trust auth) and dropped after.
  PostgreSQL unreachable: the postgres case skips locally and FAILS when env CI is set.
- `controller_settings(broker, **overrides)`: settings for a controller on a test broker.
- `running_controller(settings, db)`: a ControllerService running in the background
  (ingest, periodic jobs, notifier; no HTTP), connected and subscribed when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from controller.config import ControllerSettings
from controller.service import ControllerService
from controller.store import Database
from protocol.messages import (
    CheckResult,
    Envelope,
    Event,
    Heartbeat,
    SelfTestReport,
    UnitState,
    channel_for,
    encode,
    utcnow,
)
from protocol.topics import Topics
from tests.harness import MosquittoBroker
from tests.harness.binaries import missing

PG_DSN = os.environ.get("CCTV_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _pg_admin() -> Any:
    import asyncpg

    try:
        async with asyncio.timeout(5):
            return await asyncpg.connect(PG_DSN)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL is not reachable at {PG_DSN}: {exc}"
        missing(message)


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database; yields its SQLAlchemy URL; dropped afterwards."""
    name = f"cctv_test_{uuid.uuid4().hex[:12]}"
    admin = await _pg_admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin = await _pg_admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'controller.db'}")
        await database.migrate()
        yield database
        await database.dispose()
        return
    async with postgres_database() as url:
        database = Database(url)
        await database.migrate()
        yield database
        await database.dispose()


@pytest.fixture
def controller_settings() -> Callable[..., ControllerSettings]:
    def make(broker: MosquittoBroker, **overrides: Any) -> ControllerSettings:
        values: dict[str, Any] = {
            "database_url": "sqlite+aiosqlite:///unused.db",
            "fleet_dir": broker.fleet.root,
            "broker": {
                "host": broker.host,
                "port": broker.port,
                "topic_root": broker.fleet.topics.root,
            },
            "sweep_interval_s": 0.2,
        }
        values.update(overrides)
        return ControllerSettings(**values).resolved()

    return make


@contextlib.asynccontextmanager
async def running_controller(
    settings: ControllerSettings, db: Database
) -> AsyncIterator[ControllerService]:
    service = ControllerService(settings, db=db, http=False)
    task = asyncio.create_task(service.run(), name="test-controller")
    try:
        async with asyncio.timeout(20):
            # Started: the database is migrated and the inventory imported, not only linked.
            while not (service.started.is_set() and service.link.connected.is_set()):
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        yield service
    finally:
        service.stop()
        async with asyncio.timeout(10):
            await task


async def eventually(probe: Callable[[], Any], *, within: float = 5.0, every: float = 0.05) -> Any:
    """Await `probe()` until it returns something truthy; fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(every)


class UnitVoice:
    """Builds a unit's protocol messages with its own seq counter (the unit's view)."""

    def __init__(self, unit_id: str, *, seq: int = 0, boot_id: str | None = None) -> None:
        self.unit_id = unit_id
        self.seq = seq
        self.boot_id = boot_id or uuid.uuid4().hex[:16]

    def make(self, cls: type[Envelope], *, seq: int | None = None, **fields: Any) -> Envelope:
        if seq is None:
            self.seq += 1
            seq = self.seq
        return cls(unit_id=self.unit_id, seq=seq, sent_at=utcnow(), boot_id=self.boot_id, **fields)

    def state(self, online: bool = True, **fields: Any) -> Envelope:
        return self.make(UnitState, online=online, agent_version="test", **fields)

    def heartbeat(self, **fields: Any) -> Envelope:
        values: dict[str, Any] = {"recording": True, "gate_open": True}
        values.update(fields)
        return self.make(Heartbeat, **values)

    def event(self, body: Any, **fields: Any) -> Envelope:
        return self.make(Event, at=utcnow(), event=body, **fields)

    def selftest(self, checks: list[CheckResult], **fields: Any) -> Envelope:
        now = utcnow()
        verdict = "fail" if any(c.verdict == "fail" for c in checks) else "pass"
        values: dict[str, Any] = {
            "report_id": uuid.uuid4().hex[:12],
            "trigger": "command",
            "started_at": now,
            "finished_at": now,
            "verdict": verdict,
            "checks": checks,
        }
        values.update(fields)
        return self.make(SelfTestReport, **values)


async def send(client: aiomqtt.Client, topics: Topics, message: Envelope, **kw: Any) -> None:
    await client.publish(
        topics.unit(message.unit_id, channel_for(message)), encode(message), qos=1, **kw
    )


# The pages' fixtures (a browser, a controller served over HTTP with a user of each role),
# for every page test. Imported last: the module uses `running_controller` above.
from tests.controller.pages_harness import browser, site  # noqa: E402, F401
