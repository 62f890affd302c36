"""Builders of the messages the unit sends: each takes the seq the outbox allocates."""

from __future__ import annotations

import base64
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any

from protocol.messages import (
    AuthorizationRefused,
    CommandAck,
    Envelope,
    Event,
    FaultCleared,
    FaultRaised,
    GateChanged,
    Heartbeat,
    PowerStatus,
    RecordingIndex,
    RecordingStarted,
    RecordingStopped,
    ReferenceSnapshot,
    SegmentSummary,
    StorageStatus,
    utcnow,
)
from protocol.segment.manifest import ChainEntry, Checkpoint

if TYPE_CHECKING:
    from edge_agent.capture.reference import ReferencePicture
    from edge_agent.selftest.runner import SelfTestReport

__all__ = ["MessageBuilder", "Publish", "Telemetry"]

#: Builds a message once the outbox has allocated its seq.
MessageBuilder = Callable[[int], Envelope]
#: Queues a message for the controller (the agent's `_publish`: it logs, never raises).
Publish = Callable[[MessageBuilder], Coroutine[Any, Any, None]]

EventBody = (
    FaultRaised
    | FaultCleared
    | GateChanged
    | AuthorizationRefused
    | RecordingStarted
    | RecordingStopped
)


class Telemetry:
    """Binds the unit id and boot id; every method returns a builder `seq -> message`."""

    def __init__(self, unit_id: str, boot_id: Callable[[], str]) -> None:
        self.unit_id = unit_id
        self._boot_id = boot_id

    def _env(self, seq: int) -> dict[str, Any]:
        return {
            "unit_id": self.unit_id,
            "seq": seq,
            "sent_at": utcnow(),
            "boot_id": self._boot_id(),
        }

    def event(self, body: EventBody, at: datetime | None = None) -> MessageBuilder:
        return lambda seq: Event(**self._env(seq), at=at or utcnow(), event=body)

    def heartbeat(self, **fields: Any) -> MessageBuilder:
        return lambda seq: Heartbeat(**self._env(seq), **fields)

    def power(self, snapshot: dict[str, Any]) -> MessageBuilder:
        return lambda seq: PowerStatus(**self._env(seq), **snapshot)

    def selftest(
        self, report: SelfTestReport, report_id: str, command_id: str | None
    ) -> MessageBuilder:
        return lambda seq: report.to_message(
            unit_id=self.unit_id,
            seq=seq,
            boot_id=self._boot_id(),
            report_id=report_id,
            command_id=command_id,
        )

    def segments(
        self, segments: list[SegmentSummary], entries: list[ChainEntry], checkpoint: Checkpoint
    ) -> MessageBuilder:
        return lambda seq: RecordingIndex(
            **self._env(seq), segments=segments, entries=entries, checkpoint=checkpoint
        )

    def ack(
        self, command_id: str, status: Any, reason: str, result: dict[str, Any]
    ) -> MessageBuilder:
        return lambda seq: CommandAck(
            **self._env(seq),
            command_id=command_id,
            status=status,
            reason=reason[:2000],
            result=result,
        )

    def snapshot(self, request_id: str, picture: ReferencePicture) -> MessageBuilder:
        encoded = base64.b64encode(picture.jpeg).decode("ascii")
        return lambda seq: ReferenceSnapshot(
            **self._env(seq),
            request_id=request_id,
            captured_at=picture.captured_at,
            width=picture.width,
            height=picture.height,
            sha256=picture.sha256,
            jpeg=encoded,
        )

    @staticmethod
    def storage(
        total: int, free: int, footage: int, held: int, segments: int, oldest: datetime | None
    ) -> StorageStatus:
        return StorageStatus(
            total_bytes=total,
            free_bytes=free,
            footage_bytes=footage,
            held_bytes=held,
            segments=segments,
            oldest_segment_at=oldest,
        )
