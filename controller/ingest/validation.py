"""Validation of received messages: each is accepted, ignored or quarantined.

1. the topic must be a unit topic (`Topics.parse`); messages on the to-unit channels
   (our own commands and authorizations, echoed by the broker) are ignored;
2. the payload must decode (`protocol.messages.decode`), its `unit_id` must be the
   topic's, its kind must travel on the topic's channel and its seq must fit a signed
   64-bit integer (what both databases store); anything else is quarantined (topic,
   payload prefix, reason, time) and counted, never raised.

Units' text is stored the same way on every database: PostgreSQL cannot store a NUL
character in text, and no database can store half of a UTF-16 surrogate pair as UTF-8.
So in a valid message, every string (keys included) has NUL and unpaired surrogates
(JSON escapes `\\u0000`, `\\ud800`...) replaced by U+FFFD before it is decoded, on SQLite
and PostgreSQL alike, and before anything hashes it (the audit chain). A quarantined
payload's prefix is kept with such bytes escaped (`\\x00`). This is done where the text
enters rather than in the column types, so that the value an audit entry hashes is the
value stored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from controller.store.fleet import QuarantinedMessage
from protocol.errors import (
    MessageError,
    PayloadTooLarge,
    ProtocolError,
    UnknownKind,
    UnknownTopic,
    VersionMismatch,
)
from protocol.messages import Message, channel_for, decode
from protocol.topics import Direction, Topics

if TYPE_CHECKING:
    from controller.link import Delivery

__all__ = [
    "MAX_SEQ",
    "PREFIX_BYTES",
    "Accepted",
    "Batch",
    "Received",
    "Rejected",
    "classify",
    "clean_text",
    "quarantine",
]

#: How much of a quarantined payload is kept.
PREFIX_BYTES = 256
#: The highest seq both databases can store (BIGINT).
MAX_SEQ = 2**63 - 1
#: JSON escapes that decode to text no database stores (see the module docstring).
_UNSTORABLE_ESCAPES = (b"\\u0000", b"\\ud", b"\\uD")
_REPLACEMENT = "\ufffd"


@dataclass(slots=True)
class Received:
    """One message as it came from the broker; `delivery` is what acknowledges it (None
    for messages submitted without a broker, e.g. in tests)."""

    topic: str
    payload: bytes
    received_at: datetime
    delivery: Delivery | None = None


@dataclass(slots=True)
class Accepted:
    item: Received
    unit_id: str
    message: Message


@dataclass(slots=True)
class Rejected:
    item: Received
    unit_id: str | None
    reason: str
    detail: str


@dataclass(slots=True)
class Batch:
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def _reason(exc: ProtocolError) -> str:
    if isinstance(exc, PayloadTooLarge):
        return "too_large"
    if isinstance(exc, UnknownKind):
        return "unknown_kind"
    if isinstance(exc, VersionMismatch):
        return "version"
    return "malformed"


def clean_text(text: str) -> str:
    """`text` with NUL and unpaired surrogates replaced by U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", _REPLACEMENT)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join(_REPLACEMENT if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _decode(payload: bytes) -> Message:
    if b"\\u" in payload and any(escape in payload for escape in _UNSTORABLE_ESCAPES):
        try:
            document = json.loads(payload)
        except (ValueError, RecursionError):
            pass  # decode() says what is wrong with it
        else:
            payload = json.dumps(_clean(document)).encode()
    return decode(payload)


def classify(topics: Topics, items: Sequence[Received]) -> Batch:
    out = Batch()
    for item in items:
        try:
            unit_id, channel = topics.parse(item.topic)
        except UnknownTopic as exc:
            out.rejected.append(Rejected(item, None, "unknown_topic", str(exc)))
            continue
        if channel.direction is Direction.TO_UNIT:
            continue  # the controller's own commands/authorizations, echoed back
        try:
            message = _decode(item.payload)
        except MessageError as exc:
            out.rejected.append(Rejected(item, unit_id, _reason(exc), str(exc)))
            continue
        if message.unit_id != unit_id:
            detail = f"message unit_id {message.unit_id!r} on unit {unit_id!r}'s topic"
            out.rejected.append(Rejected(item, unit_id, "unit_mismatch", detail))
        elif channel_for(message) != channel:
            detail = f"a {message.kind!r} message on the {channel.value!r} channel"
            out.rejected.append(Rejected(item, unit_id, "wrong_channel", detail))
        elif message.seq > MAX_SEQ:
            detail = f"seq {message.seq} is above the highest storable ({MAX_SEQ})"
            out.rejected.append(Rejected(item, unit_id, "malformed", detail))
        else:
            out.accepted.append(Accepted(item, unit_id, message))
    return out


def quarantine(session: AsyncSession, rejected: Rejected) -> None:
    payload = rejected.item.payload
    prefix = payload[:PREFIX_BYTES].decode("utf-8", "backslashreplace")
    session.add(
        QuarantinedMessage(
            received_at=rejected.item.received_at,
            topic=clean_text(rejected.item.topic)[:300],
            unit_id=None if rejected.unit_id is None else clean_text(rejected.unit_id)[:64],
            reason=rejected.reason,
            detail=clean_text(rejected.detail)[:500],
            payload_size=len(payload),
            payload_prefix=prefix.replace("\x00", "\\x00"),
        )
    )
