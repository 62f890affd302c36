"""The unit's power, as the agent reports it: the power monitor built from the `[power]`
settings, a power status on each transition and every `link.power_interval_s`, and the
fault each transition raises or clears.

A transition also wakes recording control: on low battery it stops recording cleanly
before the power goes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from edge_agent.config import RuntimeSettings
from edge_agent.health import Faults
from edge_agent.link import MessageClass
from edge_agent.power import PowerConfig, PowerEvent, PowerMonitor
from edge_agent.telemetry import MessageBuilder, Telemetry

__all__ = ["PowerReports"]

#: Queues a message in the given class (None: the class its kind implies).
PublishAs = Callable[[MessageBuilder, MessageClass | None], Coroutine[Any, Any, None]]


class PowerReports:
    """Owns the power monitor; `run()` is the agent's periodic power-report task."""

    def __init__(
        self,
        config: PowerConfig,
        *,
        unit_id: str,
        faults: Faults,
        settings: RuntimeSettings,
        telemetry: Telemetry,
        publish: PublishAs,
        spawn: Callable[[Coroutine[Any, Any, object]], None],
        on_change: Callable[[], None],
    ) -> None:
        self._faults = faults
        self._settings = settings
        self._telemetry = telemetry
        self._publish = publish
        self._spawn = spawn
        self._on_change = on_change
        self.monitor = PowerMonitor.from_config(config, on_event=self._power_event, unit_id=unit_id)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._settings.power_interval_s)
            await self._publish(self._telemetry.power(self.monitor.status.model_dump()), None)

    def _power_event(self, event: PowerEvent) -> None:
        self._spawn(self._handle_power_event(event))

    async def _handle_power_event(self, event: PowerEvent) -> None:
        snapshot = event.status.model_dump()
        await self._publish(self._telemetry.power(snapshot), MessageClass.ESSENTIAL)
        facts = {k: v for k, v in snapshot.items() if isinstance(v, str | int | float | bool)}
        if event.raised:
            await self._faults.raise_fault(
                event.fault, event.kind.value.replace("_", " "), check="power", facts=facts
            )
        else:
            await self._faults.clear_fault(event.fault, event.kind.value.replace("_", " "))
        self._on_change()
