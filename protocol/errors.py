"""The protocol's exceptions. Every failure to read a message raises one of these, never
another exception type.

    ProtocolError
    ├── MessageError                 a payload that cannot be accepted
    │   ├── PayloadTooLarge
    │   ├── MalformedMessage         not JSON, wrong types, missing fields
    │   ├── UnknownKind
    │   └── VersionMismatch          another major version
    ├── UnknownTopic
    ├── InvalidUnitId
    ├── SignatureRefused             a signed command/authorization that must not be obeyed
    │                                (`.reason` says why: see RefusalReason)
    └── SegmentError                 an encrypted segment file that fails verification
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "InvalidUnitId",
    "MalformedMessage",
    "MessageError",
    "PayloadTooLarge",
    "ProtocolError",
    "RefusalReason",
    "SegmentError",
    "SignatureRefused",
    "UnknownKind",
    "UnknownTopic",
    "VersionMismatch",
]


class ProtocolError(Exception):
    """Root of every error raised by `protocol`."""


class MessageError(ProtocolError):
    """A payload that cannot be accepted as a message."""


class PayloadTooLarge(MessageError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"payload of {size} bytes exceeds the {limit}-byte limit")
        self.size = size
        self.limit = limit


class MalformedMessage(MessageError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"malformed message: {reason}")
        self.reason = reason


class UnknownKind(MessageError):
    def __init__(self, kind: object) -> None:
        super().__init__(f"unknown message kind {kind!r}")
        self.kind = kind


class VersionMismatch(MessageError):
    def __init__(self, got: str, supported: str) -> None:
        super().__init__(f"protocol version {got} is not compatible with {supported}")
        self.got = got
        self.supported = supported


class UnknownTopic(ProtocolError):
    def __init__(self, topic: str) -> None:
        super().__init__(f"not a fleet topic: {topic!r}")
        self.topic = topic


class InvalidUnitId(ProtocolError, ValueError):
    def __init__(self, unit_id: str, reason: str) -> None:
        super().__init__(f"invalid unit id {unit_id!r}: {reason}")
        self.unit_id = unit_id
        self.reason = reason


class RefusalReason(StrEnum):
    """Why a signed command or authorization was refused. Each has its own value so a
    unit's acknowledgement says exactly what was wrong."""

    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    WRONG_UNIT = "wrong_unit"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    REPLAYED = "replayed"
    SUPERSEDED = "superseded"
    REVOKED = "revoked"


class SignatureRefused(ProtocolError):
    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class SegmentError(ProtocolError):
    """An encrypted segment that fails to decode or verify; names where."""

    def __init__(self, detail: str, *, segment_id: str | None = None, chunk: int | None = None):
        where = []
        if segment_id is not None:
            where.append(f"segment {segment_id}")
        if chunk is not None:
            where.append(f"chunk {chunk}")
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(prefix + detail)
        self.detail = detail
        self.segment_id = segment_id
        self.chunk = chunk
