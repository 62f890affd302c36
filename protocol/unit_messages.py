"""The messages a unit sends to the controller: state, heartbeat, power, self-test reports,
events, its recording index and command acknowledgements.

Each model's docstring says when the unit sends it. They share the `Envelope` of
`protocol.envelope`; `protocol.messages` decodes them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from protocol.envelope import Envelope, Ident, Model, Percent, Text, Utc
from protocol.faults import FaultCode
from protocol.segment.manifest import ChainEntry, Checkpoint
from protocol.topics import Channel

__all__ = [
    "MAX_SNAPSHOT_JPEG_BYTES",
    "AuthorizationRefused",
    "CheckResult",
    "CommandAck",
    "Event",
    "EventBody",
    "FaultCleared",
    "FaultRaised",
    "GateChanged",
    "Heartbeat",
    "PowerStatus",
    "RecordingIndex",
    "RecordingStarted",
    "RecordingStopped",
    "ReferenceSnapshot",
    "SegmentSummary",
    "SelfTestReport",
    "StorageStatus",
    "UnitState",
]


class UnitState(Envelope):
    """Sent by the unit, retained; the broker publishes `online=False` as its will."""

    channel: ClassVar[Channel] = Channel.STATE
    kind: Literal["state"] = "state"
    online: bool
    agent_version: Text = ""
    reason: Text = Field("", description="Why offline, when known (shutdown, power)")


class StorageStatus(Model):
    total_bytes: int = Field(ge=0)
    free_bytes: int = Field(ge=0)
    footage_bytes: int = Field(0, ge=0)
    held_bytes: int = Field(0, ge=0)
    segments: int = Field(0, ge=0)
    oldest_segment_at: Utc | None = None


class Heartbeat(Envelope):
    """Sent by the unit every heartbeat interval (default 30 s)."""

    channel: ClassVar[Channel] = Channel.HEARTBEAT
    kind: Literal["heartbeat"] = "heartbeat"
    recording: bool
    recording_reason: Text = Field("", description="Why not recording, in words")
    gate_open: bool = Field(description="Holds a valid deployment authorization")
    gate_reason: Text = ""
    deployment_id: Ident | None = None
    storage: StorageStatus | None = None
    outbox_depth: int = Field(0, ge=0)
    outbox_dropped: int = Field(0, ge=0, description="Messages dropped since boot (full outbox)")
    clock_offset_s: float | None = None
    uptime_s: float = Field(0, ge=0)
    temperature_c: float | None = None
    open_faults: list[FaultCode] = Field(default_factory=list)
    position: tuple[float, float] | None = Field(None, description="(lat, lon) if known")


class PowerStatus(Envelope):
    """Sent by the unit on every power change and periodically."""

    channel: ClassVar[Channel] = Channel.POWER
    kind: Literal["power"] = "power"
    source: Literal["mains", "battery", "unknown"]
    on_battery: bool
    low_battery: bool = False
    replace_battery: bool = False
    charge_pct: Percent | None = None
    runtime_s: float | None = Field(None, ge=0)
    input_voltage: float | None = None
    load_pct: float | None = Field(None, ge=0)
    ups_status: Text = Field("", description="Raw NUT ups.status flags, e.g. 'OB DISCHRG'")
    test_result: Text | None = None
    comms_ok: bool = True
    model: Text | None = None


class CheckResult(Model):
    """One check of a self-test (its names: `protocol.checks.CheckName`)."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    verdict: Literal["pass", "warn", "fail", "not_assessed"] = Field(
        description="not_assessed (since 1.2): the check could not judge and measured nothing"
    )
    value: float | None = None
    threshold: float | None = None
    unit: Annotated[str, Field(max_length=16)] = ""
    message: Text = ""
    fault: FaultCode | None = None


class SelfTestReport(Envelope):
    """Sent by the unit after every self-test: at boot, on schedule, on command."""

    channel: ClassVar[Channel] = Channel.SELFTEST
    kind: Literal["selftest"] = "selftest"
    report_id: Ident
    trigger: Literal["boot", "schedule", "command", "manual"]
    command_id: Ident | None = None
    started_at: Utc
    finished_at: Utc
    verdict: Literal["pass", "warn", "fail"] = Field(
        description="The worst verdict of the checks that were assessed; warn when none was"
    )
    checks: list[CheckResult] = Field(max_length=64)


class FaultRaised(Model):
    type: Literal["fault_raised"] = "fault_raised"
    code: FaultCode
    check: str | None = None
    detail: Text = ""
    facts: dict[str, str | float | int | bool | None] = Field(default_factory=dict)


class FaultCleared(Model):
    type: Literal["fault_cleared"] = "fault_cleared"
    code: FaultCode
    detail: Text = ""


class GateChanged(Model):
    type: Literal["gate_changed"] = "gate_changed"
    open: bool
    reason: Text
    deployment_id: Ident | None = None
    authorization_id: Ident | None = None


class AuthorizationRefused(Model):
    """A signed message on the authz topic that the unit would not accept."""

    type: Literal["authorization_refused"] = "authorization_refused"
    authorization_id: str = Field("", max_length=128)
    reason: str = Field(max_length=32, description="A RefusalReason value")
    detail: Text = ""


class RecordingStarted(Model):
    type: Literal["recording_started"] = "recording_started"
    deployment_id: Ident | None = None


class RecordingStopped(Model):
    type: Literal["recording_stopped"] = "recording_stopped"
    reason: Text


EventBody = Annotated[
    FaultRaised
    | FaultCleared
    | GateChanged
    | AuthorizationRefused
    | RecordingStarted
    | RecordingStopped,
    Field(discriminator="type"),
]


class Event(Envelope):
    """Sent by the unit when something changes: faults, gate, recording."""

    channel: ClassVar[Channel] = Channel.EVENT
    kind: Literal["event"] = "event"
    at: Utc
    event: EventBody


class SegmentSummary(Model):
    segment_id: Ident
    started_at: Utc
    ended_at: Utc
    size: int = Field(ge=0)
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    chain_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    truncated: bool = False
    deleted: bool = False


class RecordingIndex(Envelope):
    """Sent by the unit each time it seals a segment: the segments sealed (for the
    controller's evidence view), the entries its index chain gained since its previous
    report (segments added, deletions) and its signed checkpoint of the chain's head after
    them. The controller keeps its own copy of the chain and checks each report continues
    it (see `protocol.segment.manifest` for what the chain and the signature cover)."""

    channel: ClassVar[Channel] = Channel.INDEX
    kind: Literal["recording_index"] = "recording_index"
    segments: list[SegmentSummary] = Field(max_length=500)
    entries: list[ChainEntry] = Field(
        default_factory=list,
        max_length=500,
        description="Chain entries since the previous report, in chain order",
    )
    checkpoint: Checkpoint | None = Field(
        None, description="The unit's Ed25519-signed checkpoint of its chain head"
    )


class CommandAck(Envelope):
    """Sent by the unit for every command it receives, at each step."""

    channel: ClassVar[Channel] = Channel.CMD_ACK
    kind: Literal["command_ack"] = "command_ack"
    command_id: Ident
    status: Literal["accepted", "rejected", "done", "failed"]
    reason: Text = ""
    result: dict[str, Any] = Field(default_factory=dict)


#: The largest picture a reference snapshot carries (its JPEG bytes, before base64).
MAX_SNAPSHOT_JPEG_BYTES = 512 * 1024
_JPEG_START = b"\xff\xd8\xff"


class ReferenceSnapshot(Envelope):
    """Sent by the unit once for each `reference_snapshot` command: one still picture of
    the camera's own view, as the camera delivers it, BEFORE privacy masks (masks are
    drawn on this picture, so it must show what they will hide). JPEG, at most
    `MAX_SNAPSHOT_JPEG_BYTES`, base64 in `jpeg`, with its SHA-256."""

    channel: ClassVar[Channel] = Channel.SNAPSHOT
    kind: Literal["reference_snapshot"] = "reference_snapshot"
    request_id: Ident = Field(description="The request_id of the command it answers")
    captured_at: Utc = Field(description="When the camera took the picture (UTC)")
    width: int = Field(ge=1, le=8192, description="Picture width in pixels")
    height: int = Field(ge=1, le=8192, description="Picture height in pixels")
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="Of the JPEG bytes")]
    jpeg: str = Field(
        max_length=4 * -(-MAX_SNAPSHOT_JPEG_BYTES // 3),
        description="The JPEG picture, base64 (RFC 4648, with padding, no line breaks)",
    )

    @model_validator(mode="after")
    def _picture(self) -> ReferenceSnapshot:
        data = self.image()
        if len(data) > MAX_SNAPSHOT_JPEG_BYTES:
            raise ValueError(f"jpeg holds {len(data)} bytes, over {MAX_SNAPSHOT_JPEG_BYTES}")
        if not data.startswith(_JPEG_START):
            raise ValueError("jpeg does not hold a JPEG picture")
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise ValueError("sha256 is not the SHA-256 of the picture")
        return self

    def image(self) -> bytes:
        """The JPEG bytes."""
        try:
            return base64.b64decode(self.jpeg, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"jpeg is not base64: {exc}") from exc
