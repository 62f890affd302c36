"""The controller's exceptions: one root, each subclass carrying the data it is about.

ControllerError
├── ConfigError              a bad settings file or value (names the key)
├── StoreError               the database cannot be opened or migrated
├── UnknownUnitError         no such unit in the inventory
├── InventoryError           a fleet directory that cannot be imported
├── CalloutError             a callout request that cannot be carried out
│   ├── UnknownCallout
│   └── TransitionRefused    an invalid lifecycle step (the message says why)
├── LinkError                the broker connection is down or refused a request
│   └── LinkRefused          the broker or TLS refuses this controller (retrying cannot fix)
└── AuditChainBroken         `audit verify` found an edited, deleted or inserted row
"""

from __future__ import annotations

__all__ = [
    "AuditChainBroken",
    "CalloutError",
    "ConfigError",
    "ControllerError",
    "InventoryError",
    "LinkError",
    "LinkRefused",
    "StoreError",
    "TransitionRefused",
    "UnknownCallout",
    "UnknownUnitError",
]


class ControllerError(Exception):
    """Root of every error raised by `controller`."""


class ConfigError(ControllerError):
    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"config {key}: {reason}")
        self.key = key
        self.reason = reason


class StoreError(ControllerError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"database {url}: {reason}")
        self.url = url
        self.reason = reason


class UnknownUnitError(ControllerError):
    def __init__(self, unit_id: str) -> None:
        super().__init__(f"no unit {unit_id!r} in the inventory")
        self.unit_id = unit_id


class InventoryError(ControllerError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class CalloutError(ControllerError):
    """A callout request that cannot be carried out."""


class UnknownCallout(CalloutError):
    def __init__(self, callout_id: int) -> None:
        super().__init__(f"no callout #{callout_id}")
        self.callout_id = callout_id


class TransitionRefused(CalloutError):
    def __init__(self, callout_id: int, current: str, requested: str, reason: str) -> None:
        super().__init__(f"callout #{callout_id} cannot go from {current} to {requested}: {reason}")
        self.callout_id = callout_id
        self.current = current
        self.requested = requested
        self.reason = reason


class LinkError(ControllerError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"broker link: {reason}")
        self.reason = reason


class LinkRefused(LinkError):
    """The broker (or TLS) refuses this controller: a CONNACK such as "not authorised", a
    certificate refused either way, a subscription refused. Retrying helps only once
    someone changes the broker, its ACL or the certificates."""


class AuditChainBroken(ControllerError):
    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"audit log row {seq}: {reason}")
        self.seq = seq
        self.reason = reason
