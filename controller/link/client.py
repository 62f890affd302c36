"""The controller's link to the broker (`ControllerLink`).

`run(on_message)` keeps one MQTT v5 connection (`controller.link.connection`) up until
cancelled and hands every received message to `on_message` as a `Delivery`, which must
not block. Nothing is acknowledged to the broker until `ack(deliveries)` is called, which
ingest does only after the database has committed them: a crash or an outage loses
nothing, the broker sends again whatever was not acknowledged.

- **A persistent session under a stable identity.** The client id is the CN of the
  controller's certificate (the broker forces that anyway, `use_username_as_clientid`)
  unless `broker.client_id` overrides it, and every connection resumes the session
  (clean start off, kept `broker.session_expiry_s` after we go). So while the
  controller is stopped or upgraded the broker queues what the units send, and a fault
  raised in that window still becomes a callout. Several controllers share the load
  with `broker.shared_group` (an MQTT v5 shared subscription), each with its own
  certificate and so its own session.
- **Flow control.** The connection tells the broker its Receive Maximum
  (`ingest.queue_max`): the most unacknowledged messages the broker may have in flight
  to us, so that received-but-uncommitted messages are bounded and a slow or absent
  database holds the backlog at the broker, not in our memory. Mosquitto 2.0.11 keeps
  to it only until the limit is reached and an acknowledgement frees room: from then
  on it sends everything it has queued for us, so a resumed session's backlog (or what
  queued during a database outage) arrives at once and waits in memory.
- **Redeliveries.** A delivery is acknowledged only on the connection it came on (a
  message id means nothing on the next one); what was not acknowledged comes again
  after a reconnect and ingest drops it by unit and seq. Acknowledgements go out in the
  order the messages came, as MQTT requires (MQTT 5 section 4.6).
- **Reconnecting** with capped exponential backoff and full jitter
  (`controller.backoff`). A refusal that
  retrying cannot fix (`LinkRefused`: not authorised, a certificate refused, the session
  taken over by another connection with this identity) is logged as an error and kept
  in `refused`; it is retried at the same pace, since someone may fix the broker.

`publish(message)` sends a protocol message (QoS 1) on the topic of its kind and waits
for the broker's acknowledgement; it fails with `LinkError` when disconnected or when no
acknowledgement comes in time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.x509.oid import NameOID

from controller.backoff import full_jitter
from controller.config import BrokerSettings, ControllerSettings
from controller.errors import ConfigError, LinkError, LinkRefused
from controller.link.connection import Connection, OnMessage
from controller.metrics import ControllerMetrics
from protocol.messages import Envelope, channel_for, encode
from protocol.signing import Signer, load_private_key
from protocol.topics import Topics

__all__ = ["ControllerLink", "Delivery", "certificate_cn", "load_signer", "tls_context"]

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
PUBLISH_TIMEOUT_S = 10.0
#: Receive Maximum when none is given (MQTT 5 allows 1-65535).
DEFAULT_RECEIVE_MAXIMUM = 10_000


class Delivery(NamedTuple):
    """One message received from the broker, not yet acknowledged."""

    topic: str
    payload: bytes
    retain: bool
    mid: int
    qos: int
    #: Which connection it came on: an acknowledgement is valid on that one only.
    connection: int


def tls_context(settings: BrokerSettings) -> ssl.SSLContext:
    """Trust only the fleet CA; present the controller's certificate."""
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(settings, key)
        if path is None or not Path(path).is_file():
            raise ConfigError(f"broker.{key}", f"no such file: {path} (set it or fleet_dir)")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(settings.ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    return context


def certificate_cn(path: Path | None) -> str:
    """The common name of a PEM certificate: the controller's identity at the broker."""
    try:
        certificate = x509.load_pem_x509_certificate(Path(str(path)).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError("broker.cert_file", f"cannot read {path}: {exc}") from exc
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise ConfigError("broker.cert_file", f"{path} has no common name (CN)")
    return str(names[0].value)


def load_signer(path: Path | None) -> Signer | None:
    """The command-signing key (Ed25519 PEM), or None when not configured."""
    if path is None:
        return None
    try:
        return Signer(load_private_key(Path(path).read_bytes()))
    except (OSError, ValueError) as exc:
        raise ConfigError("signing_key_file", f"cannot load {path}: {exc}") from exc


class ControllerLink:
    def __init__(
        self,
        settings: BrokerSettings,
        *,
        signer: Signer | None = None,
        metrics: ControllerMetrics | None = None,
        identifier: str | None = None,
        receive_maximum: int = DEFAULT_RECEIVE_MAXIMUM,
    ) -> None:
        if not 1 <= receive_maximum <= 65535:
            raise ConfigError("ingest.queue_max", "must be 1-65535 (the MQTT Receive Maximum)")
        self.settings = settings
        self.signer = signer
        self.metrics = metrics
        self.topics = Topics(settings.topic_root)
        self.boot_id = uuid.uuid4().hex
        self._tls = tls_context(settings)
        self.identifier = identifier or settings.client_id or certificate_cn(settings.cert_file)
        self.receive_maximum = receive_maximum
        #: Why the broker refuses this controller, while it does (see `LinkRefused`).
        self.refused: str | None = None
        self.connected = asyncio.Event()
        self._connection: Connection | None = None
        self._numbers = 0
        self._unacked = 0
        self._last_seq = 0
        self._random = random.Random()

    @classmethod
    def from_settings(
        cls, settings: ControllerSettings, *, metrics: ControllerMetrics | None = None
    ) -> ControllerLink:
        return cls(
            settings.broker,
            signer=load_signer(settings.signing_key_file),
            metrics=metrics,
            receive_maximum=settings.ingest.queue_max,
        )

    def next_seq(self) -> int:
        """Monotonic across restarts without storage: microseconds since the epoch, bumped
        when two messages fall in the same microsecond."""
        self._last_seq = max(self._last_seq + 1, time.time_ns() // 1000)
        return self._last_seq

    @property
    def subscription(self) -> str:
        group = self.settings.shared_group
        return self.topics.shared_fleet_filter(group) if group else self.topics.fleet_filter()

    @property
    def unacknowledged(self) -> int:
        """Messages received on the current connection and not yet acknowledged."""
        return self._unacked

    # -- staying connected ----------------------------------------------------------------

    async def run(
        self,
        on_message: Callable[[Delivery], None],
        *,
        subscribe: bool = True,
    ) -> None:
        """Stay connected until cancelled, feeding every received message to `on_message`.

        `subscribe=False` for a link that only publishes: it leaves the session's
        subscriptions as they are and never acknowledges what may still arrive on them,
        so the controller that resumes the session next gets it all."""
        attempt = 0
        while True:
            self._numbers += 1
            connection = Connection(
                number=self._numbers,
                host=self.settings.host,
                port=self.settings.port,
                tls=self._tls,
                client_id=self.identifier,
                keepalive_s=self.settings.keepalive_s,
                connect_timeout_s=self.settings.connect_timeout_s,
                session_expiry_s=self.settings.session_expiry_s,
                receive_maximum=self.receive_maximum,
                on_message=self._receiver(self._numbers, on_message),
            )
            # Current from the start: a resumed session's messages arrive right after the
            # CONNACK, before the SUBACK, and must be acknowledged on this connection.
            self._connection, self._unacked = connection, 0
            try:
                session_present = await connection.open()
                if subscribe:
                    await connection.subscribe(self.subscription)
                self._up(connection)
                attempt = 0
                log.info(
                    "broker connected host=%s port=%s client_id=%s session=%s subscription=%s",
                    self.settings.host, self.settings.port, self.identifier,
                    "resumed" if session_present else "new",
                    self.subscription if subscribe else "-",
                )  # fmt: skip
                why = await connection.closed
                if connection.taken_over:  # two controllers with one certificate
                    self.refused = why
                    log.error("broker link down (client_id=%s): %s", self.identifier, why)
                else:
                    log.warning("broker link down: %s", why)
            except LinkRefused as exc:
                if exc.reason != self.refused:
                    log.error(
                        "the broker refuses this controller (client_id=%s): %s",
                        self.identifier,
                        exc.reason,
                    )
                self.refused = exc.reason
            except LinkError as exc:
                log.warning("broker link down: %s", exc.reason)
            finally:
                self._down(connection)
            delay = full_jitter(attempt, base=BACKOFF_BASE_S, cap=BACKOFF_CAP_S, rng=self._random)
            attempt = min(attempt + 1, 32)
            log.info("broker reconnect in %.1f s", delay)
            await asyncio.sleep(delay)

    def _receiver(self, number: int, on_message: Callable[[Delivery], None]) -> OnMessage:
        def received(topic: str, payload: bytes, retain: bool, mid: int, qos: int) -> None:
            if qos:
                self._unacked += 1
            on_message(Delivery(topic, payload, retain, mid, qos, number))

        return received

    def _up(self, connection: Connection) -> None:
        self.refused = None
        self.connected.set()
        if self.metrics:
            self.metrics.broker_connected.set(1)

    def _down(self, connection: Connection) -> None:
        connection.close()
        if self._connection is connection:
            self._connection = None
            self._unacked = 0
        self.connected.clear()
        if self.metrics:
            self.metrics.broker_connected.set(0)

    async def wait_connected(self, within: float) -> None:
        try:
            async with asyncio.timeout(within):
                await self.connected.wait()
        except TimeoutError as exc:
            raise LinkError(f"not connected within {within:.0f} s") from exc

    # -- acknowledging and publishing -----------------------------------------------------

    def ack(self, deliveries: Iterable[Delivery]) -> int:
        """Acknowledge deliveries (in the order given, which must be the order received).
        Those of an earlier connection are skipped: the broker sends them again. Returns
        how many were acknowledged."""
        connection = self._connection
        if connection is None or connection.closed.done():
            return 0
        number = connection.number
        mids = [d.mid for d in deliveries if d.connection == number and d.qos == 1]
        connection.ack(mids)
        self._unacked = max(0, self._unacked - len(mids))
        return len(mids)

    async def publish(self, message: Envelope, *, retain: bool = False) -> None:
        """Send one message (QoS 1) on its unit's topic for its kind; return once the
        broker has it. `LinkError` when disconnected or unacknowledged in time."""
        connection = self._connection
        if connection is None or not self.connected.is_set() or connection.closed.done():
            raise LinkError("not connected to the broker")
        topic = self.topics.unit(message.unit_id, channel_for(message))
        await connection.publish(topic, encode(message), retain=retain, within=PUBLISH_TIMEOUT_S)
