"""Validation of received messages: each is accepted, ignored or quarantined.

1. the topic must be a unit topic (`Topics.parse`); messages on the to-unit channels
   (our own commands and authorizations, echoed by the broker) are ignored;
2. the payload must decode (`protocol.messages.decode`), its `unit_id` must be the
   topic's and its kind must travel on the topic's channel; anything else is
   quarantined (topic, payload prefix, reason, time) and counted, never raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

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

__all__ = ["PREFIX_BYTES", "Accepted", "Batch", "Received", "Rejected", "classify", "quarantine"]

#: How much of a quarantined payload is kept.
PREFIX_BYTES = 256


@dataclass(slots=True)
class Received:
    topic: str
    payload: bytes
    received_at: datetime


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
            message = decode(item.payload)
        except MessageError as exc:
            out.rejected.append(Rejected(item, unit_id, _reason(exc), str(exc)))
            continue
        if message.unit_id != unit_id:
            detail = f"message unit_id {message.unit_id!r} on unit {unit_id!r}'s topic"
            out.rejected.append(Rejected(item, unit_id, "unit_mismatch", detail))
        elif channel_for(message) != channel:
            detail = f"a {message.kind!r} message on the {channel.value!r} channel"
            out.rejected.append(Rejected(item, unit_id, "wrong_channel", detail))
        else:
            out.accepted.append(Accepted(item, unit_id, message))
    return out


def quarantine(session: AsyncSession, rejected: Rejected) -> None:
    payload = rejected.item.payload
    session.add(
        QuarantinedMessage(
            received_at=rejected.item.received_at,
            topic=rejected.item.topic[:300],
            unit_id=rejected.unit_id,
            reason=rejected.reason,
            detail=rejected.detail[:500],
            payload_size=len(payload),
            payload_prefix=payload[:PREFIX_BYTES].decode("utf-8", "backslashreplace"),
        )
    )
