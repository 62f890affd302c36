"""The unit's UPS through Network UPS Tools: one `LIST VAR` per poll to `upsd` over TCP.

`aionut` keeps one connection open and reconnects on the next call after a failure; every
poll is bounded by `asyncio.timeout()`, and a poll cut short drops the connection so the
next one starts clean.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping

from aionut import AIONUTClient, NUTCommandError, NUTError, NUTLoginError

from edge_agent.power.config import NutConfig
from edge_agent.power.errors import UpsReadError, UpsUnreachable
from edge_agent.power.status import SupplyReading, SupplySource

__all__ = ["NutSource", "parse_status_flags", "parse_ups_vars"]

log = logging.getLogger(__name__)


def parse_status_flags(ups_status: str) -> frozenset[str]:
    """`ups.status` as a set of flags: "OB DISCHRG LB" -> {"OB", "DISCHRG", "LB"}."""
    return frozenset(flag.upper() for flag in ups_status.split())


def _number(variables: Mapping[str, str], name: str) -> float | None:
    raw = variables.get(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        log.debug("ignoring non-numeric NUT variable %s=%r", name, raw)
        return None
    return value if math.isfinite(value) else None


def _text(variables: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = variables.get(name, "").strip()
        if value:
            return value
    return None


def parse_ups_vars(variables: Mapping[str, str]) -> SupplyReading:
    """Turn a UPS's NUT variables into a reading. Raises `ValueError` without `ups.status`."""
    raw_status = variables.get("ups.status")
    if raw_status is None:
        raise ValueError("the UPS reports no ups.status")
    flags = parse_status_flags(raw_status)
    source: SupplySource = "unknown"
    if "OB" in flags:
        source = "battery"
    elif "OL" in flags:
        source = "mains"
    charge = _number(variables, "battery.charge")
    runtime = _number(variables, "battery.runtime")
    load = _number(variables, "ups.load")
    return SupplyReading(
        source=source,
        ups_status=" ".join(raw_status.split()),
        charge_pct=None if charge is None else min(max(charge, 0.0), 100.0),
        runtime_s=None if runtime is None or runtime < 0 else runtime,
        input_voltage=_number(variables, "input.voltage"),
        load_pct=None if load is None or load < 0 else load,
        test_result=_text(variables, "ups.test.result"),
        model=_text(variables, "ups.model", "device.model"),
        device_low="LB" in flags or "FSD" in flags,
        replace_battery="RB" in flags,
    )


class NutSource:
    """Reads one UPS from `upsd`. Not safe to share between tasks that poll concurrently
    (the monitor polls from one task)."""

    def __init__(self, config: NutConfig) -> None:
        self._config = config
        self._client = self._new_client()

    @property
    def config(self) -> NutConfig:
        return self._config

    @property
    def name(self) -> str:
        c = self._config
        return f"nut:{c.ups}@{c.host}:{c.port}"

    def _new_client(self) -> AIONUTClient:
        c = self._config
        return AIONUTClient(
            host=c.host,
            port=c.port,
            username=c.username,
            password=c.password.get_secret_value() if c.password is not None else None,
            timeout=c.timeout_s,
            persistent=True,
        )

    async def read(self) -> SupplyReading:
        """Poll the UPS once. Raises `UpsUnreachable` or `UpsReadError`."""
        c = self._config
        try:
            async with asyncio.timeout(c.timeout_s):
                variables = await self._client.list_vars(c.ups)
        except TimeoutError as exc:
            self._client.disconnect()
            raise UpsUnreachable(c.host, c.port, c.ups, f"no answer in {c.timeout_s:g} s") from exc
        except NUTLoginError as exc:
            self._client.disconnect()
            raise UpsReadError(c.host, c.port, c.ups, f"credentials refused: {exc}") from exc
        except NUTCommandError as exc:
            # upsd answered ERR: unknown UPS, stale data (driver lost the UPS), access denied.
            raise UpsReadError(c.host, c.port, c.ups, str(exc)) from exc
        except NUTError as exc:
            self._client.disconnect()
            raise UpsUnreachable(c.host, c.port, c.ups, str(exc) or type(exc).__name__) from exc
        try:
            return parse_ups_vars(variables)
        except ValueError as exc:
            raise UpsReadError(c.host, c.port, c.ups, str(exc)) from exc

    async def aclose(self) -> None:
        self._client.shutdown()
        # The transport closes its socket on the next loop iteration: let it run.
        await asyncio.sleep(0)
