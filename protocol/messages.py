"""Every message on the fleet's MQTT topics, as pydantic v2 models.

Each model says who sends it. All share the envelope (`v`, `kind`, `unit_id`, `seq`,
`sent_at`, `boot_id`) and are told apart by `kind` (a discriminated union). `decode()` is
the one way in: whatever the bytes, it returns a message or raises a `MessageError`.

Version rule (as ESPHome's API): `v` is "MAJOR.MINOR". Another major version is refused;
another minor is accepted with a warning, and fields unknown to this minor are ignored.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from protocol.errors import MalformedMessage, PayloadTooLarge, UnknownKind, VersionMismatch
from protocol.faults import FaultCode
from protocol.topics import UNIT_ID_PATTERN, Channel

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "PROTOCOL_VERSION",
    "AnyMessage",
    "Authorization",
    "AuthorizationBody",
    "AuthorizationRefused",
    "CheckResult",
    "Command",
    "CommandAck",
    "CommandBody",
    "Event",
    "FaultCleared",
    "FaultRaised",
    "GateChanged",
    "GeoFence",
    "Heartbeat",
    "Message",
    "PowerStatus",
    "RecordingIndex",
    "RecordingProfile",
    "RecordingStarted",
    "RecordingStopped",
    "Revocation",
    "RevocationBody",
    "SegmentSummary",
    "SelfTestReport",
    "StorageStatus",
    "UnitState",
    "channel_for",
    "decode",
    "encode",
]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = "1.0"
MAJOR, MINOR = (int(p) for p in PROTOCOL_VERSION.split("."))
#: Largest payload accepted. A recording index batch of 500 segments is ~150 KB.
MAX_PAYLOAD_BYTES = 256 * 1024

UnitId = Annotated[str, Field(pattern=UNIT_ID_PATTERN.pattern, description="Unit id (= cert CN)")]
Ident = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
Text = Annotated[str, Field(max_length=2000)]
Percent = Annotated[float, Field(ge=0, le=100)]
Utc = AwareDatetime


def utcnow() -> datetime:
    return datetime.now(UTC)


class Model(BaseModel):
    """Base of every protocol model: immutable, unknown fields refused (except from a newer
    minor version, see `decode`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown_from_newer_minor(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and info.context and info.context.get("lenient"):
            known = set(cls.model_fields)
            return {k: v for k, v in data.items() if k in known}
        return data


class Envelope(Model):
    v: str = Field(PROTOCOL_VERSION, pattern=r"^\d+\.\d+$", description="Schema MAJOR.MINOR")
    unit_id: UnitId
    seq: int = Field(ge=0, description="Monotonic per sender and unit, persisted across restarts")
    sent_at: Utc = Field(description="When the sender sent it (UTC)")
    boot_id: Ident = Field(description="Changes each time the sender starts")

    #: The topic channel this kind travels on.
    channel: ClassVar[Channel]

    @field_validator("sent_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


# ---------------------------------------------------------------- unit -> controller


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
    name: Annotated[str, Field(min_length=1, max_length=64)]
    verdict: Literal["pass", "warn", "fail"]
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
    verdict: Literal["pass", "warn", "fail"]
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
    """Sent by the unit: batches of segment summaries, for the controller's evidence view."""

    channel: ClassVar[Channel] = Channel.INDEX
    kind: Literal["recording_index"] = "recording_index"
    segments: list[SegmentSummary] = Field(max_length=500)
    checkpoint_signature: str | None = Field(None, description="Unit Ed25519 sig of chain head")


class CommandAck(Envelope):
    """Sent by the unit for every command it receives, at each step."""

    channel: ClassVar[Channel] = Channel.CMD_ACK
    kind: Literal["command_ack"] = "command_ack"
    command_id: Ident
    status: Literal["accepted", "rejected", "done", "failed"]
    reason: Text = ""
    result: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------- controller -> unit


class SelfTestNow(Model):
    action: Literal["selftest_now"] = "selftest_now"


class SetHold(Model):
    action: Literal["set_hold"] = "set_hold"
    hold_id: Ident
    start: Utc
    end: Utc
    reference: Annotated[str, Field(min_length=1, max_length=200)]

    @model_validator(mode="after")
    def _ordered(self) -> SetHold:
        if self.end <= self.start:
            raise ValueError("hold end must be after its start")
        return self


class ReleaseHold(Model):
    action: Literal["release_hold"] = "release_hold"
    hold_id: Ident


class SetConfig(Model):
    action: Literal["set_config"] = "set_config"
    values: dict[str, Any] = Field(
        description="Dotted keys of the agent's runtime-settable config, e.g. "
        "'selftest.schedule' or 'thresholds.blur_ratio'"
    )


class RequestExport(Model):
    action: Literal["request_export"] = "request_export"
    export_id: Ident
    start: Utc
    end: Utc


CommandAction = Annotated[
    SelfTestNow | SetHold | ReleaseHold | SetConfig | RequestExport,
    Field(discriminator="action"),
]


class CommandBody(Model):
    """The signed part of a command."""

    command_id: Ident
    unit_id: UnitId
    issued_at: Utc
    expires_at: Utc
    issued_by: Text = ""
    action: CommandAction


class Signed(Model):
    key_id: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$", description="Signer key fingerprint")]
    signature: Annotated[str, Field(min_length=1, max_length=200, description="base64 Ed25519")]


class Command(Envelope, Signed):
    """Sent by the controller to one unit; signed (Ed25519) over the canonical body."""

    channel: ClassVar[Channel] = Channel.CMD
    kind: Literal["command"] = "command"
    body: CommandBody


class GeoFence(Model):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: float = Field(gt=0, le=100_000)


Point = tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]]


class RecordingProfile(Model):
    segment_seconds: int = Field(60, ge=5, le=3600)
    max_fps: float | None = Field(None, gt=0)
    bitrate_kbps: int | None = Field(None, gt=0, description="Only for re-encoded (masked) video")


class AuthorizationBody(Model):
    """The signed part of a deployment authorization."""

    authorization_id: Ident
    unit_id: UnitId
    deployment_id: Ident
    location_name: Text
    geofence: GeoFence | None = None
    valid_from: Utc
    valid_until: Utc
    issued_at: Utc
    masks: list[list[Point]] = Field(default_factory=list, description="Polygons, 0..1 coords")
    retention_days: int = Field(31, ge=1, le=3650)
    profile: RecordingProfile = Field(default_factory=RecordingProfile)

    @model_validator(mode="after")
    def _window(self) -> AuthorizationBody:
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        if any(len(poly) < 3 for poly in self.masks):
            raise ValueError("a privacy mask polygon needs at least 3 points")
        return self


class Authorization(Envelope, Signed):
    """Sent by the controller, retained on the unit's authz topic."""

    channel: ClassVar[Channel] = Channel.AUTHZ
    kind: Literal["authorization"] = "authorization"
    body: AuthorizationBody


class RevocationBody(Model):
    revocation_id: Ident
    unit_id: UnitId
    authorization_id: Ident
    deployment_id: Ident
    issued_at: Utc
    reason: Text = ""


class Revocation(Envelope, Signed):
    """Sent by the controller, retained on the unit's authz topic in place of the
    authorization it revokes."""

    channel: ClassVar[Channel] = Channel.AUTHZ
    kind: Literal["revocation"] = "revocation"
    body: RevocationBody


Message = (
    UnitState
    | Heartbeat
    | PowerStatus
    | SelfTestReport
    | Event
    | RecordingIndex
    | CommandAck
    | Command
    | Authorization
    | Revocation
)
AnyMessage = Annotated[Message, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[Message] = TypeAdapter(AnyMessage)
KINDS: dict[str, type[Envelope]] = {
    m.model_fields["kind"].default: m
    for m in (
        UnitState,
        Heartbeat,
        PowerStatus,
        SelfTestReport,
        Event,
        RecordingIndex,
        CommandAck,
        Command,
        Authorization,
        Revocation,
    )
}


def channel_for(message: Envelope) -> Channel:
    return type(message).channel


def encode(message: Envelope) -> bytes:
    """Serialise a message to its wire form (compact JSON, UTF-8)."""
    return message.model_dump_json(exclude_none=False).encode()


def _check_version(v: object) -> bool:
    """Return True when the minor version differs (accepted leniently)."""
    if not isinstance(v, str):
        raise MalformedMessage("'v' must be a string 'MAJOR.MINOR'")
    try:
        major, minor = (int(p) for p in v.split("."))
    except ValueError as exc:
        raise MalformedMessage(f"'v' must be 'MAJOR.MINOR', got {v!r}") from exc
    if major != MAJOR:
        raise VersionMismatch(v, PROTOCOL_VERSION)
    if minor != MINOR:
        log.warning("protocol minor version differs: got=%s ours=%s", v, PROTOCOL_VERSION)
        return True
    return False


def decode(payload: bytes | bytearray | str, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> Message:
    """Parse and validate one message. Raises only `MessageError` subclasses."""
    size = len(payload.encode() if isinstance(payload, str) else payload)
    if size > max_bytes:
        raise PayloadTooLarge(size, max_bytes)
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedMessage(f"not JSON ({type(exc).__name__})") from exc
    if not isinstance(data, dict):
        raise MalformedMessage("top level must be a JSON object")
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise UnknownKind(kind)
    lenient = _check_version(data.get("v", None))
    try:
        return _ADAPTER.validate_python(data, context={"lenient": lenient})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise MalformedMessage(f"{kind}: {where}: {first['msg']}") from exc
    except (ValueError, TypeError, RecursionError) as exc:
        raise MalformedMessage(f"{kind}: {exc}") from exc
