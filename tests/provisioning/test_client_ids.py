"""The broker ties a connection's MQTT client id to its certificate's CN
(`use_username_as_clientid`), so a certificate cannot take another client's session.

Against the real Mosquitto with the generated config: the unit's real link (`UnitLink`)
and the controller's real link (`ControllerLink`) stay connected, lose nothing and get
their commands while other certificates connect with their client ids. The broker's own
log is the witness: it names each connection's client id and username, and every session
a newer connection took over."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest

from controller.config import BrokerSettings
from controller.link import ControllerLink, Delivery
from edge_agent.link import LinkSettings, Outbox, UnitLink
from protocol.errors import MessageError
from protocol.messages import (
    Command,
    CommandBody,
    Heartbeat,
    SelfTestNow,
    decode,
    encode,
    utcnow,
)
from protocol.signing import Signer
from protocol.topics import Channel
from provisioning import Fleet
from provisioning.pki import Role
from tests.harness import MosquittoBroker, mqtt_client, receive_until

HEARTBEATS = 100


class Controller:
    """The controller's real link, the heartbeat seqs it received per unit, and how many
    payloads were not protocol messages (an impostor's)."""

    def __init__(self, broker: MosquittoBroker) -> None:
        identity = broker.fleet.controller_identity()
        settings = BrokerSettings(
            host=broker.host,
            port=broker.port,
            topic_root=broker.fleet.topics.root,
            ca_file=identity.ca_file,
            cert_file=identity.cert_file,
            key_file=identity.key_file,
        )
        self.link = ControllerLink(settings, signer=Signer(broker.fleet.controller_signing_key()))
        self.heartbeats: dict[str, list[int]] = {}
        self.malformed = 0

    def on_message(self, delivery: Delivery) -> None:
        self.link.ack([delivery])
        if self.link.topics.parse(delivery.topic)[1] is not Channel.HEARTBEAT:
            return
        try:
            heartbeat = decode(delivery.payload)
        except MessageError:
            self.malformed += 1
            return
        self.heartbeats.setdefault(heartbeat.unit_id, []).append(heartbeat.seq)

    def command(self, unit_id: str, command_id: str) -> Command:
        now = datetime.now(UTC)
        body = CommandBody(
            command_id=command_id,
            unit_id=unit_id,
            issued_at=now,
            expires_at=now + timedelta(minutes=5),
            action=SelfTestNow(),
        )
        assert self.link.signer is not None
        return self.link.signer.command(body, seq=self.link.next_seq(), boot_id=self.link.boot_id)


@contextlib.asynccontextmanager
async def controller_running(broker: MosquittoBroker) -> AsyncIterator[Controller]:
    controller = Controller(broker)
    task = asyncio.create_task(controller.link.run(controller.on_message), name="controller")
    try:
        await controller.link.wait_connected(10)
        yield controller
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def unit_running(broker: MosquittoBroker, unit_id: str, tmp: Path) -> AsyncIterator[UnitLink]:
    identity = broker.fleet.client_identity(unit_id)
    settings = LinkSettings(
        host=broker.host,
        port=broker.port,
        topic_root=broker.fleet.topics.root,
        ca_file=identity.ca_file,
        cert_file=identity.cert_file,
        key_file=identity.key_file,
        connect_timeout_s=3.0,
        ack_timeout_s=3.0,
        backoff_base_s=0.05,
        backoff_cap_s=0.2,
        close_flush_s=3.0,
    )
    with Outbox.open(tmp / f"{unit_id}-outbox.sqlite") as outbox:
        link = UnitLink(settings, outbox, unit_id=unit_id)
        task = asyncio.create_task(link.run(), name=f"link-{unit_id}")
        try:
            async with asyncio.timeout(10):
                await link.connected.wait()
            yield link
        finally:
            await link.close("test over")
            with contextlib.suppress(asyncio.CancelledError):
                await task


def heartbeat(link: UnitLink) -> Callable[[int], Heartbeat]:
    def build(seq: int) -> Heartbeat:
        return Heartbeat(
            unit_id=link.unit_id,
            seq=seq,
            sent_at=utcnow(),
            boot_id=link.boot_id,
            recording=True,
            gate_open=True,
        )

    return build


async def until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_a_unit_certificate_cannot_take_the_session_of_a_unit_or_the_controller(
    fleet: Fleet, broker: MosquittoBroker, tmp_path: Path
) -> None:
    topics = fleet.topics
    commands: list[Command] = []
    attacks = 0

    async def attack(controller_id: str) -> None:
        """cam-01's certificate, connecting again and again with cam-02's and the
        controller's client ids, subscribing and publishing as each."""
        nonlocal attacks
        for _ in range(4):
            with contextlib.suppress(aiomqtt.MqttError):  # (a broker that lets it in: the
                # real client takes its id back and knocks the impostor off in turn)
                async with mqtt_client(broker, "cam-01", identifier="cam-02") as impostor:
                    await impostor.subscribe(topics.unit("cam-02", Channel.CMD), qos=1)
                    await impostor.publish(topics.unit("cam-02", Channel.HEARTBEAT), b"x", qos=1)
                    await impostor.publish(topics.unit("cam-01", Channel.HEARTBEAT), b"x", qos=1)
                attacks += 1
            with contextlib.suppress(aiomqtt.MqttError):
                async with mqtt_client(broker, "cam-01", identifier=controller_id) as impostor:
                    await impostor.subscribe(topics.fleet_filter(), qos=1)
                    await impostor.publish(topics.unit("cam-01", Channel.HEARTBEAT), b"x", qos=1)
                attacks += 1
            await asyncio.sleep(0.05)

    async with (
        controller_running(broker) as controller,
        unit_running(broker, "cam-02", tmp_path) as cam02,
    ):

        async def on_command(command: Command) -> None:
            commands.append(command)

        cam02.on_command(on_command)
        # The controller link's own client id (its certificate's CN, "controller").
        attacker = asyncio.create_task(attack(controller.link.identifier), name="attacker")
        sent = []
        for n in range(HEARTBEATS):
            sent.append((await cam02.publish(heartbeat(cam02))).seq)
            if n == HEARTBEATS // 2:
                await controller.link.publish(controller.command("cam-02", "during-attack"))
            await asyncio.sleep(0.01)
        await attacker
        await until(lambda: set(sent) <= set(controller.heartbeats.get("cam-02", [])))
        await until(lambda: bool(commands))
        assert controller.link.connected.is_set() and cam02.connected.is_set()
        assert cam02.connects == 1, "the real cam-02 was knocked off"

    assert attacks == 8
    assert [c.body.command_id for c in commands] == ["during-attack"]
    connections = broker.connections()
    # Each impostor connection got the client id of its own certificate, whatever it asked.
    assert connections.count(("cam-01", "cam-01")) == attacks
    assert connections.count(("cam-02", "cam-02")) == 1  # the real unit, once
    assert connections.count(("controller", "controller")) == 1  # the real controller, once
    assert {client_id for client_id, _ in connections} == {"cam-01", "cam-02", "controller"}
    assert broker.takeovers() == []


async def test_a_centre_identity_cannot_take_another_centre_identitys_session(
    fleet: Fleet, broker: MosquittoBroker
) -> None:
    topics = fleet.topics
    last = topics.unit("cam-03", Channel.HEARTBEAT)
    async with controller_running(broker) as controller, mqtt_client(broker, "cam-03") as unit:
        for who in ("probe-1", "simulator"):  # controller role / simulator role
            impostor_id = controller.link.identifier  # the CN "controller"
            async with mqtt_client(broker, who, identifier=impostor_id) as impostor:
                await impostor.subscribe(topics.fleet_filter(), qos=1)
                await impostor.publish(topics.unit("cam-09", Channel.HEARTBEAT), b"x", qos=1)
        async with mqtt_client(broker, "probe-2", identifier="simulator") as impostor:
            await impostor.publish(topics.unit("cam-09", Channel.HEARTBEAT), b"x", qos=1)
        voice = Heartbeat(
            unit_id="cam-03", seq=1, sent_at=utcnow(), boot_id="b", recording=True, gate_open=True
        )
        await unit.publish(last, encode(voice), qos=1)
        await until(lambda: controller.heartbeats.get("cam-03") == [1])
        assert controller.link.connected.is_set()

    connections = broker.connections()
    assert connections.count(("controller", "controller")) == 1
    assert ("probe-1", "probe-1") in connections and ("probe-2", "probe-2") in connections
    assert ("simulator", "simulator") in connections
    assert broker.takeovers() == []

    # Positive control: one identity, two connections at once: the newer takes over.
    with contextlib.suppress(aiomqtt.MqttError):  # `first` cannot disconnect cleanly
        async with (
            mqtt_client(broker, "simulator", identifier="first") as first,
            mqtt_client(broker, "simulator", identifier="second"),  # connects second
        ):
            await until(lambda: "simulator" in broker.takeovers(), within=5)
            with pytest.raises(aiomqtt.MqttError):  # `first` was disconnected
                async with asyncio.timeout(5):
                    async for _ in first.messages:
                        pass
    assert broker.takeovers() == ["simulator"]


async def test_a_new_centre_identity_gets_its_rights_on_reload(
    fresh_fleet: Callable[..., Fleet], make_broker: Callable[..., MosquittoBroker]
) -> None:
    """`add-client` then `broker-config --force` and SIGHUP: the ACL grants the new
    controller instance the controller's rights without restarting the broker."""
    fleet = fresh_fleet(units=("cam-01",), simulator=False, probes=())
    broker = make_broker(fleet)
    fleet.issue_client("controller-2")
    topic = fleet.topics.unit("cam-01", Channel.HEARTBEAT)
    async with mqtt_client(broker, "controller-2") as second, mqtt_client(broker, "cam-01") as unit:
        await second.subscribe(topic, qos=1)
        await unit.publish(topic, b"before", qos=1)
        with pytest.raises(TimeoutError):  # no grant yet: the broker withholds it
            await receive_until(second, topic, within=0.5)
    broker.reconfigure()
    broker.reload()

    async def granted() -> list[bytes]:
        async with mqtt_client(broker, "controller-2") as second:
            await second.subscribe(topic, qos=1)
            async with mqtt_client(broker, "cam-01") as unit:
                await unit.publish(topic, b"after", qos=1)
            with contextlib.suppress(TimeoutError):
                return [bytes(m.payload) for m in await receive_until(second, topic, within=0.2)]
        return []

    for _ in range(50):  # SIGHUP is handled asynchronously
        if received := await granted():
            break
    assert received == [b"after"]
    assert fleet.centre_clients() == {
        "controller": Role.CONTROLLER,
        "controller-2": Role.CONTROLLER,
    }
