"""What the ingest benchmarks share: the simulator as separate processes, and the
controller (ingest, periodic jobs, notifier) running in this process on a SQLite file."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.config import ControllerSettings
from controller.service import ControllerService
from controller.store import Database
from provisioning import Fleet
from tests.harness import MosquittoBroker

SIM_PROC_RATE = 5000
RAMP_UNITS = 2000
#: simulator, simulator-2, ...: one per connection of the 10,000-unit run, and one per
#: simulator process of the ramp's highest step.
SIMULATORS = ["simulator", *(f"simulator-{n}" for n in range(2, 5))]


def pct(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def simulate(
    fleet: Fleet,
    broker: MosquittoBroker,
    *,
    units: int,
    interval: float,
    duration: float,
    prefix: str,
    workdir: Path,
    heartbeats_only: bool = False,
    identities: Sequence[str] = (),
) -> dict[str, object]:
    args = [
        sys.executable,
        "-m",
        "controller.cli",
        "simulate",
        "--units",
        str(units),
        "--interval",
        str(interval),
        "--duration",
        str(duration),
        "--fleet",
        str(fleet.root),
        "--host",
        broker.host,
        "--port",
        str(broker.port),
        "--prefix",
        prefix,
        "--state",
        str(workdir / f"{prefix}-seqs.json"),
    ]
    if heartbeats_only:
        args.append("--heartbeats-only")
    for name in identities:  # default: every simulator identity of the fleet
        args += ["--identity", name]
    env = {**os.environ, "CCTV_CONTROLLER_DATABASE_URL": "sqlite+aiosqlite:///:memory:"}
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), duration + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"simulator failed ({proc.returncode}): {err.decode()[-2000:]}")
    result: dict[str, object] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def simulate_rate(
    fleet: Fleet, broker: MosquittoBroker, rate: int, step_s: float, prefix: str, workdir: Path
) -> dict[str, object]:
    """Heartbeats at `rate` for `step_s`, from one simulator process per SIM_PROC_RATE
    msg/s (one process tops out near 7,000 msg/s here)."""
    procs = max(1, -(-rate // SIM_PROC_RATE))
    assert procs <= len(SIMULATORS), "one simulator identity per concurrent process"
    units = RAMP_UNITS // procs
    results = await asyncio.gather(
        *(
            simulate(
                fleet,
                broker,
                units=units,
                interval=units * procs / rate,
                duration=step_s,
                prefix=f"{prefix}p{i}",
                workdir=workdir,
                heartbeats_only=True,
                identities=[SIMULATORS[i]],
            )
            for i in range(procs)
        )
    )
    return {
        "published": sum(int(r["published"]) for r in results),  # type: ignore[call-overload]
        "rate": sum(float(r["rate"]) for r in results),  # type: ignore[arg-type]
    }


class Controller:
    """The controller's ingest (with its periodic jobs and notifier) in this process."""

    def __init__(self, fleet: Fleet, broker: MosquittoBroker, db_path: Path) -> None:
        self.settings = ControllerSettings(
            database_url=f"sqlite+aiosqlite:///{db_path}",
            fleet_dir=fleet.root,
            broker={"host": broker.host, "port": broker.port},
            offline_timeout_s=600,
        ).resolved()
        self.db = Database(self.settings.database_url)
        self.service = ControllerService(self.settings, db=self.db, http=False)
        self.samples: list[tuple[float, float]] = []  # (commit monotonic time, lag s)
        self.service.ingest.lag_observers.append(self._observe)
        self._task: asyncio.Task[None] | None = None

    def _observe(self, lags: Sequence[float]) -> None:
        now = time.monotonic()
        self.samples.extend((now, lag) for lag in lags)

    async def __aenter__(self) -> Controller:
        self._task = asyncio.create_task(self.service.run(), name="bench-controller")
        async with asyncio.timeout(30):
            await self.service.link.connected.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.service.stop()
        assert self._task is not None
        await self._task
        await self.db.dispose()

    def stored_between(self, start: float, end: float) -> list[float]:
        return [lag for t, lag in self.samples if start <= t < end]

    def sent_between(self, start: float, end: float) -> list[float]:
        """Lags of the messages sent (commit time less lag) in [start, end)."""
        return [lag for t, lag in self.samples if start <= t - lag < end]
