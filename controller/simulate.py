"""A load simulator: N units' realistic telemetry through the real broker.

It connects with the fleet's simulator identities (their ACL may write every unit's
from-unit topics), one connection per identity, each carrying many units. The broker makes
a connection's client id its certificate's CN, so two connections (or two simulator
processes) with one identity would keep knocking each other off: the number of
connections is limited to the identities given (`simulator`, `simulator-2`, ..., issued
with `cctv-provision add-client simulator-2`; the broker's ACL must be regenerated after
issuing one, which is why the simulator does not issue identities itself). One
connection carries 10,000 units at 30 s heartbeats comfortably. Each unit says it
is online (retained state), then sends a heartbeat every interval (phases spread evenly,
so N units at interval S give N/S messages per second), a power status every
`power_every` heartbeats, a boot self-test and one every `selftest_every` heartbeats,
and now and then a fault raised and later cleared. Each unit keeps its own seq: persisted
in `state_file` when given, else based on the clock, so it rises across runs too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import ssl
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from controller.errors import InventoryError
from protocol.faults import FaultCode
from protocol.messages import (
    CheckResult,
    Event,
    FaultCleared,
    FaultRaised,
    Heartbeat,
    Message,
    PowerStatus,
    SelfTestReport,
    StorageStatus,
    UnitState,
    channel_for,
    encode,
    utcnow,
)
from protocol.topics import Topics

__all__ = ["SimStats", "Simulator", "SimulatorIdentity", "simulator_identities"]

log = logging.getLogger(__name__)

_FAULTS = (FaultCode.BLUR, FaultCode.VIEW_MOVED, FaultCode.STORAGE_LOW, FaultCode.CLOCK_DRIFT)
_CHECKS = ("camera_signal", "image_black", "blur", "frozen", "recording", "storage", "clock")
UNITS_PER_CONNECTION = 2500
MAX_IN_FLIGHT = 500
#: Names of simulator identities: `simulator`, `simulator-2`, `simulator-east`, ...
_SIMULATOR_NAME = re.compile(r"simulator(-[a-z0-9_-]+)?")


@dataclass(frozen=True)
class SimulatorIdentity:
    """One simulator certificate: the broker gives its connection the client id `name`."""

    name: str
    tls: ssl.SSLContext


def _identity_order(name: str) -> tuple[bool, bool, int, str]:
    """`simulator`, then `simulator-2` ... `simulator-10` by number, then other names."""
    tail = name.partition("-")[2]
    return (tail != "", not tail.isdigit(), int(tail) if tail.isdigit() else 0, tail)


def simulator_identities(
    fleet_dir: Path, names: Sequence[str] | None = None
) -> list[SimulatorIdentity]:
    """TLS contexts of the fleet's simulator identities `names` (default: every one in
    `clients/`, i.e. `simulator`, `simulator-2`, ...). Raises InventoryError when one is
    missing or unreadable, or when the fleet has none."""
    root = Path(fleet_dir)
    clients = root / "clients"
    if names is None:
        found = clients.iterdir() if clients.is_dir() else iter(())
        names = sorted(
            (p.name for p in found if _SIMULATOR_NAME.fullmatch(p.name)), key=_identity_order
        )
        if not names:
            raise InventoryError(
                str(clients), "no simulator identity (cctv-provision add-client simulator)"
            )
    if len(set(names)) != len(names):
        raise InventoryError(str(clients), "each simulator identity can be used only once")
    identities = []
    for name in names:
        folder = clients / name
        try:
            context = ssl.create_default_context(cafile=str(root / "ca" / "ca.crt"))
            context.load_cert_chain(str(folder / "client.crt"), str(folder / "client.key"))
        except (OSError, ssl.SSLError) as exc:
            raise InventoryError(str(folder), f"no usable simulator identity: {exc}") from exc
        identities.append(SimulatorIdentity(name, context))
    return identities


@dataclass
class SimStats:
    published: int = 0
    failed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        return self.published / max(1e-9, time.monotonic() - self.started)


@dataclass
class _Unit:
    unit_id: str
    seq: int
    phase: float
    boot_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    ticks: int = 0
    fault: FaultCode | None = None
    on_battery: bool = False


class Simulator:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        identities: Sequence[SimulatorIdentity],
        units: int,
        interval_s: float = 30.0,
        topic_root: str = "cctv/v1",
        prefix: str = "sim",
        state_file: Path | None = None,
        power_every: int = 10,
        selftest_every: int = 1440,
        fault_probability: float = 0.0005,
        heartbeats_only: bool = False,
        units_per_connection: int = UNITS_PER_CONNECTION,
        seed: int | None = None,
    ) -> None:
        if units < 1 or interval_s <= 0:
            raise ValueError("need at least one unit and a positive interval")
        if not identities or units_per_connection < 1:
            raise ValueError("need at least one simulator identity and one unit per connection")
        self.host, self.port = host, port
        self.topics = Topics(topic_root)
        self.interval_s = interval_s
        self.state_file = state_file
        self.power_every = power_every
        self.selftest_every = selftest_every
        self.fault_probability = fault_probability
        self.heartbeats_only = heartbeats_only
        self.random = random.Random(seed)
        # One connection per `units_per_connection` units, as far as identities allow.
        self.identities = list(identities)[: -(-units // units_per_connection)]
        saved = self._load_seqs()
        base = time.time_ns() // 1_000_000  # ms: rises faster than any unit sends
        self.units = [
            _Unit(uid, saved.get(uid, base), i * interval_s / units)
            for i, uid in enumerate(f"{prefix}-{n:05d}" for n in range(1, units + 1))
        ]
        self.stats = SimStats()

    def _load_seqs(self) -> dict[str, int]:
        if self.state_file is None or not self.state_file.is_file():
            return {}
        return {str(k): int(v) for k, v in json.loads(self.state_file.read_text()).items()}

    def save_seqs(self) -> None:
        if self.state_file is not None:
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({u.unit_id: u.seq for u in self.units}))
            tmp.replace(self.state_file)

    # -- messages -------------------------------------------------------------------------

    def _envelope(self, unit: _Unit) -> dict[str, object]:
        unit.seq += 1
        return {
            "unit_id": unit.unit_id,
            "seq": unit.seq,
            "sent_at": utcnow(),
            "boot_id": unit.boot_id,
        }

    def messages_for(self, unit: _Unit) -> list[tuple[Message, bool]]:
        """What a unit sends at one tick: (message, retained)."""
        out: list[tuple[Message, bool]] = []
        if self.heartbeats_only:
            unit.ticks += 1
            return [(Heartbeat(**self._envelope(unit), recording=True, gate_open=True), False)]
        if unit.ticks == 0:
            out.append((UnitState(**self._envelope(unit), online=True, agent_version="sim"), True))
        if unit.ticks % self.selftest_every == 0:
            now = utcnow()
            checks = [CheckResult(name=c, verdict="pass") for c in _CHECKS]
            out.append(
                (
                    SelfTestReport(
                        **self._envelope(unit),
                        report_id=uuid.uuid4().hex[:16],
                        trigger="boot" if unit.ticks == 0 else "schedule",
                        started_at=now,
                        finished_at=now,
                        verdict="pass",
                        checks=checks,
                    ),
                    False,
                )
            )
        if self.random.random() < self.fault_probability:
            if unit.fault is None:
                unit.fault = self.random.choice(_FAULTS)
                body: FaultRaised | FaultCleared = FaultRaised(code=unit.fault, detail="simulated")
            else:
                body, unit.fault = FaultCleared(code=unit.fault), None
            out.append((Event(**self._envelope(unit), at=utcnow(), event=body), False))
        if unit.ticks % self.power_every == 0:
            out.append(
                (
                    PowerStatus(
                        **self._envelope(unit),
                        source="battery" if unit.on_battery else "mains",
                        on_battery=unit.on_battery,
                        charge_pct=100.0,
                        runtime_s=3600.0,
                        ups_status="OB DISCHRG" if unit.on_battery else "OL",
                    ),
                    False,
                )
            )
        out.append(
            (
                Heartbeat(
                    **self._envelope(unit),
                    recording=True,
                    gate_open=True,
                    uptime_s=unit.ticks * 30.0,
                    storage=StorageStatus(total_bytes=64 * 10**9, free_bytes=40 * 10**9),
                    open_faults=[unit.fault] if unit.fault else [],
                ),
                False,
            )
        )
        unit.ticks += 1
        return out

    # -- running --------------------------------------------------------------------------

    async def _publish(
        self, client: aiomqtt.Client, message: Message, retain: bool, gate: asyncio.Semaphore
    ) -> None:
        try:
            topic = self.topics.unit(message.unit_id, channel_for(message))
            async with asyncio.timeout(30):
                await client.publish(topic, encode(message), qos=1, retain=retain)
            self.stats.published += 1
            self.stats.by_kind[message.kind] = self.stats.by_kind.get(message.kind, 0) + 1
        except (aiomqtt.MqttError, TimeoutError) as exc:
            self.stats.failed += 1
            log.debug("simulated publish failed: %s", exc)
        finally:
            gate.release()

    async def _connection(
        self, identity: SimulatorIdentity, units: list[_Unit], until: float | None
    ) -> None:
        client = aiomqtt.Client(
            self.host,
            self.port,
            tls_context=identity.tls,
            identifier=identity.name,  # the broker uses the certificate's CN in any case
            max_inflight_messages=1000,
        )
        gate = asyncio.Semaphore(MAX_IN_FLIGHT)
        start = time.monotonic()
        async with client, asyncio.TaskGroup() as tg:
            tick = 0
            while until is None or time.monotonic() < until:
                round_start = start + tick * self.interval_s
                for unit in units:
                    due = round_start + unit.phase
                    if until is not None and due >= until:
                        return
                    delay = due - time.monotonic()
                    if delay > 0.002:
                        await asyncio.sleep(delay)
                    for message, retain in self.messages_for(unit):
                        await gate.acquire()
                        tg.create_task(
                            self._publish(client, message, retain, gate),
                            name=f"sim-pub-{message.unit_id}-{message.seq}",
                        )
                tick += 1

    async def run(self, duration_s: float | None = None) -> SimStats:
        until = None if duration_s is None else time.monotonic() + duration_s
        self.stats = SimStats()
        count = len(self.identities)
        try:
            async with asyncio.TaskGroup() as tg:
                for index, identity in enumerate(self.identities):
                    tg.create_task(
                        self._connection(identity, self.units[index::count], until),
                        name=f"sim-conn-{identity.name}",
                    )
        finally:
            self.save_seqs()
        return self.stats
