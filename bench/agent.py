"""Agent footprint while it records the sample clip in real time, with self-tests and
telemetry running: CPU (% of one core) and RSS of the agent process.

    .venv/bin/python bench/agent.py [--seconds 90] [--selftest-every 15]

Starts its own Mosquitto with a throwaway fleet, runs the real `cctv-agent run` in a
subprocess, authorizes it (so it records), asks for a self-test every N seconds with a
signed command, and samples /proc of the agent once a second. Targets: under 10% of one
core and under 200 MB RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocol.messages import CommandBody, SelfTestNow, decode, encode  # noqa: E402
from protocol.signing import Signer  # noqa: E402
from protocol.topics import Channel  # noqa: E402
from tests.harness.agent import AgentProcess, authorization  # noqa: E402
from tests.harness.broker import MosquittoBroker  # noqa: E402
from tests.harness.fleet import make_fleet, mqtt_client  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 1e6


async def main(seconds: float, selftest_every: float) -> None:
    with tempfile.TemporaryDirectory(prefix="cctv-bench-") as tmp:
        work = Path(tmp)
        fleet = make_fleet(work / "fleet", units=("cam-01",))
        broker = MosquittoBroker(fleet, work / "broker")
        broker.start()
        agent = AgentProcess(
            fleet,
            "cam-01",
            broker,
            work,
            link={"heartbeat_interval_s": 30.0},
            storage={"segment_seconds": 60},
        )
        signer = Signer(fleet.controller_signing_key())
        reports = 0
        try:
            async with mqtt_client(broker, "controller") as client:
                await client.subscribe(fleet.topics.unit("cam-01", Channel.SELFTEST), qos=1)
                agent.start()
                assert agent.proc is not None
                pid = agent.proc.pid
                await asyncio.sleep(3)
                await client.publish(
                    fleet.topics.unit("cam-01", Channel.AUTHZ),
                    encode(authorization(fleet, "cam-01")),
                    qos=1,
                    retain=True,
                )
                await asyncio.sleep(5)  # warm-up: recording running, baseline learnt
                start_cpu, start = cpu_seconds(pid), time.monotonic()
                peak, samples, next_test, n = 0.0, [], start, 0

                async def count() -> None:
                    nonlocal reports
                    async for message in client.messages:
                        decode(message.payload)
                        reports += 1

                counter = asyncio.create_task(count())
                while time.monotonic() - start < seconds:
                    if time.monotonic() >= next_test:
                        n += 1
                        now = datetime.now(UTC)
                        body = CommandBody(
                            command_id=f"bench-{n}",
                            unit_id="cam-01",
                            issued_at=now,
                            expires_at=now + timedelta(minutes=1),
                            action=SelfTestNow(),
                        )
                        await client.publish(
                            fleet.topics.unit("cam-01", Channel.CMD),
                            encode(signer.command(body, seq=n, boot_id="bench")),
                            qos=1,
                        )
                        next_test += selftest_every
                    rss = rss_mb(pid)
                    peak = max(peak, rss)
                    samples.append(rss)
                    await asyncio.sleep(1)
                used = cpu_seconds(pid) - start_cpu
                elapsed = time.monotonic() - start
                counter.cancel()
            segments = len(agent.segments())
            print(
                f"agent recording {agent.dir.name}: concourse-720p.avi in real time (25 fps, "
                f"1280x720 H.264 remux + encryption)"
            )
            print(
                f"  measured over      {elapsed:6.1f} s, {n} self-tests requested, "
                f"{reports} reports received, {segments} segments sealed"
            )
            print(f"  CPU                {100 * used / elapsed:6.2f} % of one core (target < 10)")
            print(
                f"  RSS mean / peak    {sum(samples) / len(samples):6.1f} / {peak:.1f} MB "
                f"(target < 200)"
            )
        finally:
            if agent.proc is not None and agent.proc.poll() is None:
                agent.terminate()
            broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--selftest-every", type=float, default=15.0)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.selftest_every))
