"""Shared fixtures for the whole suite.

- `fleet`: one provisioned fleet for the session (units cam-01, cam-02, cam-03, the
  simulator identity and the probes probe-1, probe-2 with the controller's rights, for
  test clients beside a running controller; evidence passphrase `FLEET_PASSPHRASE`).
  The broker makes a certificate's CN its client id: two connections with one identity
  knock each other off, so give each concurrent client its own. Treat it as read-only:
  a test that revokes or re-issues takes a `fresh_fleet()` instead.
- `fresh_fleet(...)`: a factory for a private fleet (same keywords as `make_fleet`).
- `broker`: a running Mosquitto (TLS, ACL, CRL) for `fleet` on a free loopback port.
- `make_broker(fleet, ...)`: a factory for more brokers (e.g. for a `fresh_fleet`).
- `require_binary(name)`: skip locally, FAIL when env CI is set.
- autouse: a test fails if an exception reached the asyncio loop's default exception
  handler (an exception swallowed in a callback or a task nobody awaited). A test that
  provokes one on purpose inspects and clears `swallowed_loop_exceptions`.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioning import Fleet
from tests.harness import (
    FLEET_PASSPHRASE,
    MosquittoBroker,
    make_fleet,
    require_binary,
)

__all__ = ["FLEET_PASSPHRASE", "require_binary"]


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return make_fleet(tmp_path_factory.mktemp("session-fleet") / "fleet")


@pytest.fixture
def fresh_fleet(tmp_path: Path) -> Callable[..., Fleet]:
    count = 0

    def factory(**kwargs: Any) -> Fleet:
        nonlocal count
        count += 1
        return make_fleet(tmp_path / f"fleet-{count}", **kwargs)

    return factory


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., MosquittoBroker]]:
    require_binary("mosquitto")
    brokers: list[MosquittoBroker] = []

    def factory(fleet: Fleet, *, start: bool = True, **kwargs: Any) -> MosquittoBroker:
        broker = MosquittoBroker(fleet, tmp_path / f"broker-{len(brokers) + 1}", **kwargs)
        brokers.append(broker)
        if start:
            broker.start()
        return broker

    yield factory
    for broker in brokers:
        broker.stop()


@pytest.fixture
def broker(fleet: Fleet, make_broker: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    return make_broker(fleet)


@pytest.fixture(autouse=True)
def swallowed_loop_exceptions(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[dict[str, Any]]]:
    """Fail the test when an asyncio loop had to log an exception nobody handled."""
    caught: list[dict[str, Any]] = []
    original = asyncio.BaseEventLoop.default_exception_handler

    def record(self: asyncio.BaseEventLoop, context: dict[str, Any]) -> None:
        caught.append(context)
        original(self, context)

    monkeypatch.setattr(asyncio.BaseEventLoop, "default_exception_handler", record)
    yield caught
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        gc.collect()  # surfaces "Task exception was never retrieved" of dropped tasks
    if caught:
        details = "; ".join(
            f"{c.get('message', 'exception')}: {c.get('exception')!r}" for c in caught
        )
        pytest.fail(f"exception swallowed by the asyncio loop: {details}", pytrace=False)
