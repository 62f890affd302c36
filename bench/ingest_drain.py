"""The drain benchmark: a backlog queued at the broker for a stopped controller, then
drained (part (c) of bench/ingest.py; figures printed, nothing asserted).

1. The controller stores one heartbeat from each of 10,000 simulated units (a fleet it
   knows), then stops; its persistent session keeps queueing.
2. Two raw paho-mqtt subscribers, one speaking MQTT 5 like the controller (identity
   `probe-2`) and one MQTT 3.1.1 (`probe-1`, which paho reads faster: no properties),
   each make their own persistent session on the same filter and leave.
3. The simulator publishes at least `target` (100,000) heartbeats: both sessions queue
   every one.
4. Each raw subscriber comes back and drains its queue, doing nothing but `json.loads`
   per payload (paho's own network thread, automatic acknowledgements).
5. The controller comes back and drains its queue: validated, de-duplicated, stored,
   committed, and only then acknowledged.

Rates are counted from the CONNACK to the last message received (raw) or committed
(controller); the controller is compared with the faster raw subscriber. Beside each rate,
the CPU time this process spent per message meanwhile (all its threads: paho's network
thread for a raw subscriber; the event loop and the SQLite thread for the controller),
which a busy machine disturbs less than the rate.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from ingest_support import SIMULATORS, Controller, simulate
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from provisioning import Fleet
from tests.harness import MosquittoBroker, tls_context

#: The raw subscribers' identities (controller rights, sessions of their own).
RAW = {MQTTProtocolVersion.MQTTv5: "probe-2", MQTTProtocolVersion.MQTTv311: "probe-1"}
UNITS = 10_000
PROCESSES = 2
#: Heartbeats per second each simulator process publishes for the backlog.
PROCESS_RATE = 5_000


class RawSubscriber:
    """paho-mqtt as its examples use it: a network thread, `on_message` that parses."""

    def __init__(
        self, broker: MosquittoBroker, fleet: Fleet, protocol: MQTTProtocolVersion
    ) -> None:
        self.broker = broker
        self.protocol = protocol
        self.topic = fleet.topics.fleet_filter()
        v5 = protocol is MQTTProtocolVersion.MQTTv5
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=RAW[protocol],
            protocol=protocol,
            clean_session=None if v5 else False,
        )
        self.client.tls_set_context(tls_context(fleet.client_identity(RAW[protocol])))
        self.client.on_connect = self._connected
        self.client.on_message = self._message
        self.count = 0
        self.target = 0
        self.connected_at = 0.0
        self.done_at = 0.0
        self.up = threading.Event()
        self.done = threading.Event()

    def _connected(self, *_args: Any) -> None:
        self.connected_at = time.monotonic()
        self.up.set()

    def _message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        json.loads(message.payload)
        self.count += 1
        if self.target and self.count >= self.target and not self.done.is_set():
            self.done_at = time.monotonic()
            self.done.set()

    def connect(self) -> None:
        if self.protocol is MQTTProtocolVersion.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 3600
            self.client.connect(
                self.broker.host, self.broker.port, clean_start=False, properties=properties
            )
        else:
            self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()
        if not self.up.wait(10):
            raise RuntimeError("raw subscriber: no CONNACK")

    def subscribe(self) -> None:
        if self.protocol is MQTTProtocolVersion.MQTTv5:
            self.client.subscribe(self.topic, options=SubscribeOptions(qos=1))
        else:
            self.client.subscribe(self.topic, qos=1)
        time.sleep(0.5)  # the SUBACK

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.up.clear()


async def _publish(
    fleet: Fleet, broker: MosquittoBroker, work: Path, *, interval: float, duration: float
) -> int:
    per = UNITS // PROCESSES
    results = await asyncio.gather(
        *(
            simulate(
                fleet,
                broker,
                units=per,
                interval=interval,
                duration=duration,
                prefix=f"drain{i}",
                workdir=work,
                heartbeats_only=True,
                identities=[SIMULATORS[i]],
            )
            for i in range(PROCESSES)
        )
    )
    return sum(int(r["published"]) for r in results)  # type: ignore[call-overload]


async def _until(probe: Any, within: float, every: float = 0.01) -> None:
    deadline = time.monotonic() + within
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError("condition not met in time")
        await asyncio.sleep(every)


async def drain(fleet: Fleet, broker: MosquittoBroker, work: Path, *, target: int) -> None:
    print(f"\n(c) drain: {UNITS} units, a backlog queued while the subscriber is away")
    db_path = work / "drain.db"
    async with Controller(fleet, broker, db_path) as ctl:
        first = await _publish(fleet, broker, work, interval=2.0, duration=2.0)
        ingest = ctl.service.ingest
        await _until(lambda: ingest.stored >= first, 120, 0.1)
        await ingest.idle()
    print(f"    controller knows the fleet: {first} heartbeats stored; stopped")

    raws = [RawSubscriber(broker, fleet, protocol) for protocol in RAW]
    for raw in raws:
        await asyncio.to_thread(raw.connect)
        await asyncio.to_thread(raw.subscribe)
        await asyncio.to_thread(raw.disconnect)

    per_process = UNITS // PROCESSES
    backlog = 0
    while backlog < target:  # in rounds: how fast the simulator goes depends on the load
        backlog += await _publish(
            fleet, broker, work, interval=per_process / PROCESS_RATE, duration=5.0
        )
    print(f"    backlog queued for both sessions: {backlog} heartbeats")

    raw_rate = 0.0
    for raw in raws:
        raw.target, raw.count = backlog, 0
        cpu = time.process_time()
        await asyncio.to_thread(raw.connect)
        await asyncio.to_thread(raw.done.wait, 300)
        cpu = time.process_time() - cpu
        raw_s = raw.done_at - raw.connected_at
        await asyncio.to_thread(raw.disconnect)
        raw_rate = max(raw_rate, backlog / raw_s)
        print(
            f"    raw paho, MQTT {'5' if raw.protocol is MQTTProtocolVersion.MQTTv5 else '3.1.1'} "
            f"(json.loads only): {backlog} in {raw_s:.2f} s = {backlog / raw_s:,.0f} msg/s "
            f"(CPU {cpu / backlog * 1e6:.0f} us/msg)"
        )

    async with Controller(fleet, broker, db_path) as ctl:
        connected, cpu = time.monotonic(), time.process_time()
        ingest = ctl.service.ingest
        await _until(lambda: ingest.stored >= backlog, 600)
        ctl_s, cpu = time.monotonic() - connected, time.process_time() - cpu
        await ingest.idle()
        print(
            f"    controller (stored and committed, then acknowledged): {ingest.stored} in "
            f"{ctl_s:.2f} s = {backlog / ctl_s:,.0f} msg/s (CPU {cpu / backlog * 1e6:.0f} "
            f"us/msg); duplicates {ingest.duplicates}, quarantined {ingest.quarantined}"
        )
    ratio = (backlog / ctl_s) / raw_rate
    print(f"    controller / the faster raw paho = {ratio:.0%}; target >= 50 %: "
          f"{'MET' if ratio >= 0.5 else 'NOT MET'}")  # fmt: skip
