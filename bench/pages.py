"""Page benchmark at fleet scale (prints figures; not a test).

Starts its own Mosquitto (TLS + ACL) for a throwaway fleet and a controller in this
process (ingest, periodic jobs and the web pages and API over real HTTP, SQLite file),
registers an inventory of 10,000 units (sites, three contractors), drives them with the
simulator (`cctv-controller simulate`, a separate process: heartbeats every 30 s, power,
self-tests, now and then a fault), waits until every unit has been heard, and then, while
the simulator keeps sending, times and weighs what a control-room browser asks for:

    fleet page        GET /fleet                   (first page: what needs attention first)
    fleet refresh     GET /fleet/changes?have=...  (5 s after drawing the page, as
                                                    static/fleet.js asks every 5 s)
    /api/units        GET /api/units               (first page of the API, 100 units)
    KPI page          GET /kpis                    (the last 30 days)

each in wall time and bytes, and then the controller's CPU time per request (the wall
time also counts whatever else the machine runs). For comparison it also times the whole
fleet in one answer (`fleet_overview`, what the fleet page and /api/units sent before
they were paged) on the same database.

    .venv/bin/python bench/pages.py [--units 10000] [--rounds 5]

Targets: each page and each API answer under 200 ms; each refresh under 200 KB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import func, insert, select

from controller.accounts import Accounts
from controller.config import ControllerSettings
from controller.fleet import fleet_overview
from controller.service import ControllerService
from controller.store import Database
from controller.store.base import utcnow
from controller.store.fleet import Unit, UnitStatus
from provisioning import Fleet
from tests.harness import MosquittoBroker, free_port, make_fleet

PASSWORD = "a long benchmark password"
SITES = 400
CONTRACTORS = ("North Maintenance Ltd", "South Maintenance Ltd", "City Works")
TIME_TARGET_MS = 200.0
REFRESH_TARGET_BYTES = 200_000
PREFIX = "sim"
HEARD_WITHIN_S = 180


async def register_inventory(db: Database, units: int) -> None:
    """The units a council imports before they are installed: ids as the simulator
    names them, each with a site and a contractor."""
    now = utcnow()
    rows = [
        {
            "unit_id": f"{PREFIX}-{n:05d}",
            "site": f"Site {n % SITES:03d}",
            "contractor": CONTRACTORS[n % len(CONTRACTORS)],
            "source": "provisioning",
            "registered_at": now,
        }
        for n in range(1, units + 1)
    ]
    async with db.session() as session:
        await session.execute(insert(Unit), rows)
        await session.commit()


async def http_ready(port: int) -> None:
    async with httpx.AsyncClient(timeout=2) as client, asyncio.timeout(30):
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code < 500:
                    return
            await asyncio.sleep(0.2)


async def heard(db: Database) -> int:
    async with db.session() as session:
        query = select(func.count()).where(UnitStatus.online.is_(True))
        return int((await session.execute(query)).scalar_one())


async def start_simulator(
    fleet: Fleet, broker: MosquittoBroker, units: int, duration: float, work: Path
) -> asyncio.subprocess.Process:
    args = [
        sys.executable, "-m", "controller.cli", "simulate",
        "--units", str(units), "--interval", "30", "--duration", str(duration),
        "--fleet", str(fleet.root), "--host", broker.host, "--port", str(broker.port),
        "--prefix", PREFIX, "--state", str(work / "seqs.json"),
    ]  # fmt: skip
    env = {**os.environ, "CCTV_CONTROLLER_DATABASE_URL": "sqlite+aiosqlite:///:memory:"}
    # Its log to a file: a pipe nobody reads would fill and stop the simulator.
    with (work / "simulator.log").open("wb") as log:
        return await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=log, env=env
        )


class Timings:
    def __init__(self, name: str) -> None:
        self.name = name
        self.ms: list[float] = []
        self.sizes: list[int] = []

    async def take(self, ask: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
        started = time.perf_counter()
        response = await ask()
        self.ms.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        self.sizes.append(len(response.content))
        return response

    def line(self, *, bytes_target: int | None = None) -> str:
        median, worst = statistics.median(self.ms), max(self.ms)
        size = statistics.median(self.sizes)
        verdict = "MET" if median < TIME_TARGET_MS else "NOT MET"
        text = (
            f"    {self.name:<15} median {median:6.0f} ms  max {worst:6.0f} ms  "
            f"{size / 1000:8.1f} KB   time < {TIME_TARGET_MS:.0f} ms: {verdict}"
        )
        if bytes_target is not None:
            met = "MET" if max(self.sizes) < bytes_target else "NOT MET"
            text += (
                f"; < {bytes_target // 1000} KB: {met} (largest {max(self.sizes) / 1000:.1f} KB)"
            )
        return text


async def measure(base: str, rounds: int) -> list[str]:
    page, refresh, api, kpis = (
        Timings("fleet page"),
        Timings("fleet refresh"),
        Timings("/api/units"),
        Timings("KPI page"),
    )
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        answer = await client.post("/api/login", json={"username": "mia", "password": PASSWORD})
        answer.raise_for_status()
        for path in ("/fleet", "/fleet/changes", "/api/units", "/kpis"):  # templates compiled
            (await client.get(path)).raise_for_status()
        for _ in range(rounds):
            drawn = await page.take(lambda: client.get("/fleet"))
            prints = re.findall(r'data-fp="([0-9a-f]+)"', drawn.text)
            assert prints, "the fleet page drew no unit rows"
            await asyncio.sleep(5)  # fleet.js asks every 5 s
            have = ".".join(prints)
            changed = await refresh.take(
                lambda have=have: client.get("/fleet/changes", params={"have": have})  # type: ignore[misc]
            )
            rows = len(changed.json()["rows"])
            print(f"    (refresh after 5 s: {rows} of {len(prints)} rows changed)")
            await api.take(lambda: client.get("/api/units"))
            await kpis.take(lambda: client.get("/kpis"))
        costs = await cpu_costs(client, have)
    return [
        page.line(),
        refresh.line(bytes_target=REFRESH_TARGET_BYTES),
        api.line(),
        kpis.line(),
        "",
        *costs,
    ]


async def cpu_costs(client: httpx.AsyncClient, have: str, count: int = 8) -> list[str]:
    """The controller's CPU per request of each kind: what the code costs, whatever else
    the machine runs. This process serves the pages and runs ingest: the ingest's share is
    measured over a quiet spell as long as the requests took, and taken off."""
    asks = {
        "fleet page": ("/fleet", {}),
        "fleet refresh": ("/fleet/changes", {"have": have}),
        "/api/units": ("/api/units", {}),
        "KPI page": ("/kpis", {}),
    }
    lines, refresh_each = [], 0.0
    for name, (path, params) in asks.items():
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            (await client.get(path, params=params)).raise_for_status()
        busy_cpu, busy_s = time.process_time() - cpu, time.perf_counter() - started
        quiet_started, quiet_cpu = time.perf_counter(), time.process_time()
        await asyncio.sleep(busy_s)
        ingest = (time.process_time() - quiet_cpu) / (time.perf_counter() - quiet_started)
        each = max(busy_cpu - ingest * busy_s, 0.0) / count
        if name == "fleet refresh":
            refresh_each = each
        lines.append(f"    {name:<15} {each * 1000:6.0f} ms of controller CPU per request")
    lines.append(
        f"    one open fleet page costs {refresh_each / 5 * 100:.1f} % of a core (a refresh "
        "every 5 s)"
    )
    return lines


async def whole_fleet(db: Database) -> str:
    started = time.perf_counter()
    async with db.session() as session:
        overview = await fleet_overview(session)
    size = len(overview.model_dump_json())
    ms = (time.perf_counter() - started) * 1000
    return (
        f"    for comparison, the whole fleet in one answer (fleet_overview, {len(overview.units)}"
        f" units): {ms:.0f} ms, {size / 1e6:.1f} MB of JSON"
    )


async def main(units: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="cctv-bench-pages-") as tmp:
        work = Path(tmp)
        fleet = make_fleet(work / "fleet", units=())
        for name in ("simulator-2", "simulator-3", "simulator-4"):
            fleet.issue_client(name)
        broker = MosquittoBroker(fleet, work / "broker", persistence=False)
        broker.start()
        port = free_port()
        settings = ControllerSettings(
            database_url=f"sqlite+aiosqlite:///{work / 'controller.db'}",
            fleet_dir=fleet.root,
            broker={"host": broker.host, "port": broker.port},
            http={"port": port},
            offline_timeout_s=600,
        ).resolved()
        db = Database(settings.database_url)
        await db.migrate()
        await register_inventory(db, units)
        await Accounts(db).add_user("mia", "manager", PASSWORD, contractor=None, actor="bench")
        service = ControllerService(settings, db=db)
        running = asyncio.create_task(service.run(), name="bench-controller")
        simulator: asyncio.subprocess.Process | None = None
        try:
            async with asyncio.timeout(30):
                await service.started.wait()
                await service.link.connected.wait()
            await http_ready(port)
            # Figures, not a request log: uvicorn's access lines and its shutdown noise off.
            logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
            logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
            print(f"broker {broker.host}:{broker.port}; controller http://127.0.0.1:{port}; {work}")
            simulator = await start_simulator(fleet, broker, units, 90 + rounds * 15, work)
            started = time.monotonic()
            while (count := await heard(db)) < units:
                if time.monotonic() - started > HEARD_WITHIN_S or simulator.returncode:
                    log = (work / "simulator.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"only {count} of {units} units heard:\n{log}")
                print(f"    {count} of {units} units heard", flush=True)
                await asyncio.sleep(5)
            print(
                f"\n{units} units heard in {time.monotonic() - started:.0f} s; measuring while "
                "the simulator keeps sending (30 s heartbeats)"
            )
            lines = await measure(f"http://127.0.0.1:{port}", rounds)
            print(f"\nPages at {units} units ({rounds} rounds, SQLite):")
            for line in lines:
                print(line)
            print(await whole_fleet(db))
        finally:
            if simulator is not None and simulator.returncode is None:
                simulator.terminate()
                with contextlib.suppress(ProcessLookupError):
                    await simulator.wait()
            service.stop()
            await running
            await db.dispose()
            broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    asyncio.run(main(options.units, options.rounds))
