"""One MQTT v5 connection of the controller: paho-mqtt driven by the asyncio event loop.

Why paho directly rather than aiomqtt: the controller acknowledges each message only
after the database has committed it (`manual_ack`, `Client.ack`), which aiomqtt does not
expose. paho runs here without a thread, the way Home Assistant's MQTT integration runs
it: paho's socket callbacks register the socket with the loop (`add_reader`, and
`add_writer` while it has bytes to send), the loop reads the socket and calls
`loop_write`, and a small task calls `loop_misc` every second (keepalive). Only the
blocking part of `connect()` (TCP connect and TLS handshake, bounded by paho's
`connect_timeout`) runs in a worker thread.

Reading (`_readable`) takes whatever the socket holds in large reads, not paho's one
to three reads per packet. Each complete PUBLISH at QoS 0 or 1, nearly all of what the
controller receives, is unpacked here and handed straight to `on_message` as
(topic, payload, retain, packet id, QoS): paho would build a message object, parse its
properties (none of which the controller reads) and take three locks for each. Every
other packet (CONNACK, SUBACK, PUBACK, PINGRESP, DISCONNECT, a QoS 2 or unusual
PUBLISH) goes to paho's own reader, which reads it from the same buffer. (This leans
on paho-mqtt 2.x internals, pinned <3 in pyproject.toml: `_packet_read` and the
`_sock_recv` it reads through, `_loop_rc_handle`, `_packet_queue`, the keepalive clock
`_last_bytes_received`.)

    connection = Connection(number=1, settings=..., tls=..., client_id=..., ...)
    session_present = await connection.open()          # CONNACK, or raises
    await connection.subscribe(topic)                  # SUBACK, or raises
    # on_message(topic, payload, retain, mid, qos) for each message received
    await connection.publish(topic, payload, retain)   # PUBACK, or raises LinkError
    connection.ack([mid, ...])                         # PUBACKs for received messages
    reason = await connection.closed                   # why it ended
    connection.close()

Failures: `LinkRefused` when retrying cannot help until someone changes the broker or the
certificates (see `controller.link.refusal`); `LinkError` for everything worth retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from controller.errors import LinkError, LinkRefused
from controller.link.refusal import SESSION_TAKEN_OVER, connack_refusal, refusal

__all__ = ["Connection"]

log = logging.getLogger(__name__)

#: How often paho's housekeeping (keepalive ping, ping timeout) runs.
MISC_INTERVAL_S = 1.0
#: Bytes taken from the socket per wake-up at most before the loop serves others (the
#: rest next turn): some hundreds of heartbeats.
READ_BYTES = 128 * 1024
#: Asked for per read (TLS returns at most one record, 16 KiB, per call).
RECV_BYTES = 64 * 1024
#: The fixed header's packet type of a PUBLISH (MQTT 5 section 3.3.1).
_PUBLISH = 3
#: What each received message is handed to: topic, payload, retain, packet id, QoS.
OnMessage = Callable[[str, bytes, bool, int, int], None]
#: A PUBACK: packet type, remaining length 2, packet id.
_PUBACK = struct.Struct("!BBH")
#: Outgoing QoS 1 messages in flight at once (commands and authorizations).
MAX_INFLIGHT_OUT = 100


class Connection:
    def __init__(
        self,
        *,
        number: int,
        host: str,
        port: int,
        tls: ssl.SSLContext,
        client_id: str,
        keepalive_s: int,
        connect_timeout_s: float,
        session_expiry_s: int,
        receive_maximum: int,
        on_message: OnMessage,
    ) -> None:
        self.number = number
        self.host, self.port = host, port
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self._on_message = on_message
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.closed: asyncio.Future[str] = self._loop.create_future()
        self._connack: asyncio.Future[tuple[ReasonCode, bool]] = self._loop.create_future()
        self._subacks: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._pubacks: dict[int, asyncio.Future[ReasonCode]] = {}
        self._sock: Any = None
        #: Bytes read from the socket and not yet handled (at most part of one packet
        #: between wake-ups).
        self._inbox = bytearray()
        self._writing = False
        self._misc: asyncio.Task[None] | None = None
        self._tls_errors: list[str] = []
        #: The broker closed us because another connection took our identity's session.
        self.taken_over = False
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        client.tls_set_context(tls)
        client.connect_timeout = connect_timeout_s
        client.max_inflight_messages_set(MAX_INFLIGHT_OUT)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._deliver
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        # paho's packet reader reads what `_readable` has taken from the socket.
        client._sock_recv = self._from_inbox  # type: ignore[method-assign]
        # While connecting only: paho logs a TLS alert that arrives on the first read
        # (TLS 1.3 refuses a client certificate after the handshake) and nothing else
        # tells it apart from a network fault. Off afterwards: paho formats a log line
        # for every packet when a log callback is set.
        client.on_log = self._on_log
        self.client = client

    # -- opening --------------------------------------------------------------------------

    async def open(self) -> bool:
        """Connect (clean start off, the session kept `session_expiry_s` after we go,
        at most `receive_maximum` unacknowledged messages in flight to us). Returns whether
        the broker still had our session."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.session_expiry_s
        properties.ReceiveMaximum = self.receive_maximum

        def connect() -> MQTTErrorCode:
            return self.client.connect(
                self.host,
                self.port,
                keepalive=self.keepalive_s,
                clean_start=False,
                properties=properties,
            )

        # paho's connect_timeout bounds the TCP connect and the TLS handshake; the limit
        # here covers name resolution too.
        limit = self.connect_timeout_s * 2 + 1
        attempt = self._loop.run_in_executor(None, connect)
        try:
            async with asyncio.timeout(limit):
                rc = await asyncio.shield(attempt)
        except (TimeoutError, asyncio.CancelledError) as exc:
            # The thread goes on: release whatever socket it opens once it is done.
            attempt.add_done_callback(self._abandoned)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise LinkError(f"no connection within {limit:.0f} s") from exc
        except ssl.SSLError as exc:
            why = refusal(exc)
            if why is not None:
                raise LinkRefused(why) from exc
            raise LinkError(f"TLS handshake failed: {exc}") from exc
        except OSError as exc:
            raise LinkError(f"cannot reach {self.host}:{self.port}: {exc}") from exc
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise LinkError(f"connect failed: {mqtt.error_string(rc)}")
        self._attach()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                reason, session_present = await asyncio.shield(self._connack)
        except TimeoutError as exc:
            raise LinkError("no CONNACK in time") from exc
        except LinkError as exc:  # closed before the CONNACK came
            why = next((r for r in map(refusal, self._tls_errors) if r), None)
            if why is not None:
                raise LinkRefused(why) from exc
            raise
        if reason.is_failure:
            why = connack_refusal(reason.value)
            if why is not None:
                raise LinkRefused(why)
            raise LinkError(f"the broker refused the connection: {reason}")
        self.client.on_log = None
        return session_present

    def _abandoned(self, attempt: asyncio.Future[MQTTErrorCode]) -> None:
        if not attempt.cancelled():
            attempt.exception()  # seen: nobody waits for this attempt any more
        self.close()

    def _attach(self) -> None:
        """Hand the socket paho opened (in the connect thread) to the event loop."""
        sock = self.client.socket()
        if sock is None:
            return
        self._sock = sock
        self._loop.add_reader(sock, self._readable)
        if self.client.want_write():
            self._writing = True
            self._loop.add_writer(sock, self._writable)
        self._misc = self._loop.create_task(self._housekeeping(), name=f"mqtt-misc-{self.number}")

    async def subscribe(self, topic: str) -> None:
        """Subscribe at QoS 1. Retained messages come only for a new subscription (MQTT 5
        section 3.8.3.1, retain handling 1): a resumed session already queued what changed
        while we were away, so resubscribing must not replay every unit's state."""
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        rc, mid = self.client.subscribe(topic, options=options)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise LinkError(f"subscribe to {topic} failed: {mqtt.error_string(rc)}")
        future: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._subacks[mid] = future
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                codes = await future
        except TimeoutError as exc:
            raise LinkError(f"no SUBACK for {topic} in time") from exc
        finally:
            self._subacks.pop(mid, None)
        refused = [c for c in codes if c.is_failure]
        if refused:
            raise LinkRefused(f"the broker refused the subscription to {topic}: {refused[0]}")

    # -- messages -------------------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes, *, retain: bool, within: float) -> None:
        """Publish at QoS 1 and wait (at most `within` s) for the broker's PUBACK."""
        if self.closed.done():
            raise LinkError("not connected to the broker")
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise LinkError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        future: asyncio.Future[ReasonCode] = self._loop.create_future()
        self._pubacks[info.mid] = future
        try:
            async with asyncio.timeout(within):
                reason = await future
        except TimeoutError as exc:
            raise LinkError(f"no acknowledgement for {topic} within {within:.0f} s") from exc
        finally:
            self._pubacks.pop(info.mid, None)
        if reason.is_failure:
            raise LinkError(f"the broker refused the message to {topic}: {reason}")

    def ack(self, mids: Sequence[int]) -> None:
        """Acknowledge received QoS 1 messages, in the order given (queued; written when
        the socket allows).

        One PUBACK per message, all handed to paho as one buffer: `Client.ack` would queue
        and send each separately (a TLS record and a system call apiece). A PUBACK with
        reason Success and no properties is the fixed header and the packet id (MQTT 5
        section 3.4.2.1), the same bytes `Client.ack` sends; `_packet_queue` is the queue
        `Client.ack` goes through, so order with other packets is kept."""
        if self.closed.done() or not mids:
            return
        packet = b"".join(_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids)
        self.client._packet_queue(mqtt.PUBACK, packet, 0, 0)

    def _deliver(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        """A message paho read itself (see `_unpack`)."""
        try:
            topic = message.topic
        except UnicodeDecodeError:  # the broker checks topics are UTF-8; just in case
            topic = message._topic.decode("utf-8", "backslashreplace")
        try:
            payload = bytes(message.payload)
            self._on_message(topic, payload, message.retain, message.mid, message.qos)
        except Exception:  # an exception here would end up in paho's read loop
            log.exception("received message handler failed (mid %s)", message.mid)

    # -- paho callbacks -------------------------------------------------------------------

    def _on_connect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if not self._connack.done():
            self._connack.set_result((reason, flags.session_present))

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if flags.is_disconnect_packet_from_server and reason.value == SESSION_TAKEN_OVER:
            why = "another connection with this controller's identity took the session over"
        elif flags.is_disconnect_packet_from_server:
            why = f"the broker disconnected us: {reason}"
        else:
            why = f"connection lost: {reason}"
        self._ended(why, taken_over=reason.value == SESSION_TAKEN_OVER)

    def _ended(self, why: str, *, taken_over: bool = False) -> None:
        self.taken_over = self.taken_over or taken_over
        error = LinkRefused(why) if taken_over else LinkError(why)
        if not self._connack.done():
            self._connack.set_exception(error)
            self._connack.exception()  # retrieved: open() may have stopped waiting
        for futures in (self._subacks, self._pubacks):
            for future in futures.values():
                if not future.done():
                    future.set_exception(LinkError(why))
                    future.exception()
        if not self.closed.done():
            self.closed.set_result(why)

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        codes: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        future = self._subacks.get(mid)
        if future is not None and not future.done():
            future.set_result(codes)

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reason: ReasonCode,
        _properties: Properties,
    ) -> None:
        future = self._pubacks.get(mid)
        if future is not None and not future.done():
            future.set_result(reason)

    def _on_log(self, _client: mqtt.Client, _userdata: Any, level: int, text: str) -> None:
        if level == mqtt.MQTT_LOG_ERR:
            self._tls_errors.append(text)

    # -- the event loop drives the socket -------------------------------------------------

    def _in_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def _on_socket_open(self, _client: mqtt.Client, _userdata: Any, _sock: Any) -> None:
        """Called in the connect thread: `_attach` registers the socket once connect()
        has returned, so the loop never reads while that thread still uses it."""

    def _on_socket_close(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        if self._in_loop_thread():
            self._detach(sock)
        else:
            self._loop.call_soon_threadsafe(self._detach, sock)

    def _detach(self, sock: Any) -> None:
        if sock is self._sock:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
            self._sock = None
            self._writing = False
        self._ended("connection closed")

    def _on_register_write(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        # In the connect thread (the CONNECT packet) `_attach` looks at want_write().
        if self._in_loop_thread() and sock is self._sock and not self._writing:
            self._writing = True
            self._loop.add_writer(sock, self._writable)

    def _on_unregister_write(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        if self._in_loop_thread() and sock is self._sock and self._writing:
            self._writing = False
            self._loop.remove_writer(sock)

    def _readable(self) -> None:
        """Take what the socket holds (up to READ_BYTES, then yield: the rest next turn)
        and handle every complete packet in it (`_unpack`).

        A TLS socket can hold decrypted bytes the selector does not see, so it is read
        until it would block, not once per wake-up. A read error is what paho's reader
        makes of one (logged as paho does: `open` looks there for a TLS alert), after
        the packets read before it are handled: a DISCONNECT saying why comes first."""
        sock = self._sock
        if sock is None:
            return
        client, inbox = self.client, self._inbox
        had, more, lost = len(inbox), False, False
        try:
            while True:
                data = sock.recv(RECV_BYTES)
                if not data:
                    lost = True
                    break
                inbox += data
                if len(inbox) - had >= READ_BYTES:
                    more = True
                    break
        except (ssl.SSLWantReadError, BlockingIOError):
            pass
        except ssl.SSLWantWriteError:
            client._call_socket_register_write()
        except OSError as exc:
            client._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", exc)
            lost = True
        if len(inbox) > had:
            with client._msgtime_mutex:
                client._last_bytes_received = time.monotonic()
        self._unpack()
        if self._sock is None:
            return
        if lost:
            client._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        elif more:
            self._loop.call_soon(self._readable)

    def _unpack(self) -> None:
        """Handle each complete packet in the inbox, in order; leave a partial one there.

        A PUBLISH at QoS 0 or 1 (MQTT 5 section 3.3): the fixed header, the remaining
        length (1-4 bytes, 7 bits each, least significant first), the topic (2-byte
        length, UTF-8), the packet id (2 bytes, QoS 1 only), the properties (their
        length, then the properties, skipped) and the payload (the rest). Anything else,
        or a PUBLISH that does not add up, is read by paho from the front of the inbox
        (`_packet_read`, which then also says what is wrong with it)."""
        inbox, deliver, client = self._inbox, self._on_message, self.client
        pos, end = 0, len(inbox)
        while pos < end:
            first = inbox[pos]
            size, shift, at = 0, 0, pos + 1
            while at < end:
                byte = inbox[at]
                at += 1
                size |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80 or shift == 28:
                    break
            else:
                break  # the remaining length is still on its way
            if byte >= 0x80:  # a fifth length byte: a protocol error, as paho says too
                inbox.clear()
                client._loop_rc_handle(MQTTErrorCode.MQTT_ERR_PROTOCOL)
                return
            stop = at + size
            if stop > end:
                break  # the rest of the packet is still on its way
            qos = (first >> 1) & 3
            if first >> 4 == _PUBLISH and qos < 2:
                topic_end = at + 2 + (inbox[at] << 8 | inbox[at + 1]) if size >= 2 else at
                props = topic_end + 2 * qos  # where the properties' length is
                if at + 2 < topic_end and props < stop and inbox[props] < 0x80:
                    start = props + 1 + inbox[props]
                    if start <= stop:
                        raw = bytes(inbox[at + 2 : topic_end])
                        try:
                            topic = raw.decode()
                        except UnicodeDecodeError:  # the broker checks topics are UTF-8
                            topic = raw.decode("utf-8", "backslashreplace")
                        mid = inbox[topic_end] << 8 | inbox[topic_end + 1] if qos else 0
                        try:
                            deliver(topic, bytes(inbox[start:stop]), bool(first & 1), mid, qos)
                        except Exception:
                            log.exception("received message handler failed (mid %s)", mid)
                        pos = stop
                        continue
            del inbox[:pos]
            rc = client._packet_read()
            if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
                inbox.clear()
                client._loop_rc_handle(rc)  # what paho's loop_read does with it
                return
            if self._sock is None:  # paho closed it (a DISCONNECT)
                inbox.clear()
                return
            pos, end = 0, len(inbox)
        del inbox[:pos]

    def _from_inbox(self, bufsize: int) -> bytes:
        """paho's socket read (`Client._sock_recv`), served from the inbox."""
        inbox = self._inbox
        if not inbox:
            raise BlockingIOError
        data = bytes(inbox[:bufsize])
        del inbox[:bufsize]
        return data

    def _writable(self) -> None:
        self.client.loop_write()

    async def _housekeeping(self) -> None:
        while not self.closed.done():
            await asyncio.sleep(MISC_INTERVAL_S)
            if self.client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._ended("keepalive: no answer from the broker")

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Disconnect (the broker keeps our session for `session_expiry_s`) and release
        the socket."""
        client = self.client
        if client.is_connected():
            with contextlib.suppress(Exception):
                client.disconnect()
                client.loop_write()  # non-blocking: the DISCONNECT if the socket takes it
        sock, self._sock = self._sock, None
        if sock is not None:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
        if client.socket() is not None:
            client.reinitialise()  # paho's public way to close its socket
        if self._misc is not None:
            self._misc.cancel()
        self._ended("closed by the controller")
