"""The provisioning package's exceptions. Each message is one line fit for a terminal.

ProvisioningError
├── FleetNotFound            no fleet directory (or no fleet.toml) where one was expected
├── FleetConfigError         fleet.toml or issued.json unreadable or invalid
├── AlreadyExists            a file or identity exists and --force was not given
├── InvalidInput             a bad unit id, UPS URL, host name, passphrase...
├── UnknownUnit              a unit id that was never issued in this fleet
├── AlreadyRevoked
└── BrokerConfigError        the broker config cannot be written
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AlreadyExists",
    "AlreadyRevoked",
    "BrokerConfigError",
    "FleetConfigError",
    "FleetNotFound",
    "InvalidInput",
    "ProvisioningError",
    "UnknownUnit",
]


class ProvisioningError(Exception):
    """Root of every error raised by `provisioning`."""


class FleetNotFound(ProvisioningError):
    def __init__(self, path: Path) -> None:
        super().__init__(
            f"no fleet at {path} (create one with 'cctv-provision init', "
            "or point --fleet / CCTV_FLEET_DIR at it)"
        )
        self.path = path


class FleetConfigError(ProvisioningError):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class AlreadyExists(ProvisioningError):
    def __init__(self, path: Path, what: str = "file") -> None:
        super().__init__(f"{what} already exists: {path} (use --force to replace it)")
        self.path = path
        self.what = what


class InvalidInput(ProvisioningError, ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownUnit(ProvisioningError):
    def __init__(self, unit_id: str) -> None:
        super().__init__(f"unknown unit {unit_id!r}: it was never issued in this fleet")
        self.unit_id = unit_id


class AlreadyRevoked(ProvisioningError):
    def __init__(self, name: str) -> None:
        super().__init__(f"{name!r} is already revoked")
        self.name = name


class BrokerConfigError(ProvisioningError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
