"""Throwaway provisioned fleets and MQTT clients that speak as one of their identities.

fleet = make_fleet(tmp_path / "fleet", units=("cam-01", "cam-02"))
async with mqtt_client(broker, "cam-01") as client: ...

The broker makes a client's certificate CN its client id, so two connections with one
identity knock each other off. A test that watches or drives the fleet from the centre
while a controller (identity `controller`) runs, or that needs two centre-side
connections, speaks as a probe: `mqtt_client(broker, "probe-1")` (controller role).
"""

from __future__ import annotations

import asyncio
import gc
import ssl
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import aiomqtt

from protocol.evidence_keys import EvidenceSuite
from provisioning import ClientIdentity, Fleet
from provisioning.pki import Role
from tests.harness.tls import tls_context

__all__ = [
    "DEFAULT_UNITS",
    "FLEET_PASSPHRASE",
    "PROBES",
    "Endpoint",
    "connect_refusal",
    "make_fleet",
    "mqtt_client",
    "receive_until",
]

#: The evidence key passphrase of every test fleet.
FLEET_PASSPHRASE = "test evidence passphrase"
DEFAULT_UNITS = ("cam-01", "cam-02", "cam-03")
#: Centre identities with the controller's rights, for test clients that run beside a
#: controller or beside each other.
PROBES = ("probe-1", "probe-2")


class Endpoint(Protocol):
    """Anything with a broker address and its fleet (a `MosquittoBroker`)."""

    host: str
    port: int
    fleet: Fleet


def make_fleet(
    root: Path,
    *,
    units: Iterable[str] = DEFAULT_UNITS,
    simulator: bool = True,
    probes: Iterable[str] = PROBES,
    name: str = "Test Council",
    passphrase: str = FLEET_PASSPHRASE,
    evidence_suite: EvidenceSuite = EvidenceSuite.X25519,
    topic_root: str = "cctv/v1",
) -> Fleet:
    """A complete fleet through the Python API: CA, controller, broker, units, simulator
    and probe identities (controller role)."""
    fleet = Fleet.create(
        root,
        name=name,
        evidence_passphrase=passphrase,
        evidence_suite=evidence_suite,
        topic_root=topic_root,
    )
    for unit_id in units:
        fleet.add_unit(unit_id, site=f"site of {unit_id}", contractor="Test Maintenance Ltd")
    if simulator:
        fleet.issue_client("simulator")
    for probe in probes:
        fleet.issue_client(probe, role=Role.CONTROLLER)
    return fleet


def mqtt_client(
    broker: Endpoint,
    who: str | ClientIdentity,
    *,
    identifier: str | None = None,
    will: aiomqtt.Will | None = None,
    tls_max_version: ssl.TLSVersion | None = None,
    **kwargs: Any,
) -> aiomqtt.Client:
    """An aiomqtt client (not yet connected: use `async with`) authenticated as `who`:
    a unit id, "controller", "simulator", a probe, or any ClientIdentity (e.g. a foreign
    CA's).

    The client id it sends is the identity's name unless `identifier` says otherwise; the
    broker replaces it with the certificate's CN either way, so a second client of the
    same identity takes the first one's session (use another probe)."""
    identity = who if isinstance(who, ClientIdentity) else broker.fleet.client_identity(who)
    return aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=identifier or identity.name,
        tls_context=tls_context(identity, maximum_version=tls_max_version),
        will=will,
        **kwargs,
    )


async def receive_until(
    client: aiomqtt.Client, last_topic: str, *, within: float = 5.0
) -> list[aiomqtt.Message]:
    """Every message the client receives up to and including the first on `last_topic`.

    Publish the messages under test at QoS 1 (each awaited: the broker has routed it when
    it acknowledges), then a positive control on `last_topic`: Mosquitto delivers to a
    subscriber in routing order, so anything that was going to be delivered comes first."""
    received: list[aiomqtt.Message] = []
    async with asyncio.timeout(within):
        async for message in client.messages:
            received.append(message)
            if message.topic.matches(last_topic):
                return received
    raise AssertionError("unreachable: the message iterator never ends while connected")


async def connect_refusal(
    broker: Endpoint,
    who: str | ClientIdentity | ssl.SSLContext | None,
    *,
    within: float = 10.0,
) -> str | None:
    """None if the client connects and gets a publish acknowledged; else the client's error.

    `who`: a fleet identity (by name or ClientIdentity), a ready SSLContext (e.g. one with
    no client certificate), or None for plain MQTT without TLS. A successful connection
    takes over the identity's session: do not probe an identity the test holds open.

    Identities use TLS 1.2 so the broker's verdict on the client certificate (revoked,
    unknown CA) fails the handshake itself, with the TLS alert in the message: under TLS 1.3
    it arrives after the handshake and aiomqtt 2.5 reports only a CONNACK timeout.
    paho-mqtt 2.2 does not close its SSL socket when the handshake fails; the leaked socket
    is collected here with its ResourceWarning silenced so it cannot fail a later test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        client: aiomqtt.Client | None = None
        try:
            if who is None or isinstance(who, ssl.SSLContext):
                client = aiomqtt.Client(
                    broker.host, broker.port, tls_context=who, timeout=within / 2
                )
            else:
                client = mqtt_client(
                    broker, who, timeout=within / 2, tls_max_version=ssl.TLSVersion.TLSv1_2
                )
            async with asyncio.timeout(within), client:
                await client.publish("probe/connect", b"", qos=1)
        except aiomqtt.MqttError as exc:
            reason: str | None = str(exc)
        else:
            reason = None
        client = None  # drop paho's state, then collect the socket it leaked: the loop's
        for _ in range(3):  # handle for the executor future also holds it until it runs
            await asyncio.sleep(0)
        gc.collect()
    return reason
