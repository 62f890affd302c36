"""Battery units: the kernel's `/sys/class/power_supply/<name>/` attributes.

Supplies of type Mains / USB / Wireless are external power (`online` 1 or 0); Battery and
UPS types are batteries (`status`, `capacity`, `capacity_level`, `health`, ...). Device
batteries (`scope` = Device: a mouse, a pen) and absent ones (`present` = 0) are ignored.
With no external supply listed, the battery's own status says whether it discharges.

The reading's `ups_status` is written in NUT's flag words (OL/OB, CHRG, DISCHRG, LB, RB)
so the control room reads one vocabulary whatever the unit's hardware.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from edge_agent.power.errors import BatterySysfsError
from edge_agent.power.status import SupplyReading, SupplySource

__all__ = ["SysfsSource", "read_power_supplies"]

log = logging.getLogger(__name__)

_EXTERNAL_TYPES = frozenset({"mains", "usb", "wireless"})
_BATTERY_TYPES = frozenset({"battery", "ups"})
#: `health` values that mean the battery must be replaced.
_REPLACE_HEALTH = frozenset({"dead", "unspecified failure"})
#: Bound on one read: some fuel gauges answer over a slow bus.
_READ_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class _Supply:
    name: str
    attrs: dict[str, str]

    def get(self, key: str) -> str | None:
        return self.attrs.get(key)

    def number(self, key: str) -> float | None:
        raw = self.attrs.get(key)
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            return None
        return value if math.isfinite(value) else None

    @property
    def type(self) -> str:
        return (self.get("type") or "").lower()


_ATTRS = (
    "type",
    "online",
    "status",
    "capacity",
    "capacity_level",
    "health",
    "present",
    "scope",
    "time_to_empty_now",
    "energy_now",
    "power_now",
    "voltage_now",
    "model_name",
    "manufacturer",
)


def _load(directory: Path) -> _Supply:
    attrs: dict[str, str] = {}
    for attr in _ATTRS:
        try:
            attrs[attr] = (directory / attr).read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            # Absent attribute, or one the driver refuses to read right now (EIO, ENODATA).
            continue
    return _Supply(directory.name, attrs)


def _runtime(battery: _Supply) -> float | None:
    runtime = battery.number("time_to_empty_now")
    if runtime is not None and runtime > 0:
        return runtime
    energy, power = battery.number("energy_now"), battery.number("power_now")
    if energy is not None and power is not None and power > 0:
        return energy / power * 3600.0  # uWh / uW -> h -> s
    return None


def read_power_supplies(root: Path) -> SupplyReading:
    """Read every supply under `root` into one reading. Blocking; raises BatterySysfsError."""
    try:
        directories = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError as exc:
        raise BatterySysfsError(root, exc.strerror or str(exc)) from exc
    supplies = [_load(d) for d in directories]
    external = [s for s in supplies if s.type in _EXTERNAL_TYPES]
    batteries = [
        s
        for s in supplies
        if s.type in _BATTERY_TYPES
        and (s.get("scope") or "").lower() != "device"
        and s.get("present") != "0"
    ]
    if not external and not batteries:
        raise BatterySysfsError(root, "no Battery or Mains power supply found")

    statuses = {(b.get("status") or "").lower() for b in batteries}
    source: SupplySource = "unknown"
    if external:
        source = "mains" if any(s.get("online") == "1" for s in external) else "battery"
        if source == "battery" and not batteries:
            source = "unknown"
    elif "discharging" in statuses:
        source = "battery"
    elif statuses & {"charging", "full", "not charging"}:
        source = "mains"

    capacities = [c for b in batteries if (c := b.number("capacity")) is not None]
    charge = sum(capacities) / len(capacities) if capacities else None
    runtimes = [r for b in batteries if (r := _runtime(b)) is not None]
    device_low = any((b.get("capacity_level") or "").lower() == "critical" for b in batteries)
    replace = any((b.get("health") or "").lower() in _REPLACE_HEALTH for b in batteries)
    voltages = [v for s in external if s.get("online") == "1" and (v := s.number("voltage_now"))]

    flags = {"mains": ["OL"], "battery": ["OB"], "unknown": []}[source]
    if "charging" in statuses:
        flags.append("CHRG")
    if "discharging" in statuses:
        flags.append("DISCHRG")
    if device_low:
        flags.append("LB")
    if replace:
        flags.append("RB")

    model = None
    if batteries:
        first = batteries[0]
        words = [w for w in (first.get("manufacturer"), first.get("model_name")) if w]
        model = " ".join(words) or None
    return SupplyReading(
        source=source,
        ups_status=" ".join(flags),
        charge_pct=None if charge is None else min(max(charge, 0.0), 100.0),
        runtime_s=sum(runtimes) if runtimes and source == "battery" else None,
        input_voltage=voltages[0] / 1e6 if voltages else None,
        load_pct=None,
        test_result=None,
        model=model,
        device_low=device_low,
        replace_battery=replace,
    )


class SysfsSource:
    """Reads the battery and mains supplies under a sysfs root (configurable for tests)."""

    def __init__(self, root: Path) -> None:
        self._root = root

    @property
    def name(self) -> str:
        return f"sysfs:{self._root}"

    async def read(self) -> SupplyReading:
        try:
            async with asyncio.timeout(_READ_TIMEOUT_S):
                return await asyncio.to_thread(read_power_supplies, self._root)
        except TimeoutError as exc:
            raise BatterySysfsError(self._root, f"no answer in {_READ_TIMEOUT_S:g} s") from exc

    async def aclose(self) -> None:
        return None
