"""`UnitLink`: the unit's MQTT connection to the control room.

    link = UnitLink(settings, Outbox.open(data_dir / "outbox.sqlite"), unit_id="cam-01")
    link.on_command(handle_command)            # async (Command) -> None
    link.on_authorization(handle_authz)        # async (Authorization | Revocation) -> None
    tg.create_task(link.run(), name="link")    # in the service's TaskGroup
    await link.publish(lambda seq: Heartbeat(..., seq=seq, boot_id=link.boot_id), cls)
    ...
    await link.close("shutdown")               # before cancelling run()

Every connection, in this order (as Home Assistant's MQTT integration: subscriptions first,
the birth message only after them):
1. CONNECT with TLS (unit certificate), client id = unit id, a persistent session (commands
   sent while the unit was away are queued by the broker) and a retained will
   `UnitState(online=False, reason="connection lost")` with `seq` = 0 (`WILL_SEQ`);
2. SUBSCRIBE `cmd` and `authz` at QoS 1; a refused subscription means "not authorised";
3. PUBLISH the retained `UnitState(online=True)`, with a seq from the outbox's counter;
4. replay the outbox in seq order, then follow it (`edge_agent.link.sender`); a message
   leaves the outbox only after its PUBACK (at-least-once: duplicates, never gaps).

Seq accounting: every seq from the outbox's counter is published (messages, online and
offline states), so a gap at the controller is a real loss (or a drop from a full outbox,
reported as `outbox_dropped`). The will is the exception: it is written at CONNECT and
published by the broker only if the connection is lost, so it cannot take a seq from the
counter without leaving a gap after every clean reconnect. It carries `seq` 0, which the
counter never hands out: the controller must neither deduplicate nor gap-check seq 0.

Failures: a negative CONNACK for credentials / authorisation, a TLS refusal of either
certificate (see `edge_agent.link.tls`) or a refused subscription is a *refusal*;
`refusals_before_fatal` consecutive refusals raise `LinkRefused` from `run()`. Anything
else (refused TCP, DNS, timeouts, broker restarts) is retried forever with capped
exponential backoff and full jitter, reset after a connection held `stable_after_s`.

The link is made of parts it owns: `Inbound` (what arrives on `cmd` and `authz`),
`OutboxSender` (replay and PUBACKs), `UnitStates` (the retained state messages), and for
each connection a `LinkSession` (subscribe, announce, serve, offline). Opening a
connection and telling a refusal from a network fault: `edge_agent.link.connecting`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import aiomqtt

from edge_agent.backoff import Backoff
from edge_agent.link.connecting import (
    ConnectFailed,
    SessionEnded,
    check_still_refused,
    describe,
    enter_client,
)
from edge_agent.link.errors import LinkClosed, LinkDown, LinkError, LinkRefused
from edge_agent.link.inbound import AuthorizationHandler, CommandHandler, Inbound
from edge_agent.link.outbox import MessageClass, Outbox
from edge_agent.link.sender import OutboxSender
from edge_agent.link.session import LinkSession, UnitStates
from edge_agent.link.settings import LinkSettings
from edge_agent.link.tls import Verdict, client_context
from protocol.messages import Envelope
from protocol.topics import Channel, Topics, validate_unit_id

__all__ = ["WILL_SEQ", "AuthorizationHandler", "CommandHandler", "UnitLink"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The seq of the will: the counter starts at 1, so 0 never collides with a real message.
WILL_SEQ = 0


class UnitLink:
    """The unit's MQTT link: durable outbox, ordered replay, reconnect, inbound commands.

    `settings` is the `[broker]` table of `agent.toml`; `unit_id` is the unit's
    certificate CN and MQTT client id; `agent_version` goes into the unit state.
    """

    def __init__(
        self,
        settings: LinkSettings,
        outbox: Outbox,
        *,
        unit_id: str,
        agent_version: str = "",
        rng: random.Random | None = None,
    ) -> None:
        if len(agent_version) > 100:
            raise ValueError("agent_version is longer than 100 characters")
        self.settings = settings
        self.unit_id = validate_unit_id(unit_id)
        self._outbox = outbox
        self._backoff = Backoff(
            settings.backoff_base_s, settings.backoff_cap_s, rng=rng or random.Random()
        )
        topics = Topics(settings.topic_root)
        self._states = UnitStates(
            unit_id,
            topics.unit(unit_id, Channel.STATE),
            boot_id=outbox.boot_id,
            agent_version=agent_version,
        )
        # One thread owns the SQLite work so an fsync never stalls the event loop.
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._inbound = Inbound(unit_id, topics)
        self._sender = OutboxSender(
            outbox, self._in_db, inflight=settings.inflight, ack_timeout=settings.ack_timeout_s
        )
        #: Set while connected, subscribed and announced online.
        self.connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._stop = asyncio.Event()
        self._close_reason = "shutdown"
        self._finished = asyncio.Event()
        self._running = False
        self._refused = False
        self._closed = False
        self.connects = 0
        self.failed_attempts = 0

    @property
    def boot_id(self) -> str:
        """This process's boot id (fresh each start, recorded in the outbox)."""
        return self._outbox.boot_id

    # -- public API ------------------------------------------------------------------------

    def on_command(self, handler: CommandHandler) -> None:
        self._inbound.command_handlers.append(handler)

    def on_authorization(self, handler: AuthorizationHandler) -> None:
        self._inbound.authz_handlers.append(handler)

    @property
    def malformed(self) -> int:
        """Inbound messages dropped as malformed or of the wrong kind for their topic."""
        return self._inbound.malformed

    @property
    def handler_errors(self) -> int:
        return self._inbound.handler_errors

    async def publish(
        self, build: Callable[[int], Envelope], message_class: MessageClass | None = None
    ) -> Envelope:
        """Store a message durably (seq allocated by the outbox, see `Outbox.enqueue`) and
        wake the sender. Returns once it is on disk, not when the broker has it."""
        if self._closed:
            raise LinkClosed()
        message = await self._in_db(self._outbox.enqueue, build, message_class)
        self._sender.wake()
        return message

    def depth(self) -> int:
        """Messages in the outbox waiting for a PUBACK."""
        return self._outbox.depth()

    def dropped(self) -> int:
        """Messages dropped from a full outbox since this process started."""
        return self._outbox.dropped_since_open()

    def round_trip(self) -> float | None:
        """Median PUBACK latency (seconds) of the last 64 QoS 1 publishes, if any."""
        return self._sender.round_trip()

    async def probe_round_trip(self) -> float:
        """Measure one broker round trip now: an UNSUBSCRIBE of a topic this unit never
        subscribes to (its own state topic) changes nothing and is always acknowledged."""
        client = self._client
        if client is None:
            raise LinkDown("measure the broker round trip")
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.ack_timeout_s):
                await client.unsubscribe(self._states.topic, timeout=math.inf)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            raise LinkDown("measure the broker round trip", f"no answer ({exc})") from exc
        return time.monotonic() - started

    async def run(self) -> None:
        """Stay connected until `close()`. Raises LinkRefused when the broker keeps refusing
        this unit, LinkError when the unit's TLS files cannot be loaded."""
        if self._running or self._closed:
            raise LinkError("the link is already running or closed")
        self._running = True
        s = self.settings
        try:
            try:
                context = await asyncio.to_thread(
                    client_context, s.ca_file, s.cert_file, s.key_file
                )
            except (OSError, ssl.SSLError) as exc:
                raise LinkError(f"cannot load the unit's TLS identity: {exc}") from exc
            await self._connect_loop(context)
        finally:
            self._finished.set()

    async def close(self, reason: str = "shutdown") -> None:
        """Flush what the outbox can send within `close_flush_s`, publish the retained
        offline state with `reason`, then disconnect cleanly (so no will is fired).
        Call it before cancelling `run()`; publishing afterwards raises LinkClosed."""
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason
        s = self.settings
        if self.connected.is_set():
            try:
                async with asyncio.timeout(s.close_flush_s):
                    await self._sender.drained.wait()
            except TimeoutError:
                log.warning(
                    "unit=%s link closing with %d message(s) unsent (sent at next start)",
                    self.unit_id,
                    self._outbox.depth(),
                )
        # The session, if any, publishes the offline state and disconnects (`_connection`).
        self._stop.set()
        if self._running:
            try:
                async with asyncio.timeout(s.connect_timeout_s * 2 + s.ack_timeout_s):
                    await self._finished.wait()
            except TimeoutError:
                log.warning("unit=%s link did not stop in time", self.unit_id)
        self._db.shutdown(wait=False)

    # -- connection loop -------------------------------------------------------------------

    async def _connect_loop(self, context: ssl.SSLContext) -> None:
        s = self.settings
        attempt = 0
        refusals = 0
        while not self._stop.is_set():
            connected_at: float | None = None
            try:
                connected_at = await self._connection(context)
                why = "closed"
            except ConnectFailed as exc:
                self.failed_attempts += 1
                self._refused = exc.verdict is Verdict.REFUSED
                if self._refused:
                    refusals += 1
                    if refusals >= s.refusals_before_fatal:
                        log.error("unit=%s link refused: %s", self.unit_id, exc.detail)
                        raise LinkRefused(s.host, s.port, exc.detail, refusals) from exc
                else:
                    refusals = 0
                why = exc.detail
            except SessionEnded as exc:
                connected_at, why, refusals = exc.connected_at, exc.detail, 0
                self._refused = False
            if self._stop.is_set():
                return
            if connected_at is not None and time.monotonic() - connected_at >= s.stable_after_s:
                attempt = 0
            delay = self._backoff.delay(attempt)
            attempt += 1
            log.warning(
                "unit=%s link down: %s; retry %d in %.1f s", self.unit_id, why, attempt, delay
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()

    async def _connection(self, context: ssl.SSLContext) -> float | None:
        """One connection. Returns on close(); raises ConnectFailed or SessionEnded."""
        s = self.settings
        if self._refused:
            await check_still_refused(s, context)
        will = aiomqtt.Will(
            self._states.topic,
            self._states.encode(WILL_SEQ, online=False, reason="connection lost"),
            qos=1,
            retain=True,
        )
        client = aiomqtt.Client(
            s.host,
            s.port,
            identifier=self.unit_id,
            tls_context=context,
            will=will,
            clean_session=False,
            keepalive=s.keepalive_s,
            timeout=s.connect_timeout_s,
            max_inflight_messages=s.inflight,
        )
        client.pending_calls_threshold = s.inflight + 4
        session = LinkSession(
            client,
            states=self._states,
            next_seq=functools.partial(self._in_db, self._outbox.next_seq),
            inbound=self._inbound,
            sender=self._sender,
            ack_timeout_s=s.ack_timeout_s,
        )
        async with contextlib.AsyncExitStack() as stack:
            await enter_client(stack, client, s, context)
            connected_at = time.monotonic()
            try:
                await session.announce()
                self._up(client)
                await session.serve(self._stop)
                await session.announce_offline(self._close_reason)
            except ConnectFailed:
                raise
            except Exception as exc:
                raise SessionEnded(connected_at, describe(exc)) from exc
            finally:
                self._client = None
                self.connected.clear()
                await self._sender.flush_acks()
            return connected_at
        return None  # pragma: no cover (AsyncExitStack does not swallow)

    def _up(self, client: aiomqtt.Client) -> None:
        self.connects += 1
        self._client = client
        self.connected.set()
        s = self.settings
        log.info(
            "unit=%s link up: %s:%d, %d message(s) to replay",
            self.unit_id,
            s.host,
            s.port,
            self._outbox.depth(),
        )

    async def _in_db(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, functools.partial(fn, *args))
