"""The power monitor: polls a source, keeps the unit's `PowerStatus`, and turns transitions
into fault events (mains failure, battery low, replace battery, UPS self-test failed, UPS
comms lost), each raised once and cleared once.

The agent service reads `should_record`: false only while the unit runs from its battery
and the battery is low (the UPS's LB flag, or charge / runtime under the configured
thresholds). Then it seals the open segment, flushes the outbox and stops recording;
`wait_for_change()` wakes it when power returns. Mains failure alone never stops recording:
the UPS or battery is there to carry the unit through it.

While the source does not answer, the snapshot keeps its last known values with
`comms_ok` false, and `ups_comms_lost` is raised after `comms_lost_after` failed polls in a
row; no other fault changes until a reading comes back.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from edge_agent.power.config import PowerConfig
from edge_agent.power.errors import PowerReadError
from edge_agent.power.nut import NutSource
from edge_agent.power.status import (
    POWER_FAULTS,
    PowerEvent,
    PowerStatus,
    SupplyReading,
    event_kind,
)
from edge_agent.power.sysfs import SysfsSource
from protocol.faults import FaultCode

__all__ = ["EventCallback", "PowerMonitor", "PowerSource", "selftest_verdict"]

log = logging.getLogger(__name__)

EventCallback = Callable[[PowerEvent], Awaitable[None] | None]


class PowerSource(Protocol):
    """A UPS or battery the monitor polls; `read()` raises `PowerReadError` on failure."""

    @property
    def name(self) -> str: ...

    async def read(self) -> SupplyReading: ...

    async def aclose(self) -> None: ...


def selftest_verdict(test_result: str | None, was_failed: bool) -> bool:
    """Whether the UPS self-test counts as failed, given its `ups.test.result`. A failure
    stays until a passing result; neutral results ("In progress", "No test initiated")
    keep the previous verdict."""
    if test_result is None:
        return was_failed
    text = test_result.strip().lower()
    if "fail" in text or "error" in text:
        return True
    if "pass" in text or text in {"ok", "good"}:
        return False
    return was_failed


class PowerMonitor:
    """Owns the unit's power state. Run `run()` as one named task of the agent."""

    def __init__(
        self,
        source: PowerSource,
        config: PowerConfig | None = None,
        *,
        on_event: EventCallback | None = None,
        queue: asyncio.Queue[PowerEvent] | None = None,
        unit_id: str = "-",
        read_timeout_s: float | None = None,
    ) -> None:
        self._source = source
        self._config = config if config is not None else PowerConfig()
        self._on_event = on_event
        self._queue = queue
        self._unit = unit_id
        self._read_timeout_s = read_timeout_s or max(self._config.nut.timeout_s, 5.0) + 1.0
        self._status = PowerStatus()
        self._faults: frozenset[FaultCode] = frozenset()
        self._failures = 0
        self._reachable = False
        self._last_error: str | None = None
        self._last_reading_at: datetime | None = None
        self._generation = 0
        self._changed = asyncio.Event()
        self._poll_lock = asyncio.Lock()

    @classmethod
    def from_config(
        cls,
        config: PowerConfig,
        *,
        on_event: EventCallback | None = None,
        queue: asyncio.Queue[PowerEvent] | None = None,
        unit_id: str = "-",
    ) -> PowerMonitor:
        """A monitor on the source the config names (NUT upsd or battery sysfs)."""
        source: PowerSource
        if config.source == "nut":
            source = NutSource(config.nut)
        elif config.source == "sysfs":
            source = SysfsSource(config.sysfs_root)
        else:
            raise ValueError('power source "none" has nothing to monitor')
        return cls(source, config, on_event=on_event, queue=queue, unit_id=unit_id)

    @property
    def config(self) -> PowerConfig:
        """The settings the monitor polls and judges the battery by."""
        return self._config

    @property
    def source(self) -> PowerSource:
        """The UPS or battery the monitor polls."""
        return self._source

    # -- state --------------------------------------------------------------------------

    @property
    def status(self) -> PowerStatus:
        """The latest snapshot (last known values while comms are lost)."""
        return self._status

    @property
    def active_faults(self) -> frozenset[FaultCode]:
        return self._faults

    @property
    def power_ok(self) -> bool:
        """False while the unit runs from a low battery (or a low battery of unknown
        source): recording must stop cleanly. True on mains, even if the battery is low."""
        return not (self._status.low_battery and self._status.source != "mains")

    @property
    def should_record(self) -> bool:
        """Whether power allows recording: the same as `power_ok`."""
        return self.power_ok

    @property
    def generation(self) -> int:
        """Bumped on every transition; pass it to `wait_for_change(after=...)`."""
        return self._generation

    @property
    def last_reading_at(self) -> datetime | None:
        return self._last_reading_at

    @property
    def last_error(self) -> str | None:
        """Why the latest poll failed (None after a good poll)."""
        return self._last_error

    def status_for_selftest(self) -> tuple[bool, str | None]:
        """(the source answered its latest poll, the UPS's own last self-test result)."""
        return self._reachable, self._status.test_result

    async def check_now(self) -> tuple[bool, str | None]:
        """Poll now (delivering any events) and return `status_for_selftest()`."""
        await self.poll_once()
        return self.status_for_selftest()

    async def wait_for_change(self, after: int | None = None) -> PowerStatus:
        """Wait for the next transition (a fault raised or cleared, or `should_record`
        changing) and return the new snapshot. With `after` (a `generation` read earlier)
        return at once if a transition happened since. Bound it with `asyncio.timeout()`."""
        if after is not None and after != self._generation:
            return self._status
        await self._changed.wait()
        return self._status

    # -- polling ------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll forever at the configured interval. Never raises but CancelledError."""
        loop = asyncio.get_running_loop()
        log.info("unit=%s power monitor polling %s", self._unit, self._source.name)
        while True:
            started = loop.time()
            await self.poll_once()
            delay = self._config.poll_interval_s - (loop.time() - started)
            await asyncio.sleep(max(delay, 0.0))

    async def poll_once(self) -> list[PowerEvent]:
        """Read the source once, update the snapshot, deliver and return the events."""
        async with self._poll_lock:
            try:
                async with asyncio.timeout(self._read_timeout_s):
                    reading = await self._source.read()
            except (PowerReadError, TimeoutError) as exc:
                return await self._failed(str(exc) or f"no answer in {self._read_timeout_s:g} s")
            except Exception as exc:
                log.exception("unit=%s power source %s failed", self._unit, self._source.name)
                return await self._failed(f"{type(exc).__name__}: {exc}")
            return await self._succeeded(reading)

    async def _succeeded(self, reading: SupplyReading) -> list[PowerEvent]:
        if self._failures >= self._config.comms_lost_after:
            log.info("unit=%s power source %s answers again", self._unit, self._source.name)
        self._failures = 0
        self._reachable = True
        self._last_error = None
        self._last_reading_at = datetime.now(UTC)
        low = self._is_low(reading, self._status.low_battery)
        selftest_failed = selftest_verdict(
            reading.test_result, FaultCode.UPS_SELFTEST_FAILED in self._faults
        )
        faults = {
            FaultCode.MAINS_FAILURE: reading.on_battery,
            FaultCode.BATTERY_LOW: low,
            FaultCode.REPLACE_BATTERY: reading.replace_battery,
            FaultCode.UPS_SELFTEST_FAILED: selftest_failed,
        }
        status = PowerStatus(
            source=reading.source,
            on_battery=reading.on_battery,
            low_battery=low,
            replace_battery=reading.replace_battery,
            charge_pct=reading.charge_pct,
            runtime_s=reading.runtime_s,
            input_voltage=reading.input_voltage,
            load_pct=reading.load_pct,
            ups_status=reading.ups_status,
            test_result=reading.test_result,
            comms_ok=True,
            model=reading.model,
        )
        return await self._apply(status, frozenset(f for f, on in faults.items() if on))

    async def _failed(self, reason: str) -> list[PowerEvent]:
        self._failures += 1
        self._reachable = False
        self._last_error = reason
        if self._failures == 1:
            log.warning("unit=%s power poll failed: %s", self._unit, reason)
        else:
            log.debug(
                "unit=%s power poll failed (%d in a row): %s", self._unit, self._failures, reason
            )
        if self._failures < self._config.comms_lost_after:
            return []
        status = self._status.model_copy(update={"comms_ok": False})
        return await self._apply(status, self._faults | {FaultCode.UPS_COMMS_LOST})

    def _is_low(self, reading: SupplyReading, was_low: bool) -> bool:
        if reading.device_low:
            return True
        if not reading.on_battery:
            return False
        c = self._config
        charge_limit = c.low_charge_pct + (c.low_clear_margin_pct if was_low else 0.0)
        runtime_limit = c.low_runtime_s + (c.low_clear_margin_s if was_low else 0.0)
        charge = reading.charge_pct
        if c.low_charge_pct > 0 and charge is not None and charge < charge_limit:
            return True
        return (
            c.low_runtime_s > 0
            and reading.runtime_s is not None
            and (reading.runtime_s < runtime_limit)
        )

    async def _apply(self, status: PowerStatus, faults: frozenset[FaultCode]) -> list[PowerEvent]:
        was_ok = self.power_ok
        before = self._faults
        self._status = status
        self._faults = faults
        now = datetime.now(UTC)
        events = [
            PowerEvent(
                kind=event_kind(fault, fault in faults),
                fault=fault,
                raised=fault in faults,
                at=now,
                status=status,
            )
            for fault in POWER_FAULTS
            if (fault in faults) != (fault in before)
        ]
        if events or self.power_ok != was_ok:
            self._generation += 1
            self._changed.set()
            self._changed = asyncio.Event()
        for event in events:
            await self._deliver(event)
        return events

    async def _deliver(self, event: PowerEvent) -> None:
        s = event.status
        if event.raised:
            log.warning(
                "unit=%s fault=%s raised event=%s ups_status=%r charge=%s runtime=%s",
                self._unit, event.fault, event.kind, s.ups_status, s.charge_pct, s.runtime_s,
            )  # fmt: skip
        else:
            log.info("unit=%s fault=%s cleared event=%s", self._unit, event.fault, event.kind)
        if self._queue is not None:
            try:
                self._queue.put_nowait(event)
            except asyncio.QueueFull:
                log.error(
                    "unit=%s fault=%s event queue full, event dropped", self._unit, event.fault
                )
        if self._on_event is not None:
            try:
                result = self._on_event(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("unit=%s fault=%s event callback failed", self._unit, event.fault)

    async def aclose(self) -> None:
        await self._source.aclose()
