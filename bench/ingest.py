"""Controller ingest benchmark (prints figures; not a test).

Starts its own Mosquitto (TLS + ACL) for a throwaway fleet, runs the controller's
ingest into a SQLite file, drives it with the simulator (separate processes, each with
simulator identities of its own: the broker ties a connection to its certificate) and
prints:

(a) steady state at 10,000 units with 30 s heartbeats: messages stored per second and
    the publish-to-commit latency (sent_at -> commit) p50 / p99 / max;
(b) a rate ramp: the highest rate the controller sustains (every message of a step
    stored within DRAIN_S after the step) against the highest rate a bare aiomqtt
    subscriber that only counts sustains from the same broker;
(c) a drain (`ingest_drain`): a backlog of ~100,000 heartbeats queued at the broker for
    the controller's persistent session while it is stopped, then drained: its stored-
    and-committed rate beside a raw paho-mqtt subscriber that only json.loads each
    payload, draining the same backlog from its own session on the same broker.

    .venv/bin/python bench/ingest.py [--quick] [--parts abc]

Targets with SQLite: (a) p99 < 250 ms; (b) and (c) controller >= 50 % of the bare /
raw subscriber.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest_drain import drain
from ingest_support import (
    RAMP_UNITS,
    SIMULATORS,
    Controller,
    pct,
    simulate,
    simulate_rate,
)

from provisioning import Fleet
from tests.harness import MosquittoBroker, make_fleet, mqtt_client

DRAIN_S = 3.0
#: After the first round, before steady state is counted (see steady_state).
SETTLE_S = 10.0
RAMP = (500, 1000, 2000, 3000, 4000, 5000, 6000, 8000, 10000, 12000, 16000)
#: The bare subscriber's identity (controller rights, a session of its own).
BARE = "probe-1"


async def bare_rate_step(
    broker: MosquittoBroker, fleet: Fleet, rate: int, step_s: float, workdir: Path, prefix: str
) -> tuple[float, int, dict[str, object]]:
    """Messages/s a subscriber that only counts receives from the broker at `rate`."""
    count = 0
    async with mqtt_client(broker, BARE, max_inflight_messages=100) as client:
        await client.subscribe(fleet.topics.fleet_filter(), qos=1)

        async def counter() -> None:
            nonlocal count
            async for message in client.messages:
                count += not message.retain

        task = asyncio.create_task(counter(), name="bare-counter")
        sim = await simulate_rate(fleet, broker, rate, step_s, prefix, workdir)
        published = int(sim["published"])  # type: ignore[call-overload]
        deadline = time.monotonic() + DRAIN_S
        while count < published and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return count / step_s, published - count, sim


async def controller_rate_step(
    ctl: Controller,
    broker: MosquittoBroker,
    fleet: Fleet,
    rate: int,
    step_s: float,
    workdir: Path,
    prefix: str,
) -> tuple[float, int, dict[str, object], list[float]]:
    before = ctl.service.ingest.stored
    start = time.monotonic()
    sim = await simulate_rate(fleet, broker, rate, step_s, prefix, workdir)
    published = int(sim["published"])  # type: ignore[call-overload]
    deadline = time.monotonic() + DRAIN_S
    ingest = ctl.service.ingest
    while ingest.stored - before < published and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    stored = ctl.service.ingest.stored - before
    lags = ctl.stored_between(start, time.monotonic())
    return stored / step_s, published - stored, sim, lags


async def steady_state(
    fleet: Fleet,
    broker: MosquittoBroker,
    work: Path,
    units: int,
    interval: float,
    warmup_s: float,
    steady_s: float,
) -> None:
    async with Controller(fleet, broker, work / "steady.db") as ctl:
        t0 = time.monotonic()
        sim = await simulate(
            fleet,
            broker,
            units=units,
            interval=interval,
            duration=warmup_s + SETTLE_S + steady_s,
            prefix="unit",
            workdir=work,
        )
        await asyncio.sleep(DRAIN_S)
        t_end = t0 + warmup_s + SETTLE_S + steady_s
        # By when each message was sent. The first round (every unit online, its boot
        # self-test, power and heartbeat: four times the steady rate, with an audit entry
        # per unit) ends with a backlog the controller is still storing a second or two
        # later; what is sent meanwhile waits behind it. Steady state starts once that
        # is stored (SETTLE_S), and so counts what a running fleet sees.
        boot = ctl.sent_between(t0, t0 + warmup_s)
        steady = ctl.sent_between(t0 + warmup_s + SETTLE_S, t_end)
        ingest = ctl.service.ingest
        print("\n(a) steady state: 10,000 units x 30 s heartbeats, SQLite")
        print(
            f"    simulator published {sim['published']} ({sim['by_kind']}), failed {sim['failed']}"
        )
        print(
            f"    stored {ingest.stored}, duplicates {ingest.duplicates}, "
            f"quarantined {ingest.quarantined}"
        )
        print(
            f"    first round (online + boot self-test + power + heartbeat per unit): "
            f"{len(boot) / warmup_s:.0f} msg/s stored, p50 {pct(boot, 50) * 1000:.0f} ms, "
            f"p99 {pct(boot, 99) * 1000:.0f} ms"
        )
        print(
            f"    steady {steady_s:.0f} s: {len(steady) / steady_s:.0f} msg/s stored, "
            f"p50 {pct(steady, 50) * 1000:.0f} ms, p99 {pct(steady, 99) * 1000:.0f} ms, "
            f"max {max(steady, default=float('nan')) * 1000:.0f} ms"
        )
        verdict = "MET" if pct(steady, 99) < 0.25 else "NOT MET"
        print(f"    target p99 < 250 ms: {verdict}")


async def main(quick: bool, parts: str) -> None:
    units, interval = 10_000, 30.0
    warmup_s, steady_s = (30.0, 30.0) if quick else (30.0, 75.0)
    step_s = 6.0 if quick else 10.0
    with tempfile.TemporaryDirectory(prefix="cctv-bench-") as tmp:
        work = Path(tmp)
        fleet = make_fleet(work / "fleet", units=())
        for name in SIMULATORS[1:]:
            fleet.issue_client(name)
        broker = MosquittoBroker(fleet, work / "broker", persistence=False)
        broker.start()
        try:
            print(f"broker {broker.host}:{broker.port}; SQLite in {work}")
            # (a) 10,000 units, 30 s heartbeats.
            if "a" in parts:
                await steady_state(fleet, broker, work, units, interval, warmup_s, steady_s)
            if "c" in parts:  # on a fresh broker: nothing queued from (a)
                broker.stop()
                broker = MosquittoBroker(fleet, work / "broker-c", persistence=False)
                broker.start()
                await drain(fleet, broker, work, target=50_000 if quick else 100_000)
            if "b" not in parts:
                return

            # (b) ramp on a fresh broker (no retained states from (a)): bare subscriber
            # first, then the controller.
            broker.stop()
            broker = MosquittoBroker(fleet, work / "broker-b", persistence=False)
            broker.start()
            print(f"\n(b) ramp, {RAMP_UNITS} units, heartbeats only, {step_s:.0f} s per step")
            bare_best, bare_failed = 0.0, False
            for i, rate in enumerate(RAMP):
                got, missing, sim = await bare_rate_step(broker, fleet, rate, step_s, work, f"b{i}")
                offered = float(sim["rate"])  # type: ignore[arg-type]
                print(
                    f"    bare subscriber  target {rate:>6}/s  offered {offered:>7.0f}/s  "
                    f"received {got:>7.0f}/s  missing {missing}"
                )
                if missing <= 0:
                    bare_best = max(bare_best, got)
                bare_failed = missing > 0
                if missing > 0 or offered < 0.9 * rate:
                    break
            ctl_best, ctl_p99 = 0.0, float("nan")
            async with Controller(fleet, broker, work / "ramp.db") as ctl:
                for i, rate in enumerate(RAMP):
                    got, missing, sim, lags = await controller_rate_step(
                        ctl, broker, fleet, rate, step_s, work, f"c{i}"
                    )
                    offered = float(sim["rate"])  # type: ignore[arg-type]
                    print(
                        f"    controller       target {rate:>6}/s  offered {offered:>7.0f}/s  "
                        f"stored   {got:>7.0f}/s  missing {missing}  "
                        f"p50 {pct(lags, 50) * 1000:.0f} ms p99 {pct(lags, 99) * 1000:.0f} ms"
                    )
                    if missing <= 0:
                        ctl_best, ctl_p99 = max(ctl_best, got), pct(lags, 99)
                    if missing > 0 or offered < 0.9 * rate:
                        break
            ratio = ctl_best / bare_best if bare_best else float("nan")
            print(
                f"\n    highest sustained: controller {ctl_best:.0f} msg/s "
                f"(p99 {ctl_p99 * 1000:.0f} ms)"
                f" vs bare subscriber {bare_best:.0f} msg/s = {ratio:.0%}"
            )
            print(f"    target >= 50 %: {'MET' if ratio >= 0.5 else 'NOT MET'}")
            if not bare_failed:
                print(
                    "    (the bare subscriber kept up with the simulators' ceiling: its own limit"
                    " is higher, so this ratio is an upper bound)"
                )
        finally:
            broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter run")
    parser.add_argument(
        "--parts", default="acb", help="a: steady state, b: ramp, c: drain (default all)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.parts))
