"""The load simulator against the real broker: one connection per simulator identity, so
its connections never take each other's session, and every message it counts as
published reaches the centre."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

from controller.errors import InventoryError
from controller.simulate import Simulator, simulator_identities
from protocol.messages import decode
from protocol.topics import Channel
from provisioning import Fleet
from tests.harness import MosquittoBroker, mqtt_client


async def test_each_connection_speaks_as_its_own_simulator_identity(
    fresh_fleet: Callable[..., Fleet], make_broker: Callable[..., MosquittoBroker]
) -> None:
    fleet = fresh_fleet(units=(), probes=("probe-1",))
    for name in ("simulator-10", "simulator-2"):
        fleet.issue_client(name)
    broker = make_broker(fleet, persistence=False)
    identities = simulator_identities(fleet.root)
    assert [i.name for i in identities] == ["simulator", "simulator-2", "simulator-10"]
    sim = Simulator(
        host=broker.host,
        port=broker.port,
        identities=identities,
        units=40,
        interval_s=0.4,
        topic_root=fleet.topics.root,
        heartbeats_only=True,
        units_per_connection=20,  # two connections: the third identity is not needed
    )
    received: dict[str, int] = {}
    async with mqtt_client(broker, "probe-1") as centre:
        await centre.subscribe(fleet.topics.fleet_filter(Channel.HEARTBEAT), qos=1)

        async def count() -> None:
            async for message in centre.messages:
                assert isinstance(message.payload, bytes)
                unit_id = decode(message.payload).unit_id
                received[unit_id] = received.get(unit_id, 0) + 1

        counter = asyncio.create_task(count(), name="centre-counter")
        stats = await sim.run(1.0)
        async with asyncio.timeout(5):
            while sum(received.values()) < stats.published:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        counter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await counter
    assert stats.failed == 0 and stats.published >= 2 * 40
    assert sum(received.values()) == stats.published
    assert len(received) == 40  # every simulated unit, over both connections
    connections = broker.connections()
    assert ("simulator", "simulator") in connections
    assert ("simulator-2", "simulator-2") in connections
    assert not any(client_id == "simulator-10" for client_id, _ in connections)
    assert broker.takeovers() == []


def test_simulator_identities_are_checked(fresh_fleet: Callable[..., Fleet]) -> None:
    fleet = fresh_fleet(units=(), probes=())
    with pytest.raises(InventoryError, match="simulator-2"):
        simulator_identities(fleet.root, ["simulator-2"])
    with pytest.raises(InventoryError, match="only once"):
        simulator_identities(fleet.root, ["simulator", "simulator"])
    assert [i.name for i in simulator_identities(fleet.root, ["simulator"])] == ["simulator"]
    bare = fresh_fleet(units=(), simulator=False, probes=())
    with pytest.raises(InventoryError, match="no simulator identity"):
        simulator_identities(bare.root)
