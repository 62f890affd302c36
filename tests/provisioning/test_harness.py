"""The shared test harness does what other tests rely on: outages on the same port,
retained messages across a clean restart, clear start failures, CI-strict binaries and
the loop-exception guard."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Callable
from typing import Any

import pytest

from protocol.topics import Channel
from provisioning import Fleet
from tests.harness import (
    BrokerError,
    MosquittoBroker,
    connect_refusal,
    mqtt_client,
    receive_until,
    require_binary,
)


async def test_outage_on_the_same_port_keeps_retained_messages(
    fleet: Fleet, broker: MosquittoBroker
) -> None:
    authz = fleet.topics.unit("cam-01", Channel.AUTHZ)
    port = broker.port
    async with mqtt_client(broker, "controller") as controller:
        await controller.publish(authz, b"authorization", qos=1, retain=True)
    await broker.stop_async()
    assert not broker.running
    assert await connect_refusal(broker, "cam-01", within=2) is not None
    await broker.start_async()
    assert broker.port == port
    async with mqtt_client(broker, "cam-01") as unit:
        await unit.subscribe(authz, qos=1)
        received = await receive_until(unit, authz)
    assert [(m.payload, m.retain) for m in received] == [(b"authorization", True)]


async def test_kill_and_start_again(fleet: Fleet, broker: MosquittoBroker) -> None:
    broker.kill()
    assert not broker.running
    await broker.start_async()
    assert await connect_refusal(broker, "cam-02") is None


def test_start_failure_quotes_the_broker_log(
    fleet: Fleet, make_broker: Callable[..., MosquittoBroker]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = make_broker(fleet, start=False, port=taken.getsockname()[1])
        with pytest.raises(BrokerError, match="Address already in use") as info:
            broker.start(timeout=5)
    assert "exited with code" in str(info.value)
    assert not broker.running


def test_require_binary_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    assert require_binary("sh").endswith("/sh")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_binary("no-such-binary-cctv")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-such-binary-cctv"):
        require_binary("no-such-binary-cctv")


async def test_a_swallowed_task_exception_is_caught(
    swallowed_loop_exceptions: list[dict[str, Any]],
) -> None:
    async def boom() -> None:
        raise RuntimeError("lost in a callback")

    loop = asyncio.get_running_loop()
    loop.call_soon(lambda: loop.create_task(boom(), name="dropped"))
    for _ in range(5):
        await asyncio.sleep(0)
    gc.collect()  # the dropped task is destroyed: "Task exception was never retrieved"
    assert any(isinstance(c.get("exception"), RuntimeError) for c in swallowed_loop_exceptions), (
        swallowed_loop_exceptions
    )
    swallowed_loop_exceptions.clear()  # expected here; any other test would now fail
