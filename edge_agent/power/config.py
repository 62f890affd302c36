"""Power settings: which source to poll, how often, and when the battery counts as low.

These are plain pydantic models so the agent's settings (TOML + environment) can nest
them as its `[power]` table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["DEFAULT_SYSFS_ROOT", "NutConfig", "PowerConfig"]

DEFAULT_SYSFS_ROOT = Path("/sys/class/power_supply")


class NutConfig(BaseModel):
    """Where the unit's NUT `upsd` listens and which UPS to read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(3493, ge=1, le=65535)
    ups: str = Field("ups", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    username: str | None = Field(None, min_length=1, pattern=r"^\S+$")
    password: SecretStr | None = None
    timeout_s: float = Field(3.0, gt=0, le=60, description="Bound on one poll, connect included")


class PowerConfig(BaseModel):
    """The `[power]` settings of a unit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["nut", "sysfs"] = "nut"
    nut: NutConfig = NutConfig()
    sysfs_root: Path = DEFAULT_SYSFS_ROOT
    poll_interval_s: float = Field(5.0, gt=0, le=3600)
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
