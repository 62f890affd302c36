"""What the unit knows about its power: one reading from a source, the snapshot the agent
publishes, and the events raised on transitions.

`PowerStatus` carries exactly the field names of `protocol.messages.PowerStatus` (without
the envelope), so the service builds the telemetry message with
`messages.PowerStatus(**status.model_dump(), unit_id=..., seq=..., ...)`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.faults import FaultCode

__all__ = [
    "POWER_FAULTS",
    "PowerEvent",
    "PowerEventKind",
    "PowerStatus",
    "SupplyReading",
    "SupplySource",
    "event_kind",
]

SupplySource = Literal["mains", "battery", "unknown"]


class SupplyReading(BaseModel):
    """One successful poll of a power source (NUT UPS or battery sysfs), before the
    unit's own thresholds are applied."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: SupplySource
    ups_status: str = Field("", description="NUT ups.status flags, e.g. 'OB DISCHRG'")
    charge_pct: float | None = Field(None, ge=0, le=100)
    runtime_s: float | None = Field(None, ge=0)
    input_voltage: float | None = None
    load_pct: float | None = Field(None, ge=0)
    test_result: str | None = None
    model: str | None = None
    device_low: bool = Field(False, description="The device itself says low (LB, FSD, Critical)")
    replace_battery: bool = False

    @property
    def on_battery(self) -> bool:
        return self.source == "battery"


class PowerStatus(BaseModel):
    """The unit's power snapshot. While the source does not answer (`comms_ok` false) the
    other fields keep their last known values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: SupplySource = "unknown"
    on_battery: bool = False
    low_battery: bool = False
    replace_battery: bool = False
    charge_pct: float | None = Field(None, ge=0, le=100)
    runtime_s: float | None = Field(None, ge=0)
    input_voltage: float | None = None
    load_pct: float | None = Field(None, ge=0)
    ups_status: str = ""
    test_result: str | None = None
    comms_ok: bool = False
    model: str | None = None


class PowerEventKind(StrEnum):
    MAINS_FAILURE = "mains_failure"
    MAINS_RESTORED = "mains_restored"
    BATTERY_LOW = "battery_low"
    BATTERY_LOW_CLEARED = "battery_low_cleared"
    REPLACE_BATTERY = "replace_battery"
    REPLACE_BATTERY_CLEARED = "replace_battery_cleared"
    UPS_SELFTEST_FAILED = "ups_selftest_failed"
    UPS_SELFTEST_FAILED_CLEARED = "ups_selftest_failed_cleared"
    UPS_COMMS_LOST = "ups_comms_lost"
    UPS_COMMS_RESTORED = "ups_comms_restored"

    @property
    def fault(self) -> FaultCode:
        return _KIND_FAULT[self][0]

    @property
    def raised(self) -> bool:
        return _KIND_FAULT[self][1]


#: The faults the power monitor owns, in the order their events are emitted.
POWER_FAULTS: tuple[FaultCode, ...] = (
    FaultCode.UPS_COMMS_LOST,
    FaultCode.MAINS_FAILURE,
    FaultCode.BATTERY_LOW,
    FaultCode.REPLACE_BATTERY,
    FaultCode.UPS_SELFTEST_FAILED,
)

_KIND_FAULT: dict[PowerEventKind, tuple[FaultCode, bool]] = {
    PowerEventKind.MAINS_FAILURE: (FaultCode.MAINS_FAILURE, True),
    PowerEventKind.MAINS_RESTORED: (FaultCode.MAINS_FAILURE, False),
    PowerEventKind.BATTERY_LOW: (FaultCode.BATTERY_LOW, True),
    PowerEventKind.BATTERY_LOW_CLEARED: (FaultCode.BATTERY_LOW, False),
    PowerEventKind.REPLACE_BATTERY: (FaultCode.REPLACE_BATTERY, True),
    PowerEventKind.REPLACE_BATTERY_CLEARED: (FaultCode.REPLACE_BATTERY, False),
    PowerEventKind.UPS_SELFTEST_FAILED: (FaultCode.UPS_SELFTEST_FAILED, True),
    PowerEventKind.UPS_SELFTEST_FAILED_CLEARED: (FaultCode.UPS_SELFTEST_FAILED, False),
    PowerEventKind.UPS_COMMS_LOST: (FaultCode.UPS_COMMS_LOST, True),
    PowerEventKind.UPS_COMMS_RESTORED: (FaultCode.UPS_COMMS_LOST, False),
}
_FAULT_KIND = {value: kind for kind, value in _KIND_FAULT.items()}


def event_kind(fault: FaultCode, raised: bool) -> PowerEventKind:
    """The event for a power fault being raised or cleared."""
    return _FAULT_KIND[(fault, raised)]


class PowerEvent(BaseModel):
    """A power transition: one fault raised or cleared, with the snapshot that caused it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: PowerEventKind
    fault: FaultCode
    raised: bool
    at: datetime
    status: PowerStatus
