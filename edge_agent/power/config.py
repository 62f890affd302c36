"""Power settings: the `[power]` table of `agent.toml` (with its `[power.nut]` table): which
source to poll, how often, and when the battery counts as low.

The power monitor takes `PowerConfig` as it is (`PowerMonitor.from_config`). The NUT
settings may also be written flat in `[power]` (`nut_host`, `nut_port`, `nut_ups`,
`nut_username`, `nut_password`) and the poll interval as `poll_s`: they are read as
`nut.host` ... and `poll_interval_s`; giving a setting both ways is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["DEFAULT_SYSFS_ROOT", "NutConfig", "PowerConfig"]

DEFAULT_SYSFS_ROOT = Path("/sys/class/power_supply")

#: The flat spelling of each NUT setting in `[power]`, and its name in `[power.nut]`.
_FLAT_NUT = {
    "nut_host": "host",
    "nut_port": "port",
    "nut_ups": "ups",
    "nut_username": "username",
    "nut_password": "password",
}


class NutConfig(BaseModel):
    """Where the unit's NUT `upsd` listens and which UPS to read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", min_length=1, description="upsd host")
    port: int = Field(3493, ge=1, le=65535, description="upsd port")
    ups: str = Field(
        "ups", min_length=1, pattern=r"^[A-Za-z0-9._-]+$", description="UPS name in upsd"
    )
    username: str | None = Field(
        None, min_length=1, pattern=r"^\S+$", description="upsd user (none: no login)"
    )
    password: SecretStr | None = Field(None, description="upsd password of that user")
    timeout_s: float = Field(3.0, gt=0, le=60, description="Bound on one poll, connect included")


class PowerConfig(BaseModel):
    """The `[power]` settings of a unit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["none", "nut", "sysfs"] = Field(
        "none",
        description="How power is watched: a NUT UPS, the battery in sysfs, or not at all",
    )
    nut: NutConfig = Field(default_factory=NutConfig, description="The UPS, for source nut")
    sysfs_root: Path = Field(
        DEFAULT_SYSFS_ROOT, description="Battery sysfs folder, for source sysfs"
    )
    poll_interval_s: float = Field(5.0, gt=0, le=3600, description="Poll interval")
    comms_lost_after: int = Field(
        3, ge=1, le=1000, description="Consecutive failed polls before UPS comms are lost"
    )
    low_charge_pct: float = Field(
        20.0, ge=0, le=100, description="On battery, charge under this is low (0 disables)"
    )
    low_runtime_s: float = Field(
        300.0, ge=0, description="On battery, runtime under this is low (0 disables)"
    )
    low_clear_margin_pct: float = Field(
        5.0, ge=0, le=50, description="Charge must rise this far above the threshold to clear"
    )
    low_clear_margin_s: float = Field(
        60.0, ge=0, description="Runtime must rise this far above the threshold to clear"
    )

    @model_validator(mode="before")
    @classmethod
    def _flat_spelling(cls, data: Any) -> Any:
        """Read `nut_host = ...` as `nut.host` and `poll_s` as `poll_interval_s`."""
        if not isinstance(data, dict):
            return data
        flat = [key for key in _FLAT_NUT if key in data]
        if not flat and "poll_s" not in data:
            return data
        data = dict(data)
        if "poll_s" in data:
            if "poll_interval_s" in data:
                raise ValueError("poll_s and poll_interval_s are one setting: give only one")
            data["poll_interval_s"] = data.pop("poll_s")
        if flat:
            nut = data.get("nut", {})
            if isinstance(nut, NutConfig):
                nut = nut.model_dump(exclude_unset=True)
            if not isinstance(nut, dict):
                return data  # the model's own validation names what is wrong with it
            nut = dict(nut)
            for key in flat:
                name = _FLAT_NUT[key]
                if name in nut:
                    raise ValueError(f"{key} and nut.{name} are one setting: give only one")
                nut[name] = data.pop(key)
            data["nut"] = nut
        return data
