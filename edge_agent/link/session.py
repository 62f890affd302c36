"""One connection's exchange with the broker once it is up: subscribe, announce the
retained online state, then receive, send and acknowledge until the connection fails or
the link closes; on close, announce the offline state. The order and the seq accounting
are described in `edge_agent.link.client`."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import aiomqtt

from edge_agent.link.connecting import ConnectFailed, reason_code
from edge_agent.link.inbound import Inbound
from edge_agent.link.outbox import Outbox
from edge_agent.link.sender import OutboxSender
from edge_agent.link.settings import LinkSettings
from edge_agent.link.tls import Verdict
from protocol.messages import UnitState, encode, utcnow
from protocol.topics import Channel, Topics

__all__ = ["LinkSession"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class LinkSession:
    """The state a connection works on, and its subscribe / announce / serve steps."""

    def __init__(self, settings: LinkSettings, outbox: Outbox) -> None:
        self.settings = settings
        self._outbox = outbox
        topics = Topics(settings.topic_root)
        self._state_topic = topics.unit(settings.unit_id, Channel.STATE)
        self._cmd_topic = topics.unit(settings.unit_id, Channel.CMD)
        self._authz_topic = topics.unit(settings.unit_id, Channel.AUTHZ)
        # One thread owns the SQLite work so an fsync never stalls the event loop.
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        #: Set while connected, subscribed and announced online.
        self.connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._close_reason = "shutdown"
        self._inbound = Inbound(settings.unit_id, topics)
        self._sender = OutboxSender(
            outbox, self._in_db, inflight=settings.inflight, ack_timeout=settings.ack_timeout_s
        )
        self.connects = 0

    @property
    def boot_id(self) -> str:
        """This process's boot id (fresh each start, recorded in the outbox)."""
        return self._outbox.boot_id

    async def _announce(self, client: aiomqtt.Client) -> None:
        """Subscribe first, then the retained online state (seq from the same counter)."""
        s = self.settings
        async with asyncio.timeout(s.ack_timeout_s):
            granted = await client.subscribe(
                [(self._cmd_topic, 1), (self._authz_topic, 1)], timeout=math.inf
            )
        refused = [
            topic
            for topic, code in zip((self._cmd_topic, self._authz_topic), granted, strict=False)
            if reason_code(code) >= 0x80
        ]
        if refused or len(granted) != 2:
            raise ConnectFailed(
                Verdict.REFUSED, f"not authorised to subscribe to {', '.join(refused)}"
            )
        seq = await self._in_db(self._outbox.next_seq)
        online = encode(self._state(seq, online=True))
        async with asyncio.timeout(s.ack_timeout_s):
            await client.publish(self._state_topic, online, qos=1, retain=True, timeout=math.inf)
        self.connects += 1
        self._client = client
        self.connected.set()
        log.info(
            "unit=%s link up: %s:%d, %d message(s) to replay",
            s.unit_id,
            s.host,
            s.port,
            self._outbox.depth(),
        )

    async def _announce_offline(self, client: aiomqtt.Client) -> None:
        """On close: the retained offline state, with the reason and the next seq."""
        s = self.settings
        seq = await self._in_db(self._outbox.next_seq)
        offline = encode(self._state(seq, online=False, reason=self._close_reason))
        try:
            async with asyncio.timeout(s.ack_timeout_s):
                await client.publish(
                    self._state_topic, offline, qos=1, retain=True, timeout=math.inf
                )
        except (aiomqtt.MqttError, TimeoutError) as exc:
            log.warning("unit=%s link: offline state not sent: %s", s.unit_id, exc)

    async def _serve(self, client: aiomqtt.Client) -> None:
        unit = self.settings.unit_id
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self._receive(client), name=f"link-receive-{unit}"),
                tg.create_task(self._sender.send(client), name=f"link-send-{unit}"),
                tg.create_task(self._sender.acker(), name=f"link-ack-{unit}"),
                tg.create_task(self._stop.wait(), name=f"link-stop-{unit}"),
            ]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            await self._inbound.dispatch(str(message.topic), message.payload)

    def _state(self, seq: int, *, online: bool, reason: str = "") -> UnitState:
        return UnitState(
            unit_id=self.settings.unit_id,
            seq=seq,
            sent_at=utcnow(),
            boot_id=self.boot_id,
            online=online,
            agent_version=self.settings.agent_version,
            reason=reason,
        )

    async def _in_db(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, functools.partial(fn, *args))
