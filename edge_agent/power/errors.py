"""Errors of the power package.

AgentError
└── PowerError
    └── PowerReadError          one reading failed (counts towards UPS comms lost)
        ├── UpsUnreachable      NUT upsd refused, timed out or closed the connection
        ├── UpsReadError        upsd answered with an error (unknown UPS, stale data...)
        └── BatterySysfsError   /sys/class/power_supply gives no usable supply
"""

from __future__ import annotations

from pathlib import Path

from edge_agent.errors import AgentError

__all__ = [
    "BatterySysfsError",
    "PowerError",
    "PowerReadError",
    "UpsReadError",
    "UpsUnreachable",
]


class PowerError(AgentError):
    """Root of the power package's errors."""


class PowerReadError(PowerError):
    """A poll of the power source failed."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class UpsUnreachable(PowerReadError):
    def __init__(self, host: str, port: int, ups: str, reason: str) -> None:
        super().__init__(f"UPS {ups}@{host}:{port}", f"unreachable: {reason}")
        self.host = host
        self.port = port
        self.ups = ups


class UpsReadError(PowerReadError):
    def __init__(self, host: str, port: int, ups: str, reason: str) -> None:
        super().__init__(f"UPS {ups}@{host}:{port}", reason)
        self.host = host
        self.port = port
        self.ups = ups


class BatterySysfsError(PowerReadError):
    def __init__(self, root: Path, reason: str) -> None:
        super().__init__(f"power supplies under {root}", reason)
        self.root = root
