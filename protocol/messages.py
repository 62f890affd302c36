"""Every message on the fleet's MQTT topics, as pydantic v2 models, and the one way to
read and write them.

Each model says who sends it: `protocol.unit_messages` holds what a unit sends,
`protocol.controller_messages` what the controller sends, and all share the envelope of
`protocol.envelope` (`v`, `kind`, `unit_id`, `seq`, `sent_at`, `boot_id`). Here they are
told apart by `kind` (a discriminated union). `decode()` is the one way in: whatever the
bytes, it returns a message or raises a `MessageError`. Every message kind and its parts
can still be imported from here.

Version rule (as ESPHome's API): `v` is "MAJOR.MINOR". Another major version is refused;
another minor is accepted with a warning, and fields unknown to this minor are ignored.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

from protocol.controller_messages import (
    Authorization,
    AuthorizationBody,
    Command,
    CommandAction,
    CommandBody,
    GeoFence,
    RecordingProfile,
    ReferenceSnapshotRequest,
    ReleaseHold,
    RequestExport,
    Revocation,
    RevocationBody,
    SelfTestNow,
    SetConfig,
    SetHold,
    TimeRange,
    UploadEvidence,
)
from protocol.envelope import PROTOCOL_VERSION, Envelope, Model, utcnow
from protocol.errors import MalformedMessage, PayloadTooLarge, UnknownKind, VersionMismatch
from protocol.topics import Channel
from protocol.unit_messages import (
    MAX_SNAPSHOT_JPEG_BYTES,
    AuthorizationRefused,
    CheckResult,
    CommandAck,
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
    SelfTestReport,
    StorageStatus,
    UnitState,
)

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MAX_SNAPSHOT_JPEG_BYTES",
    "MAX_SNAPSHOT_PAYLOAD_BYTES",
    "PROTOCOL_VERSION",
    "AnyMessage",
    "Authorization",
    "AuthorizationBody",
    "AuthorizationRefused",
    "CheckResult",
    "Command",
    "CommandAck",
    "CommandAction",
    "CommandBody",
    "Envelope",
    "Event",
    "FaultCleared",
    "FaultRaised",
    "GateChanged",
    "GeoFence",
    "Heartbeat",
    "Message",
    "Model",
    "PowerStatus",
    "RecordingIndex",
    "RecordingProfile",
    "RecordingStarted",
    "RecordingStopped",
    "ReferenceSnapshot",
    "ReferenceSnapshotRequest",
    "ReleaseHold",
    "RequestExport",
    "Revocation",
    "RevocationBody",
    "SegmentSummary",
    "SelfTestNow",
    "SelfTestReport",
    "SetConfig",
    "SetHold",
    "StorageStatus",
    "TimeRange",
    "UnitState",
    "UploadEvidence",
    "channel_for",
    "decode",
    "encode",
    "utcnow",
]

log = logging.getLogger(__name__)

MAJOR, MINOR = (int(p) for p in PROTOCOL_VERSION.split("."))
#: Largest payload accepted of every kind but a reference snapshot. A recording index batch
#: of 500 segments is ~150 KB.
MAX_PAYLOAD_BYTES = 256 * 1024
#: Largest reference snapshot: its JPEG in base64 (4/3 of the bytes) and the envelope.
MAX_SNAPSHOT_PAYLOAD_BYTES = 4 * -(-MAX_SNAPSHOT_JPEG_BYTES // 3) + 4 * 1024

Message = (
    UnitState
    | Heartbeat
    | PowerStatus
    | SelfTestReport
    | Event
    | RecordingIndex
    | CommandAck
    | ReferenceSnapshot
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
        ReferenceSnapshot,
        Command,
        Authorization,
        Revocation,
    )
}

_SNAPSHOT_KIND = ReferenceSnapshot.model_fields["kind"].default


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


#: Validation context of a message of this very version (unknown fields refused).
_CURRENT = {"lenient": False}


def _current(payload: bytes | bytearray | str) -> Message | None:
    """`payload` as a message when it is a valid one of this very version, as nearly
    every message is: parsed and validated in one pass (pydantic's own JSON parser, no
    Python objects in between). None for anything else, which `decode` then takes step
    by step to say what it is (another version, or what is wrong). The same messages
    pass both ways: a payload must carry `v` (the models default it), and what only
    Python's `json` reads (UTF-16, a byte order mark) goes the long way."""
    try:
        message = _ADAPTER.validate_json(payload, context=_CURRENT)
    except (ValidationError, ValueError, TypeError, RecursionError):
        return None
    if message.v != PROTOCOL_VERSION or "v" not in message.model_fields_set:
        return None
    return message


def decode(payload: bytes | bytearray | str, *, max_bytes: int | None = None) -> Message:
    """Parse and validate one message. Raises only `MessageError` subclasses.

    Size: at most `max_bytes` when given; otherwise `MAX_PAYLOAD_BYTES`, or
    `MAX_SNAPSHOT_PAYLOAD_BYTES` for a reference snapshot. A payload above the larger bound
    is refused before it is parsed."""
    size = len(payload.encode() if isinstance(payload, str) else payload)
    largest = MAX_SNAPSHOT_PAYLOAD_BYTES if max_bytes is None else max_bytes
    if size > largest:
        raise PayloadTooLarge(size, largest)
    if size <= (MAX_PAYLOAD_BYTES if max_bytes is None else max_bytes):
        current = _current(payload)
        if current is not None:
            return current
    # Above the common bound only a reference snapshot may pass: anything else that big is
    # refused as too large, whatever else is wrong with it.
    oversized = max_bytes is None and size > MAX_PAYLOAD_BYTES
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        if oversized:
            raise PayloadTooLarge(size, MAX_PAYLOAD_BYTES) from exc
        raise MalformedMessage(f"not JSON ({type(exc).__name__})") from exc
    kind = data.get("kind") if isinstance(data, dict) else None
    if oversized and kind != _SNAPSHOT_KIND:
        raise PayloadTooLarge(size, MAX_PAYLOAD_BYTES)
    if not isinstance(data, dict):
        raise MalformedMessage("top level must be a JSON object")
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
