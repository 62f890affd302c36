"""One connection's exchange with the broker once it is up: subscribe, announce the
retained online state, then receive, send and acknowledge until the connection fails or
the link closes; on close, announce the offline state.

`UnitLink` makes one `LinkSession` for each connection and hands it the parts of the
link the connection drives: the inbound dispatcher, the outbox sender, and the unit's
state messages. The order and the seq accounting are described in
`edge_agent.link.client`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable

import aiomqtt

from edge_agent.link.connecting import ConnectFailed, reason_code
from edge_agent.link.inbound import Inbound
from edge_agent.link.sender import OutboxSender
from edge_agent.link.tls import Verdict
from protocol.messages import UnitState, encode, utcnow

__all__ = ["LinkSession", "UnitStates"]

log = logging.getLogger(__name__)


class UnitStates:
    """The unit's retained state messages (online, offline, the will), on its state topic."""

    def __init__(self, unit_id: str, topic: str, *, boot_id: str, agent_version: str) -> None:
        self.unit_id = unit_id
        self.topic = topic
        self.boot_id = boot_id
        self.agent_version = agent_version

    def encode(self, seq: int, *, online: bool, reason: str = "") -> bytes:
        return encode(
            UnitState(
                unit_id=self.unit_id,
                seq=seq,
                sent_at=utcnow(),
                boot_id=self.boot_id,
                online=online,
                agent_version=self.agent_version,
                reason=reason,
            )
        )


class LinkSession:
    """One connection: its client, and what it does with it from announce to offline."""

    def __init__(
        self,
        client: aiomqtt.Client,
        *,
        states: UnitStates,
        next_seq: Callable[[], Awaitable[int]],
        inbound: Inbound,
        sender: OutboxSender,
        ack_timeout_s: float,
    ) -> None:
        self.client = client
        self._states = states
        self._next_seq = next_seq
        self._inbound = inbound
        self._sender = sender
        self._ack_timeout_s = ack_timeout_s

    async def announce(self) -> None:
        """Subscribe first, then the retained online state (seq from the outbox's
        counter). A refused subscription raises `ConnectFailed` (a refusal)."""
        inbound = self._inbound
        async with asyncio.timeout(self._ack_timeout_s):
            granted = await self.client.subscribe(
                [(inbound.cmd_topic, 1), (inbound.authz_topic, 1)], timeout=math.inf
            )
        refused = [
            topic
            for topic, code in zip((inbound.cmd_topic, inbound.authz_topic), granted, strict=False)
            if reason_code(code) >= 0x80
        ]
        if refused or len(granted) != 2:
            raise ConnectFailed(
                Verdict.REFUSED, f"not authorised to subscribe to {', '.join(refused)}"
            )
        online = self._states.encode(await self._next_seq(), online=True)
        async with asyncio.timeout(self._ack_timeout_s):
            await self.client.publish(
                self._states.topic, online, qos=1, retain=True, timeout=math.inf
            )

    async def serve(self, stop: asyncio.Event) -> None:
        """Receive, send and acknowledge until the connection fails (raises) or `stop`
        is set (returns)."""
        unit = self._states.unit_id
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self._receive(), name=f"link-receive-{unit}"),
                tg.create_task(self._sender.send(self.client), name=f"link-send-{unit}"),
                tg.create_task(self._sender.acker(), name=f"link-ack-{unit}"),
                tg.create_task(stop.wait(), name=f"link-stop-{unit}"),
            ]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()

    async def announce_offline(self, reason: str) -> None:
        """On close: the retained offline state, with the reason and the next seq."""
        offline = self._states.encode(await self._next_seq(), online=False, reason=reason)
        try:
            async with asyncio.timeout(self._ack_timeout_s):
                await self.client.publish(
                    self._states.topic, offline, qos=1, retain=True, timeout=math.inf
                )
        except (aiomqtt.MqttError, TimeoutError) as exc:
            log.warning("unit=%s link: offline state not sent: %s", self._states.unit_id, exc)

    async def _receive(self) -> None:
        async for message in self.client.messages:
            await self._inbound.dispatch(str(message.topic), message.payload)
