"""Sending the outbox over one connection: replay from the oldest message in seq order,
then follow new ones; delete each message only after its PUBACK.

Up to `inflight` PUBLISHes await their PUBACK at once (a 4G round trip would otherwise
cap a replay at a few messages a second). They still leave in seq order: each publish
task is created in seq order and asyncio starts tasks in creation order, and MQTT keeps
one connection's QoS 1 messages in order (MQTT 3.1.1 s. 4.6). PUBACKed seqs are deleted
in batches (one transaction per batch). A PUBACK lost with the connection means the
message is sent again on the next connection: at-least-once.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiomqtt

from edge_agent.link.outbox import Outbox, OutboxItem

__all__ = ["OutboxSender"]

T = TypeVar("T")
InDb = Callable[..., Awaitable[Any]]
_REPLAY_BATCH = 256
_LATENCY_SAMPLES = 64


class OutboxSender:
    def __init__(self, outbox: Outbox, in_db: InDb, *, inflight: int, ack_timeout: float):
        self._outbox = outbox
        self._in_db = in_db
        self._inflight = inflight
        self._ack_timeout = ack_timeout
        self._wake = asyncio.Event()
        self._ack_event = asyncio.Event()
        self._acked: list[int] = []
        self._latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)
        #: Set whenever the outbox is empty (every message acknowledged).
        self.drained = asyncio.Event()
        if outbox.depth() == 0:
            self.drained.set()

    def wake(self) -> None:
        """A message was enqueued."""
        self.drained.clear()
        self._wake.set()

    def round_trip(self) -> float | None:
        """Median PUBACK latency (seconds) of the last 64 QoS 1 publishes, if any."""
        return statistics.median(self._latencies) if self._latencies else None

    async def send(self, client: aiomqtt.Client) -> None:
        """Replay, then follow. Returns only by an exception (the connection failed)."""
        window = asyncio.Semaphore(self._inflight)
        cursor = 0
        async with asyncio.TaskGroup() as tg:
            while True:
                self._wake.clear()
                items: list[OutboxItem] = await self._in_db(
                    self._outbox.pending, cursor, _REPLAY_BATCH
                )
                if not items:
                    await self._wake.wait()
                    continue
                for item in items:
                    await window.acquire()
                    tg.create_task(self._publish(client, item, window), name=f"link-pub-{item.seq}")
                    cursor = item.seq

    async def _publish(
        self, client: aiomqtt.Client, item: OutboxItem, window: asyncio.Semaphore
    ) -> None:
        try:
            started = time.monotonic()
            async with asyncio.timeout(self._ack_timeout):
                await client.publish(
                    item.topic, item.payload, qos=1, retain=item.retain, timeout=math.inf
                )
            self._latencies.append(time.monotonic() - started)
            self._acked.append(item.seq)
            self._ack_event.set()
        finally:
            window.release()

    async def acker(self) -> None:
        """Delete PUBACKed messages, batched while the previous batch commits."""
        while True:
            await self._ack_event.wait()
            self._ack_event.clear()
            await self.flush_acks()

    async def flush_acks(self) -> None:
        seqs, self._acked = self._acked, []
        if seqs:
            await self._in_db(self._outbox.ack, seqs)
        if self._outbox.depth() == 0:
            self.drained.set()
