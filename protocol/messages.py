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
    SegmentSummary,
    SelfTestReport,
    StorageStatus,
    UnitState,
)

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
#: Largest payload accepted. A recording index batch of 500 segments is ~150 KB.
MAX_PAYLOAD_BYTES = 256 * 1024

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
