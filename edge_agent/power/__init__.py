"""Power awareness: the unit's UPS (NUT `upsd`) or battery (`/sys/class/power_supply`),
a `PowerStatus` snapshot, and fault events on mains failure, low battery, replace battery,
failed UPS self-test and lost UPS comms."""

from edge_agent.power.config import NutConfig, PowerConfig
from edge_agent.power.errors import (
    BatterySysfsError,
    PowerError,
    PowerReadError,
    UpsReadError,
    UpsUnreachable,
)
from edge_agent.power.monitor import EventCallback, PowerMonitor, PowerSource, selftest_verdict
from edge_agent.power.nut import NutSource, parse_status_flags, parse_ups_vars
from edge_agent.power.status import (
    POWER_FAULTS,
    PowerEvent,
    PowerEventKind,
    PowerStatus,
    SupplyReading,
    SupplySource,
    event_kind,
)
from edge_agent.power.sysfs import SysfsSource, read_power_supplies

__all__ = [
    "POWER_FAULTS",
    "BatterySysfsError",
    "EventCallback",
    "NutConfig",
    "NutSource",
    "PowerConfig",
    "PowerError",
    "PowerEvent",
    "PowerEventKind",
    "PowerMonitor",
    "PowerReadError",
    "PowerSource",
    "PowerStatus",
    "SupplyReading",
    "SupplySource",
    "SysfsSource",
    "UpsReadError",
    "UpsUnreachable",
    "event_kind",
    "parse_status_flags",
    "parse_ups_vars",
    "read_power_supplies",
    "selftest_verdict",
]
