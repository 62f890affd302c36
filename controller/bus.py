"""The controller's broker connection (`ControllerLink`).

One aiomqtt client with the controller's certificate. `run(on_message)` keeps it
connected (capped exponential backoff with full jitter), subscribes to every unit's
topics (or to the MQTT v5 shared subscription when `broker.shared_group` is set, so
several controllers split the load) and hands every received message to `on_message`,
which must not block. `publish(message)` sends a protocol message on the topic its kind
belongs to; it fails fast with `LinkError` while disconnected.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import aiomqtt
from aiomqtt import ProtocolVersion

from controller.config import BrokerSettings, ControllerSettings
from controller.errors import ConfigError, LinkError
from controller.metrics import ControllerMetrics
from protocol.messages import Envelope, channel_for, encode
from protocol.signing import Signer, load_private_key
from protocol.topics import Topics

__all__ = ["ControllerLink", "load_signer", "tls_context"]

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
PUBLISH_TIMEOUT_S = 10.0


def _handing_queue(
    handler: Callable[[aiomqtt.Message], None],
) -> type[asyncio.Queue[aiomqtt.Message]]:
    """A queue type for aiomqtt that hands each message to `handler` as it arrives.

    aiomqtt's message iterator costs a task and a wait per message; at thousands of
    messages a second that is a large share of the controller's CPU. The handler must
    not block (ingest only appends to its batch)."""

    class HandingQueue(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            handler(item)

    return HandingQueue


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
        max_queued_incoming: int = 0,
    ) -> None:
        self.settings = settings
        self.signer = signer
        self.metrics = metrics
        self.topics = Topics(settings.topic_root)
        self.boot_id = uuid.uuid4().hex
        self.identifier = identifier or settings.client_id or f"controller-{self.boot_id[:12]}"
        self._persistent = identifier is not None or settings.client_id is not None
        self._tls = tls_context(settings)
        self._max_queued_incoming = max_queued_incoming
        self._client: aiomqtt.Client | None = None
        self._last_seq = 0
        self.connected = asyncio.Event()

    @classmethod
    def from_settings(
        cls, settings: ControllerSettings, *, metrics: ControllerMetrics | None = None
    ) -> ControllerLink:
        return cls(settings.broker, signer=load_signer(settings.signing_key_file), metrics=metrics)

    def next_seq(self) -> int:
        """Monotonic across restarts without storage: microseconds since the epoch, bumped
        when two messages fall in the same microsecond."""
        self._last_seq = max(self._last_seq + 1, time.time_ns() // 1000)
        return self._last_seq

    @property
    def subscription(self) -> str:
        group = self.settings.shared_group
        return self.topics.shared_fleet_filter(group) if group else self.topics.fleet_filter()

    def _client_for(
        self, on_message: Callable[[aiomqtt.Message], None] | None = None
    ) -> aiomqtt.Client:
        v5 = self.settings.shared_group is not None
        return aiomqtt.Client(
            self.settings.host,
            self.settings.port,
            identifier=self.identifier,
            tls_context=self._tls,
            protocol=ProtocolVersion.V5 if v5 else ProtocolVersion.V311,
            clean_session=None if v5 else not self._persistent,
            keepalive=self.settings.keepalive_s,
            timeout=self.settings.connect_timeout_s,
            max_queued_incoming_messages=self._max_queued_incoming,
            max_inflight_messages=100,
            queue_type=None if on_message is None else _handing_queue(on_message),
        )

    async def run(
        self,
        on_message: Callable[[aiomqtt.Message], None],
        *,
        subscribe: bool = True,
    ) -> None:
        """Stay connected until cancelled, feeding every received message to `on_message`."""
        attempt = 0
        while True:
            client = self._client_for(on_message)
            try:
                async with client:
                    if subscribe:
                        async with asyncio.timeout(self.settings.connect_timeout_s):
                            await client.subscribe(self.subscription, qos=1)
                    self._client = client
                    self.connected.set()
                    if self.metrics:
                        self.metrics.broker_connected.set(1)
                    attempt = 0
                    log.info(
                        "broker connected host=%s port=%s subscription=%s",
                        self.settings.host, self.settings.port, self.subscription,
                    )  # fmt: skip
                    # Messages go straight to on_message (see _handing_queue); this loop
                    # only waits, and ends with MqttError when the connection drops.
                    async for message in client.messages:
                        on_message(message)
            except aiomqtt.MqttError as exc:
                delay = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))
                attempt += 1
                log.warning("broker link down error=%s retry_in=%.1fs", exc, delay)
                self._down()
                await asyncio.sleep(delay)
            finally:
                self._down()

    def _down(self) -> None:
        self._client = None
        self.connected.clear()
        if self.metrics:
            self.metrics.broker_connected.set(0)

    async def wait_connected(self, within: float) -> None:
        try:
            async with asyncio.timeout(within):
                await self.connected.wait()
        except TimeoutError as exc:
            raise LinkError(f"not connected within {within:.0f} s") from exc

    async def publish(self, message: Envelope, *, retain: bool = False) -> None:
        """Send one message (QoS 1) on its unit's topic for its kind."""
        client = self._client
        if client is None:
            raise LinkError("not connected to the broker")
        topic = self.topics.unit(message.unit_id, channel_for(message))
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                await client.publish(topic, encode(message), qos=1, retain=retain)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            raise LinkError(f"publish to {topic} failed: {exc}") from exc
