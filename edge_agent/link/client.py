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
from aiomqtt.exceptions import MqttConnectError

from edge_agent.link.errors import LinkClosed, LinkDown, LinkError, LinkRefused
from edge_agent.link.inbound import AuthorizationHandler, CommandHandler, Inbound
from edge_agent.link.outbox import MessageClass, Outbox
from edge_agent.link.sender import OutboxSender
from edge_agent.link.settings import LinkSettings
from edge_agent.link.tls import Verdict, client_context, diagnose, network_detail
from protocol.messages import Envelope, UnitState, encode, utcnow
from protocol.topics import Channel, Topics

__all__ = ["WILL_SEQ", "AuthorizationHandler", "CommandHandler", "UnitLink", "reconnect_delay"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: CONNACK reason codes that retrying cannot fix (paho maps MQTT 3.1.1 return codes 1-5
#: onto the MQTT 5 codes 132-136; 136 "server unavailable" is worth retrying).
_FATAL_CONNACK = {
    132: "unsupported protocol version",
    133: "client identifier not accepted",
    134: "bad user name or password",
    135: "not authorised",
    138: "banned",
    140: "bad authentication method",
}
#: The seq of the will: the counter starts at 1, so 0 never collides with a real message.
WILL_SEQ = 0


class _ConnectFailed(Exception):
    def __init__(self, verdict: Verdict, detail: str) -> None:
        super().__init__(detail)
        self.verdict = verdict
        self.detail = detail


class UnitLink:
    """The unit's MQTT link: durable outbox, ordered replay, reconnect, inbound commands."""

    def __init__(
        self, settings: LinkSettings, outbox: Outbox, *, rng: random.Random | None = None
    ) -> None:
        self.settings = settings
        self._outbox = outbox
        topics = Topics(settings.topic_root)
        self._state_topic = topics.unit(settings.unit_id, Channel.STATE)
        self._cmd_topic = topics.unit(settings.unit_id, Channel.CMD)
        self._authz_topic = topics.unit(settings.unit_id, Channel.AUTHZ)
        self._rng = rng or random.Random()
        # One thread owns the SQLite work so an fsync never stalls the event loop.
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        #: Set while connected, subscribed and announced online.
        self.connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._finished = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._running = False
        self._refused = False
        self._close_reason = "shutdown"
        self._closed = False
        self._inbound = Inbound(settings.unit_id, topics)
        self._sender = OutboxSender(
            outbox, self._in_db, inflight=settings.inflight, ack_timeout=settings.ack_timeout_s
        )
        self.connects = 0
        self.failed_attempts = 0

    # -- public API ------------------------------------------------------------------------

    @property
    def boot_id(self) -> str:
        """This process's boot id (fresh each start, recorded in the outbox)."""
        return self._outbox.boot_id

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
            except _ConnectFailed as exc:
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
            except _SessionEnded as exc:
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
        """One connection. Returns on close(); raises _ConnectFailed or _SessionEnded."""
        s = self.settings
        if self._refused:
            # After a refusal, a TLS-only dial tells in milliseconds whether the broker
            # still refuses us; a full MQTT connect would wait for a CONNACK that never
            # comes (TLS 1.3: the alert arrives after the handshake).
            found = await diagnose(s.host, s.port, context, within=s.connect_timeout_s)
            if found.verdict is Verdict.REFUSED:
                raise _ConnectFailed(found.verdict, found.detail)
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
            try:
                async with asyncio.timeout(s.connect_timeout_s * 2):
                    await stack.enter_async_context(client)
            except MqttConnectError as exc:
                code = _code(exc.rc)
                if code in _FATAL_CONNACK:
                    raise _ConnectFailed(Verdict.REFUSED, _FATAL_CONNACK[code]) from exc
                raise _ConnectFailed(Verdict.NETWORK, f"connection refused: {exc}") from exc
            except (aiomqtt.MqttError, TimeoutError) as exc:
                # aiomqtt keeps paho's socket error only as the context. A plain socket
                # error (refused, unreachable, DNS) needs no probe; a TLS error or a
                # timeout (TLS 1.3 refusals look like a CONNACK timeout) does.
                cause = exc.__context__
                if isinstance(cause, OSError) and not isinstance(
                    cause, ssl.SSLError | TimeoutError
                ):
                    raise _ConnectFailed(
                        Verdict.NETWORK, network_detail(cause, s.host, s.port)
                    ) from exc
                found = await diagnose(s.host, s.port, context, within=s.connect_timeout_s)
                raise _ConnectFailed(found.verdict, found.detail) from exc
            connected_at = time.monotonic()
            try:
                await self._announce(client)
                await self._serve(client)
                await self._announce_offline(client)
            except _ConnectFailed:
                raise
            except Exception as exc:
                raise _SessionEnded(connected_at, _describe(exc)) from exc
            finally:
                self._client = None
                self.connected.clear()
                await self._sender.flush_acks()
            return connected_at
        return None  # pragma: no cover (AsyncExitStack does not swallow)

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
            if _code(code) >= 0x80
        ]
        if refused or len(granted) != 2:
            raise _ConnectFailed(
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

    # -- helpers ---------------------------------------------------------------------------

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


class _SessionEnded(Exception):
    def __init__(self, connected_at: float, detail: str) -> None:
        super().__init__(detail)
        self.connected_at = connected_at
        self.detail = detail


def reconnect_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full jitter: uniform(0, min(cap, base * 2**attempt)), so a fleet that lost its broker
    together does not come back in step (attempt counts from 0)."""
    return rng.uniform(0.0, min(cap, base * 2.0 ** min(attempt, 32)))


def _code(rc: object) -> int:
    """The number of a paho ReasonCode or of a plain MQTT 3.1.1 return code."""
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else -1


def _describe(exc: BaseException) -> str:
    """One line for a lost connection, from the first leaf of an exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "no acknowledgement in time"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
