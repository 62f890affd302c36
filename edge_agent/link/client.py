"""`UnitLink`: the unit's MQTT connection to the control room.

    link = UnitLink(settings, Outbox.open(data_dir / "outbox.sqlite"))
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

Opening a connection and telling a refusal from a network fault:
`edge_agent.link.connecting`; subscribing, announcing and serving one connection:
`edge_agent.link.session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import ssl
import time
from collections.abc import Callable

import aiomqtt

from edge_agent.link.connecting import (
    ConnectFailed,
    SessionEnded,
    check_still_refused,
    describe,
    enter_client,
    reconnect_delay,
)
from edge_agent.link.errors import LinkClosed, LinkDown, LinkError, LinkRefused
from edge_agent.link.inbound import AuthorizationHandler, CommandHandler
from edge_agent.link.outbox import MessageClass, Outbox
from edge_agent.link.session import LinkSession
from edge_agent.link.settings import LinkSettings
from edge_agent.link.tls import Verdict, client_context
from protocol.messages import Envelope, encode

__all__ = ["WILL_SEQ", "AuthorizationHandler", "CommandHandler", "UnitLink", "reconnect_delay"]

log = logging.getLogger(__name__)

#: The seq of the will: the counter starts at 1, so 0 never collides with a real message.
WILL_SEQ = 0


class UnitLink(LinkSession):
    """The unit's MQTT link: durable outbox, ordered replay, reconnect, inbound commands."""

    def __init__(
        self, settings: LinkSettings, outbox: Outbox, *, rng: random.Random | None = None
    ) -> None:
        super().__init__(settings, outbox)
        self._rng = rng or random.Random()
        self._finished = asyncio.Event()
        self._running = False
        self._refused = False
        self._closed = False
        self.failed_attempts = 0

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
                await client.unsubscribe(self._state_topic, timeout=math.inf)
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
                    s.unit_id,
                    self._outbox.depth(),
                )
        # The session, if any, publishes the offline state and disconnects (`_session`).
        self._stop.set()
        if self._running:
            try:
                async with asyncio.timeout(s.connect_timeout_s * 2 + s.ack_timeout_s):
                    await self._finished.wait()
            except TimeoutError:
                log.warning("unit=%s link did not stop in time", s.unit_id)
        self._db.shutdown(wait=False)

    # -- connection loop -------------------------------------------------------------------

    async def _connect_loop(self, context: ssl.SSLContext) -> None:
        s = self.settings
        attempt = 0
        refusals = 0
        while not self._stop.is_set():
            connected_at: float | None = None
            try:
                connected_at = await self._session(context)
                why = "closed"
            except ConnectFailed as exc:
                self.failed_attempts += 1
                self._refused = exc.verdict is Verdict.REFUSED
                if self._refused:
                    refusals += 1
                    if refusals >= s.refusals_before_fatal:
                        log.error("unit=%s link refused: %s", s.unit_id, exc.detail)
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
            delay = reconnect_delay(attempt, s.backoff_base_s, s.backoff_cap_s, self._rng)
            attempt += 1
            log.warning("unit=%s link down: %s; retry %d in %.1f s", s.unit_id, why, attempt, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()

    async def _session(self, context: ssl.SSLContext) -> float | None:
        """One connection. Returns on close(); raises ConnectFailed or SessionEnded."""
        s = self.settings
        if self._refused:
            await check_still_refused(s, context)
        will = aiomqtt.Will(
            self._state_topic,
            encode(self._state(WILL_SEQ, online=False, reason="connection lost")),
            qos=1,
            retain=True,
        )
        client = aiomqtt.Client(
            s.host,
            s.port,
            identifier=s.unit_id,
            tls_context=context,
            will=will,
            clean_session=False,
            keepalive=s.keepalive_s,
            timeout=s.connect_timeout_s,
            max_inflight_messages=s.inflight,
        )
        client.pending_calls_threshold = s.inflight + 4
        async with contextlib.AsyncExitStack() as stack:
            await enter_client(stack, client, s, context)
            connected_at = time.monotonic()
            try:
                await self._announce(client)
                await self._serve(client)
                await self._announce_offline(client)
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
