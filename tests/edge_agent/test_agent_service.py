"""The real agent process against a real TLS broker: gate, recording, clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from protocol.messages import (
    Event,
    Heartbeat,
    Message,
    RecordingIndex,
    UnitState,
    decode,
    encode,
)
from protocol.segment.reader import inspect_segment
from protocol.topics import Channel
from provisioning import Fleet
from tests.harness.agent import AgentProcess, authorization, revocation
from tests.harness.broker import MosquittoBroker
from tests.harness.fleet import mqtt_client

pytestmark = pytest.mark.slow


def all_sealed_whole(paths: list[Path]) -> bool:
    """Every segment file has its trailer and was not cut short (a clean seal, not a
    crash recovery)."""
    for path in paths:
        with path.open("rb") as f:
            info = inspect_segment(f)
        assert info.trailer is not None, f"{path.name} is not sealed"
        assert not info.trailer.truncated, f"{path.name} was sealed as truncated"
    return True


class Watcher:
    """The control room's view: every message from the fleet, decoded."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, Message]] = []
        self.client: Any = None

    def of(self, kind: type[Any]) -> list[Any]:
        return [m for _, m in self.messages if isinstance(m, kind)]

    def events(self, type_: str) -> list[Event]:
        return [m for m in self.of(Event) if m.event.type == type_]

    async def wait(self, predicate: Callable[[], Any], limit: float, what: str) -> float:
        start = time.monotonic()
        while time.monotonic() - start < limit:
            if predicate():
                return time.monotonic() - start
            await asyncio.sleep(0.05)
        kinds = [
            (type(m).__name__, getattr(getattr(m, "event", None), "type", ""))
            for _, m in self.messages[-15:]
        ]
        raise AssertionError(f"timed out after {limit}s waiting for {what}; last: {kinds}")


@contextlib.asynccontextmanager
async def watch(broker: MosquittoBroker) -> AsyncIterator[Watcher]:
    watcher = Watcher()
    # A probe identity: tests also run the controller (identity "controller") beside it.
    async with mqtt_client(broker, "probe-2") as client:
        watcher.client = client
        await client.subscribe(broker.fleet.topics.fleet_filter(), qos=1)

        async def pump() -> None:
            async for message in client.messages:
                with contextlib.suppress(Exception):
                    watcher.messages.append((time.monotonic(), decode(message.payload)))

        task = asyncio.create_task(pump(), name="watcher")
        try:
            yield watcher
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def publish_authz(watcher: Watcher, fleet: Fleet, unit: str, message: Any) -> None:
    await watcher.client.publish(
        fleet.topics.unit(unit, Channel.AUTHZ), encode(message), qos=1, retain=True
    )


@pytest.fixture
def agent_factory(tmp_path: Path) -> Any:
    made: list[AgentProcess] = []

    def make(fleet: Fleet, unit: str, endpoint: MosquittoBroker, **kw: Any) -> AgentProcess:
        agent = AgentProcess(fleet, unit, endpoint, tmp_path, **kw)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.kill()


async def test_no_authorization_no_footage_and_the_heartbeat_says_why(
    fresh_fleet: Any, make_broker: Any, agent_factory: Any
) -> None:
    from tests.harness.broker import free_port

    fleet = fresh_fleet(units=("cam-01",))
    broker = make_broker(fleet)
    port = free_port()
    agent = agent_factory(fleet, "cam-01", broker, metrics_port=port)
    async with watch(broker) as w:
        agent.start()
        await w.wait(lambda: len(w.of(Heartbeat)) >= 4, 30, "four heartbeats")
        metrics = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        )
        assert b'cctv_agent_recording{unit="cam-01"} 0.0' in metrics
        assert b'cctv_agent_gate_open{unit="cam-01"} 0.0' in metrics
        beats = w.of(Heartbeat)
        assert not any(b.recording for b in beats)
        assert all(not b.gate_open for b in beats)
        assert "no deployment authorization" in beats[-1].recording_reason
        assert "no deployment authorization" in beats[-1].gate_reason
        assert agent.segments("*") == []
        assert agent.terminate() == 0


async def test_approval_records_within_5s_revocation_stops_within_5s_and_sigterm_is_clean(
    fresh_fleet: Any, make_broker: Any, agent_factory: Any
) -> None:
    fleet = fresh_fleet(units=("cam-01",))
    broker = make_broker(fleet)
    agent = agent_factory(fleet, "cam-01", broker)
    async with watch(broker) as w:
        agent.start()
        await w.wait(lambda: w.of(Heartbeat), 30, "the first heartbeat")
        sent = time.monotonic()
        await publish_authz(w, fleet, "cam-01", authorization(fleet, "cam-01"))
        await w.wait(lambda: w.events("recording_started"), 5, "recording to start")
        started = w.events("recording_started")[0]
        assert started.event.deployment_id == "dep-auth-1"  # type: ignore[union-attr]
        await w.wait(lambda: any(b.recording for b in w.of(Heartbeat)), 5, "a recording beat")
        print(f"approval -> recording_started: {time.monotonic() - sent:.2f} s")
        await asyncio.sleep(6)  # at least one 5 s segment
        sent = time.monotonic()
        await publish_authz(w, fleet, "cam-01", revocation(fleet, "cam-01"))
        await w.wait(lambda: w.events("recording_stopped"), 5, "recording to stop")
        print(f"revocation -> recording_stopped: {time.monotonic() - sent:.2f} s")
        sealed = agent.segments()
        assert sealed, "a segment was recorded"
        assert all_sealed_whole(sealed)
        # Record again, then stop the agent in the middle of a segment.
        await publish_authz(w, fleet, "cam-01", authorization(fleet, "cam-01", ident="auth-2"))
        n = len(w.events("recording_started"))
        await w.wait(lambda: len(w.events("recording_started")) > n, 5, "recording again")
        await asyncio.sleep(2.5)
        assert await asyncio.to_thread(agent.terminate) == 0
        await w.wait(
            lambda: any(not s.online and s.reason == "shutdown" for s in w.of(UnitState)),
            5,
            "offline state",
        )
    assert all_sealed_whole(agent.segments())
    assert len(agent.segments()) > len(sealed)


async def test_authorization_end_passes_while_the_broker_is_down(
    fresh_fleet: Any, make_broker: Any, agent_factory: Any
) -> None:
    fleet = fresh_fleet(units=("cam-01",))
    broker = make_broker(fleet)
    agent = agent_factory(fleet, "cam-01", broker, broker={"backoff_cap_s": 2.0})
    async with watch(broker) as w:
        agent.start()
        await w.wait(lambda: w.of(Heartbeat), 30, "the first heartbeat")
        await publish_authz(
            w, fleet, "cam-01", authorization(fleet, "cam-01", valid_for=timedelta(seconds=12))
        )
        await w.wait(lambda: w.events("recording_started"), 5, "recording to start")
    ends_at = time.monotonic() + 11
    await broker.stop_async()
    try:
        # No message can reach the unit: it must stop by its own clock.
        count = lambda: len(agent.segments("*"))  # noqa: E731
        await asyncio.sleep(max(0.0, ends_at - time.monotonic()) + 3)
        after_end = count()
        await asyncio.sleep(4)
        assert count() == after_end, "no new segment after the authorization ended"
        assert all_sealed_whole(agent.segments())
    finally:
        await broker.start_async()
    async with watch(broker) as w:
        await w.wait(lambda: w.events("recording_stopped"), 30, "the queued stop event")
        stopped = w.events("recording_stopped")[0]
        assert "ended" in stopped.event.reason  # type: ignore[union-attr]
    assert agent.terminate() == 0


async def test_low_battery_seals_and_stops_then_mains_resumes(
    fresh_fleet: Any, make_broker: Any, agent_factory: Any, tmp_path: Path
) -> None:
    from tests.harness.nut import NutServer, nut_binaries

    nut_binaries()
    fleet = fresh_fleet(units=("cam-01",))
    broker = make_broker(fleet)
    with NutServer(tmp_path / "ups") as nut:
        agent = agent_factory(
            fleet,
            "cam-01",
            broker,
            power=nut.agent_power(),
        )
        async with watch(broker) as w:
            agent.start()
            await w.wait(lambda: w.of(Heartbeat), 30, "the first heartbeat")
            await publish_authz(w, fleet, "cam-01", authorization(fleet, "cam-01"))
            await w.wait(lambda: w.events("recording_started"), 5, "recording to start")
            await asyncio.sleep(2)
            await asyncio.to_thread(nut.set_state, ups_status="OB DISCHRG", battery_charge=60)
            await w.wait(
                lambda: [e for e in w.events("fault_raised") if e.event.code == "mains_failure"],
                10,
                "mains failure",
            )  # type: ignore[union-attr]
            assert not w.events("recording_stopped"), "mains failure alone keeps recording"
            await asyncio.to_thread(nut.set_state, ups_status="OB LB", battery_charge=8)
            await w.wait(lambda: w.events("recording_stopped"), 10, "recording to stop")
            stop = w.events("recording_stopped")[0].event
            assert "battery" in stop.reason  # type: ignore[union-attr]
            assert [e for e in w.events("fault_raised") if e.event.code == "battery_low"]  # type: ignore[union-attr]
            await asyncio.sleep(1)
            assert all_sealed_whole(agent.segments()), "the open segment was sealed"
            sealed = len(agent.segments())
            assert sealed >= 1
            await asyncio.sleep(3)
            assert len(agent.segments("*")) == sealed, "nothing recorded on low battery"
            n = len(w.events("recording_started"))
            await asyncio.to_thread(nut.set_state, ups_status="OL CHRG", battery_charge=30)
            await w.wait(lambda: len(w.events("recording_started")) > n, 10, "recording resumes")
            power = w.of(__import__("protocol.messages").messages.PowerStatus)
            assert any(p.low_battery for p in power) and not power[-1].on_battery
            assert agent.terminate() == 0


async def test_authorized_masks_are_black_in_the_decrypted_footage(
    fresh_fleet: Any, make_broker: Any, agent_factory: Any, tmp_path: Path
) -> None:
    import av
    import numpy as np

    from controller.evidence.decrypt import decrypt_segments
    from edge_agent.recorder.index import SegmentIndex
    from tests.harness.fleet import FLEET_PASSPHRASE

    fleet = fresh_fleet(units=("cam-01",))
    broker = make_broker(fleet)
    agent = agent_factory(fleet, "cam-01", broker)
    mask = [(0.0, 0.0), (0.4, 0.0), (0.4, 0.5), (0.0, 0.5)]  # top-left: gardens in view
    async with watch(broker) as w:
        agent.start()
        await w.wait(lambda: w.of(Heartbeat), 30, "the first heartbeat")
        await publish_authz(w, fleet, "cam-01", authorization(fleet, "cam-01", masks=[mask]))
        await w.wait(lambda: w.events("recording_started"), 5, "recording to start")
        await asyncio.sleep(7)
        assert await asyncio.to_thread(agent.terminate) == 0
        assert w.of(RecordingIndex), "sealed segments are reported to the controller"
    files = agent.segments()
    assert files
    from protocol.signing import load_private_key

    key = load_private_key((agent.dir / "unit-signing.key").read_bytes())
    index = SegmentIndex(agent.data_dir / "index.sqlite", unit_id="cam-01", signing_key=key)
    manifest = index.export_manifest()
    index.close()
    report = decrypt_segments(
        files,
        manifest=manifest,
        unit_key=fleet.unit_signing_public_key("cam-01"),
        evidence_key=fleet.evidence_private_key(FLEET_PASSPHRASE),
        out_dir=tmp_path / "out",
    )
    assert not report.tampering, report
    outputs = [tmp_path / "out" / r.output for r in report.results if r.output]
    assert outputs
    frames = 0
    for out in outputs:
        with av.open(str(out)) as container:
            for frame in container.decode(video=0):
                img = frame.to_ndarray(format="gray")
                h, wd = img.shape
                inside = img[: int(h * 0.5) - 8, : int(wd * 0.4) - 8]
                outside = img[int(h * 0.5) + 8 :, int(wd * 0.4) + 8 :]
                assert inside.max() <= 24, "masked region is black"
                assert float(np.mean(outside)) > 60, "the rest of the view is not"
                frames += 1
    assert frames > 50
