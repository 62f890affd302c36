"""The generated Mosquitto config against the real broker: TLS client certificates, the
per-unit ACL and revocation. Every refusal is paired with a positive control in the same
test, so a broker that let everything through (or nothing) fails it."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

import pytest

from protocol.topics import Channel, Direction
from provisioning import ClientIdentity, Fleet
from tests.harness import MosquittoBroker, connect_refusal, mqtt_client, receive_until

FROM_UNIT = [c for c in Channel if c.direction is Direction.FROM_UNIT]


async def test_unit_telemetry_reaches_the_controller(fleet: Fleet, broker: MosquittoBroker) -> None:
    topic = fleet.topics.unit("cam-01", Channel.HEARTBEAT)
    async with mqtt_client(broker, "controller") as controller:
        await controller.subscribe(fleet.topics.fleet_filter(), qos=1)
        async with mqtt_client(broker, "cam-01") as unit:
            await unit.publish(topic, b'{"kind": "heartbeat"}', qos=1)
        received = await receive_until(controller, topic)
    assert [(m.topic.value, m.payload) for m in received] == [(topic, b'{"kind": "heartbeat"}')]


async def test_unit_writes_only_its_own_from_unit_topics(
    fleet: Fleet, broker: MosquittoBroker
) -> None:
    topics = fleet.topics
    forged = [topics.unit("cam-01", channel) for channel in Channel]  # another unit's, all
    forged += [topics.unit("cam-02", Channel.CMD), topics.unit("cam-02", Channel.AUTHZ)]
    own = [topics.unit("cam-02", channel) for channel in FROM_UNIT]
    async with mqtt_client(broker, "controller") as controller:
        await controller.subscribe(f"{topics.root}/#", qos=1)
        async with mqtt_client(broker, "cam-02") as unit:
            for topic in forged:
                await unit.publish(topic, b"forged", qos=1)
            for topic in own:  # positive controls, the last one ends the wait
                await unit.publish(topic, b"own", qos=1)
        received = await receive_until(controller, own[-1])
    assert [m.topic.value for m in received] == own
    assert all(m.payload == b"own" for m in received)


async def test_unit_never_receives_another_units_commands_authz_or_telemetry(
    fleet: Fleet, broker: MosquittoBroker
) -> None:
    topics = fleet.topics
    other_cmd = topics.unit("cam-01", Channel.CMD)
    other_authz = topics.unit("cam-01", Channel.AUTHZ)
    own_cmd = topics.unit("cam-02", Channel.CMD)
    own_authz = topics.unit("cam-02", Channel.AUTHZ)
    async with (
        mqtt_client(broker, "controller") as controller,
        mqtt_client(broker, "cam-01") as victim,
        mqtt_client(broker, "cam-02") as snoop,
    ):
        # Retained before anyone subscribes: must not reach cam-02 on subscribe either.
        await controller.publish(other_authz, b"authz for cam-01", qos=1, retain=True)
        await controller.publish(own_authz, b"authz for cam-02", qos=1, retain=True)
        await victim.subscribe(other_cmd, qos=1)
        await victim.subscribe(other_authz, qos=1)
        # Mosquitto 2 grants these subscriptions and filters at delivery (read ACL).
        for pattern in (other_cmd, other_authz, topics.unit_filter("cam-01"), "#"):
            await snoop.subscribe(pattern, qos=1)
        await snoop.subscribe(own_authz, qos=1)
        got_retained = await receive_until(snoop, own_authz)
        await snoop.subscribe(own_cmd, qos=1)

        await controller.publish(other_cmd, b"cmd for cam-01", qos=1)
        await victim.publish(topics.unit("cam-01", Channel.HEARTBEAT), b"hb", qos=1)
        await controller.publish(own_cmd, b"cmd for cam-02", qos=1)
        got_live = await receive_until(snoop, own_cmd)
        # Positive control: the same messages DID reach their own unit.
        victim_got = await receive_until(victim, other_cmd)

    # The retained authz may come once per matching subscription ("#" and the exact one).
    assert {(m.topic.value, m.payload) for m in got_retained + got_live} == {
        (own_authz, b"authz for cam-02"),
        (own_cmd, b"cmd for cam-02"),
    }
    assert {m.topic.value for m in victim_got} == {other_authz, other_cmd}


async def test_client_without_certificate_is_refused(fleet: Fleet, broker: MosquittoBroker) -> None:
    context = ssl.create_default_context(cafile=str(fleet.layout.ca_cert))  # no client cert
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    refusal = await connect_refusal(broker, context)
    assert refusal is not None
    assert "handshake failure" in refusal or "certificate required" in refusal
    assert "peer did not return a certificate" in broker.log_text()
    # No plain MQTT on the TLS port (the broker closes it; the client sees no CONNACK).
    assert await connect_refusal(broker, None, within=4) is not None
    assert await connect_refusal(broker, "cam-01") is None  # positive control


async def test_certificate_from_another_ca_is_refused(
    fleet: Fleet, broker: MosquittoBroker, fresh_fleet: Callable[..., Fleet]
) -> None:
    other = fresh_fleet(units=("cam-01",), simulator=False).client_identity("cam-01")
    # Trust our broker, present a certificate with a valid-looking CN from a foreign CA.
    impostor = ClientIdentity("cam-01", other.cert_file, other.key_file, fleet.layout.ca_cert)
    assert "unknown ca" in (await connect_refusal(broker, impostor) or "")
    assert await connect_refusal(broker, fleet.client_identity("cam-01")) is None


async def test_revoked_unit_is_refused_after_broker_restart(
    fresh_fleet: Callable[..., Fleet], make_broker: Callable[..., MosquittoBroker]
) -> None:
    fleet = fresh_fleet()
    broker = make_broker(fleet)
    assert await connect_refusal(broker, "cam-03") is None
    fleet.revoke("cam-03")
    assert await connect_refusal(broker, "cam-03") is None, "the running broker has the old CRL"
    await asyncio.to_thread(broker.restart, reconfigure=True)
    assert "certificate revoked" in (await connect_refusal(broker, "cam-03") or "")
    assert await connect_refusal(broker, "cam-01") is None


async def test_sighup_cuts_off_a_revoked_unit_without_a_restart(
    fresh_fleet: Callable[..., Fleet], make_broker: Callable[..., MosquittoBroker]
) -> None:
    """On SIGHUP Mosquitto 2 re-reads the CRL (new connections are refused) and the ACL:
    the generated ACL denies a revoked identity everything, so a unit that stays connected
    can no longer publish or receive, although the broker does not disconnect it."""
    fleet = fresh_fleet()
    broker = make_broker(fleet)
    topics = fleet.topics
    revoked_hb = topics.unit("cam-03", Channel.HEARTBEAT)
    valid_hb = topics.unit("cam-01", Channel.HEARTBEAT)
    async with (
        mqtt_client(broker, "controller") as controller,
        mqtt_client(broker, "cam-03") as revoked,
        mqtt_client(broker, "cam-01") as valid,
    ):
        await controller.subscribe(topics.fleet_filter(Channel.HEARTBEAT), qos=1)
        await revoked.subscribe(topics.unit("cam-03", Channel.CMD), qos=1)
        await revoked.publish(revoked_hb, b"before", qos=1)
        assert [m.payload for m in await receive_until(controller, revoked_hb)] == [b"before"]

        fleet.revoke("cam-03")
        fleet.revoke("cam-02")  # probed below: a probe as cam-03 would take its session
        broker.reconfigure()
        broker.reload()
        for _ in range(100):
            refusal = await connect_refusal(broker, "cam-02")
            if refusal is not None:
                break
            await asyncio.sleep(0.05)
        assert "certificate revoked" in (refusal or "")
        assert "certificate revoked" in (await connect_refusal(broker, "cam-03") or "")

        await revoked.publish(revoked_hb, b"after", qos=1)  # still connected...
        await valid.publish(valid_hb, b"control", qos=1)
        received = await receive_until(controller, valid_hb)
        await controller.publish(topics.unit("cam-03", Channel.CMD), b"cmd", qos=1)
        with pytest.raises(TimeoutError):
            await receive_until(revoked, topics.unit("cam-03", Channel.CMD), within=0.5)
    assert [m.payload for m in received] == [b"control"]  # ...but muted
    assert await connect_refusal(broker, "cam-01") is None


async def test_revoked_unit_is_denied_by_the_acl_even_with_a_stale_crl(
    fresh_fleet: Callable[..., Fleet], make_broker: Callable[..., MosquittoBroker]
) -> None:
    fleet = fresh_fleet()
    stale_crl = fleet.layout.crl.read_bytes()
    fleet.revoke("cam-03")
    broker = make_broker(fleet, start=False)
    (broker.config_file.parent / "crl.pem").write_bytes(stale_crl)  # an operator's mistake
    broker.start()
    topics = fleet.topics
    async with (
        mqtt_client(broker, "controller") as controller,
        mqtt_client(broker, "cam-03") as revoked,
        mqtt_client(broker, "cam-01") as control,
    ):
        await controller.subscribe(topics.fleet_filter(Channel.HEARTBEAT), qos=1)
        await revoked.subscribe(topics.unit("cam-03", Channel.CMD), qos=1)
        await control.subscribe(topics.unit("cam-01", Channel.CMD), qos=1)
        await revoked.publish(topics.unit("cam-03", Channel.HEARTBEAT), b"revoked", qos=1)
        await control.publish(topics.unit("cam-01", Channel.HEARTBEAT), b"valid", qos=1)
        telemetry = await receive_until(controller, topics.unit("cam-01", Channel.HEARTBEAT))
        await controller.publish(topics.unit("cam-03", Channel.CMD), b"cmd", qos=1)
        await controller.publish(topics.unit("cam-01", Channel.CMD), b"cmd", qos=1)
        await receive_until(control, topics.unit("cam-01", Channel.CMD))
        with pytest.raises(TimeoutError):
            await receive_until(revoked, topics.unit("cam-03", Channel.CMD), within=0.5)
    assert [m.payload for m in telemetry] == [b"valid"]


async def test_simulator_writes_for_any_unit_but_reads_nothing(
    fleet: Fleet, broker: MosquittoBroker
) -> None:
    topics = fleet.topics
    sim_topics = [topics.unit("cam-01", Channel.HEARTBEAT), topics.unit("sim-9999", Channel.EVENT)]
    async with (
        mqtt_client(broker, "controller") as controller,
        mqtt_client(broker, "simulator") as simulator,
    ):
        await controller.subscribe(topics.fleet_filter(), qos=1)
        await simulator.subscribe("#", qos=1)
        await simulator.publish(topics.unit("cam-01", Channel.CMD), b"forged", qos=1)
        for topic in sim_topics:
            await simulator.publish(topic, b"sim", qos=1)
        received = await receive_until(controller, sim_topics[-1])
        await controller.publish(topics.unit("cam-01", Channel.CMD), b"cmd", qos=1)
        with pytest.raises(TimeoutError):
            await receive_until(simulator, "#", within=0.5)
    assert [m.topic.value for m in received] == sim_topics
