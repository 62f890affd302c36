"""The controller's exceptions: one root, each subclass carrying the data it is about, and
each class its HTTP `status`, which the JSON API and the pages both answer with.

ControllerError                                                                    500
├── ConfigError              a bad settings file or value (names the key)           500
├── StoreError               the database cannot be opened or migrated              500
├── UnknownUnitError         no such unit in the inventory                          404
├── NotOnContract            a contractor asked for a unit of another contract      403
├── InventoryError           a fleet directory that cannot be imported              422
├── CalloutError             a callout request that cannot be carried out           409
│   ├── UnknownCallout                                                              404
│   └── TransitionRefused    an invalid lifecycle step (the message says why)       409
├── LinkError                the broker connection is down or refused a request     503
│   └── LinkRefused          the broker or TLS refuses this controller (retrying    503
│                            cannot fix)
└── AuditChainBroken         `audit verify` found an edited, deleted or inserted row 500

The other packages root their errors here too (`controller.deployments.errors`,
`controller.accounts.errors`, ...), each class with its own `status`.

`sentence(error)` is how any error reads to a person, on a page or in a JSON `detail`.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "INTERNAL_ERROR",
    "AuditChainBroken",
    "CalloutError",
    "ConfigError",
    "ControllerError",
    "InventoryError",
    "LinkError",
    "LinkRefused",
    "NotOnContract",
    "StoreError",
    "TransitionRefused",
    "UnknownCallout",
    "UnknownUnitError",
    "sentence",
]

#: What a person is told of a failure of the controller itself (the details go to the log).
INTERNAL_ERROR = (
    "The controller hit an internal error; it has been logged. Try again, and tell the "
    "administrator if it persists."
)


class ControllerError(Exception):
    """Root of every error raised by `controller`. `status` is the HTTP status a request
    that ends in this error is answered with: 4xx when the request cannot be carried out
    (the message says why), 5xx when the controller cannot serve it."""

    status: ClassVar[int] = 500


class ConfigError(ControllerError):
    status = 500

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"config {key}: {reason}")
        self.key = key
        self.reason = reason


class StoreError(ControllerError):
    status = 500

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"database {url}: {reason}")
        self.url = url
        self.reason = reason


class UnknownUnitError(ControllerError):
    status = 404

    def __init__(self, unit_id: str) -> None:
        super().__init__(f"no unit {unit_id!r} in the inventory")
        self.unit_id = unit_id


class NotOnContract(ControllerError):
    """A contractor's user asked for a unit their contract does not cover."""

    status = 403

    def __init__(self, unit_id: str, contractor: str) -> None:
        super().__init__(f"unit {unit_id} is not on the {contractor} contract")
        self.unit_id = unit_id
        self.contractor = contractor


class InventoryError(ControllerError):
    status = 422

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class CalloutError(ControllerError):
    """A callout request that cannot be carried out."""

    status = 409


class UnknownCallout(CalloutError):
    status = 404

    def __init__(self, callout_id: int) -> None:
        super().__init__(f"no callout #{callout_id}")
        self.callout_id = callout_id


class TransitionRefused(CalloutError):
    status = 409

    def __init__(self, callout_id: int, current: str, requested: str, reason: str) -> None:
        super().__init__(f"callout #{callout_id} cannot go from {current} to {requested}: {reason}")
        self.callout_id = callout_id
        self.current = current
        self.requested = requested
        self.reason = reason


class LinkError(ControllerError):
    status = 503

    def __init__(self, reason: str) -> None:
        super().__init__(f"broker link: {reason}")
        self.reason = reason


class LinkRefused(LinkError):
    """The broker (or TLS) refuses this controller: a CONNACK such as "not authorised", a
    certificate refused either way, a subscription refused. Retrying helps only once
    someone changes the broker, its ACL or the certificates."""

    status = 503


class AuditChainBroken(ControllerError):
    status = 500

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"audit log row {seq}: {reason}")
        self.seq = seq
        self.reason = reason


def sentence(error: BaseException | str) -> str:
    """How `error` reads to a person: its message as a sentence (capital first letter, a
    full stop), `"no callout #7"` -> `"No callout #7."`.

    A failure of the controller itself (a `ControllerError` whose status is 500 or more,
    other than the broker link being down, or any other exception) reads as
    `INTERNAL_ERROR`: its message may name files, addresses or database URLs."""
    if isinstance(error, BaseException):
        shown = isinstance(error, ControllerError) and (
            error.status < 500 or isinstance(error, LinkError)
        )
        if not shown:
            return INTERNAL_ERROR
    text = str(error).strip()
    if not text:
        return "The request cannot be carried out."
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".?!" else text + "."
