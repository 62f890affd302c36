"""The controller's broker link against a real Mosquitto (TLS + ACL from provisioning):
acknowledgements, flow control, a persistent session, publishing, refusals."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from controller.config import ControllerSettings
from controller.errors import LinkError
from controller.link import ControllerLink, Delivery
from protocol.messages import channel_for, encode
from protocol.topics import Channel
from tests.controller.conftest import UnitVoice, eventually
from tests.harness import MosquittoBroker, mqtt_client

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def running(
    link: ControllerLink, on_message: Callable[[Delivery], None], *, wait: bool = True
) -> AsyncIterator[ControllerLink]:
    task = asyncio.create_task(link.run(on_message), name="test-link")
    try:
        if wait:
            await link.wait_connected(20)
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def publish_heartbeats(broker: MosquittoBroker, count: int) -> None:
    topics = broker.fleet.topics
    cam = UnitVoice("cam-01")
    async with mqtt_client(broker, "cam-01", max_inflight_messages=200) as unit:
        for i in range(0, count, 200):
            beats = [cam.heartbeat() for _ in range(min(200, count - i))]
            await asyncio.gather(
                *(
                    unit.publish(topics.unit("cam-01", channel_for(b)), encode(b), qos=1)
                    for b in beats
                )
            )


async def test_a_backlog_beyond_the_receive_maximum_arrives_as_it_is_acknowledged(
    broker: MosquittoBroker, controller_settings: Callable[..., ControllerSettings]
) -> None:
    """The broker never has more than the Receive Maximum unacknowledged with us: a
    backlog three times that size arrives only as fast as it is acknowledged, including
    what arrives on a resumed session before the subscription is confirmed."""
    settings = controller_settings(broker, ingest={"queue_max": 100, "batch_max": 100})
    link = ControllerLink.from_settings(settings)
    async with running(link, lambda _d: None):
        pass  # the session exists now; the controller is away
    await publish_heartbeats(broker, 300)

    held: list[Delivery] = []
    async with running(link, held.append):
        await eventually(lambda: len(held) >= 100)
        await asyncio.sleep(0.5)
        assert len(held) == 100 == link.unacknowledged  # the broker waits for us
        for _ in range(3):
            target = min(300, len(held) + 100)
            assert link.ack(held[-100:]) == 100
            await eventually(lambda t=target: len(held) >= t)
        assert len(held) == 300 and {d.connection for d in held} == {held[0].connection}


async def test_acknowledging_at_once_drains_a_resumed_session(
    broker: MosquittoBroker, controller_settings: Callable[..., ControllerSettings]
) -> None:
    """A resumed session's backlog starts arriving right after the CONNACK, before the
    subscription is confirmed: acknowledgements from that moment count too."""
    settings = controller_settings(broker, ingest={"queue_max": 100, "batch_max": 100})
    link = ControllerLink.from_settings(settings)
    async with running(link, lambda _d: None):
        pass
    await publish_heartbeats(broker, 500)
    got: list[Delivery] = []

    def ack_at_once(delivery: Delivery) -> None:
        got.append(delivery)
        link.ack([delivery])

    async with running(link, ack_at_once):
        await eventually(lambda: len(got) == 500)
        assert link.unacknowledged == 0


async def test_what_is_not_acknowledged_comes_again_on_the_next_connection(
    broker: MosquittoBroker, controller_settings: Callable[..., ControllerSettings]
) -> None:
    settings = controller_settings(broker)
    link = ControllerLink.from_settings(settings)
    first: list[Delivery] = []
    async with running(link, first.append):
        await publish_heartbeats(broker, 20)
        await eventually(lambda: len(first) == 20)
        link.ack(first[:5])
        await asyncio.sleep(0.3)  # the acknowledgements reach the broker
    again: list[Delivery] = []
    async with running(link, again.append):
        await eventually(lambda: len(again) == 15)
        # An acknowledgement for the old connection is not sent on the new one.
        assert link.ack(first[5:]) == 0
        assert link.ack(again) == 15
    assert [d.payload for d in again] == [d.payload for d in first[5:]]


async def test_publish_waits_for_the_broker_and_fails_fast_when_down(
    broker: MosquittoBroker, controller_settings: Callable[..., ControllerSettings]
) -> None:
    settings = controller_settings(broker)
    link = ControllerLink.from_settings(settings)
    assert link.identifier == "controller"  # the certificate's CN
    message = UnitVoice("cam-02").heartbeat()
    with pytest.raises(LinkError, match="not connected"):
        await link.publish(message)
    async with (
        mqtt_client(broker, "probe-1") as probe,
        running(link, lambda _d: None),
    ):
        topic = broker.fleet.topics.unit("cam-02", channel_for(message))
        await probe.subscribe(topic, qos=1)
        await link.publish(message, retain=True)
        async with asyncio.timeout(5):
            async for received in probe.messages:
                assert received.payload == encode(message)
                break


async def test_a_revoked_certificate_is_reported_as_a_refusal(
    fresh_fleet: Callable[..., Any],
    make_broker: Callable[..., MosquittoBroker],
    controller_settings: Callable[..., ControllerSettings],
) -> None:
    """The broker refuses a revoked certificate in the TLS handshake: the link says it is
    refused (not a network fault), names the certificate, and keeps trying."""
    fleet = fresh_fleet(units=("cam-01",))
    broker = make_broker(fleet)
    fleet.revoke("probe-2")
    broker.reconfigure()
    broker.reload()
    await asyncio.sleep(0.5)
    settings = controller_settings(broker)
    probe = fleet.client_identity("probe-2")
    link = ControllerLink(
        settings.broker.model_copy(
            update={"cert_file": probe.cert_file, "key_file": probe.key_file}
        )
    )
    async with running(link, lambda _d: None, wait=False):
        await eventually(lambda: link.refused is not None, within=15)
        assert "certificate" in (link.refused or "")


async def test_every_message_arrives_whole_however_it_is_framed(
    broker: MosquittoBroker, controller_settings: Callable[..., ControllerSettings]
) -> None:
    """The link unpacks PUBLISH packets itself and leaves the unusual ones to paho: either
    way each message arrives whole, with its topic, payload, QoS and retain flag: QoS 0
    and 1, retained, with no properties, short ones and ones past 127 bytes (a longer
    length field), empty and larger than one read of the socket."""
    topics = broker.fleet.topics
    heartbeat = topics.unit("cam-01", Channel.HEARTBEAT)
    event = topics.unit("cam-01", Channel.EVENT)

    def properties(value_bytes: int) -> Properties:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = ("note", "x" * value_bytes)
        return props

    cases = [
        (heartbeat, b'{"n": 1}', 1, None),
        (heartbeat, b'{"n": 2}', 0, None),
        (event, b"", 1, None),
        (event, b'{"n": 3}', 1, properties(20)),
        (heartbeat, b'{"n": 4}', 1, properties(300)),
        (event, b"[" + b"7," * 150_000 + b"7]", 1, None),
        (heartbeat, b'{"n": 5}', 0, properties(300)),
        (heartbeat, b'{"n": 6}', 1, None),
    ]
    state = topics.unit("cam-01", Channel.STATE)
    link = ControllerLink.from_settings(controller_settings(broker))
    got: list[Delivery] = []
    async with mqtt_client(broker, "cam-01", protocol=aiomqtt.ProtocolVersion.V5) as unit:
        await unit.publish(state, b'{"retained": 1}', qos=1, retain=True)
        async with running(link, got.append):
            await eventually(lambda: len(got) == 1)
            for topic, payload, qos, props in cases:
                await unit.publish(topic, payload, qos=qos, properties=props)
            await eventually(lambda: len(got) == 1 + len(cases))
            await asyncio.sleep(0.3)
            assert len(got) == 1 + len(cases)  # and nothing else
            at_qos_1 = 1 + sum(1 for case in cases if case[2] == 1)
            assert link.unacknowledged == at_qos_1
            assert link.ack(got) == at_qos_1
            assert link.unacknowledged == 0
    first, rest = got[0], got[1:]
    assert (first.topic, first.payload, first.qos, first.retain) == (
        state,
        b'{"retained": 1}',
        1,
        True,
    )
    assert sorted((d.topic, d.payload, d.qos, d.retain) for d in rest) == sorted(
        (topic, payload, qos, False) for topic, payload, qos, _ in cases
    )
    assert all(d.mid > 0 for d in rest if d.qos == 1)
