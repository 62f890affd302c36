"""The messages the controller sends to a unit: signed commands, and the deployment
authorizations and revocations retained on the unit's authz topic.

Each carries a signed body (Ed25519 over its canonical JSON, see `protocol.signing`) in the
`Envelope` of `protocol.envelope`; `protocol.messages` decodes them.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from protocol.envelope import Envelope, Ident, Model, Text, UnitId, Utc
from protocol.topics import Channel

#: A case number as the control room writes it, e.g. "C-2026-0007".
CaseNumber = Annotated[
    str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9/_.-]*$")
]

__all__ = [
    "Authorization",
    "AuthorizationBody",
    "Command",
    "CommandAction",
    "CommandBody",
    "GeoFence",
    "RecordingProfile",
    "ReferenceSnapshotRequest",
    "ReleaseHold",
    "RequestExport",
    "Revocation",
    "RevocationBody",
    "SelfTestNow",
    "SetConfig",
    "SetHold",
    "Signed",
    "TimeRange",
    "UploadEvidence",
]


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


class TimeRange(Model):
    start: Utc
    end: Utc

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.end <= self.start:
            raise ValueError("a range must end after its start")
        return self


class UploadEvidence(Model):
    """Upload the encrypted segments that overlap `ranges`, with the unit's signed index
    manifest, to the controller's evidence endpoint named in the unit's own config (never
    to an address a command gives), as upload `upload_id` of case `case_number`."""

    action: Literal["upload_evidence"] = "upload_evidence"
    upload_id: Ident
    case_number: CaseNumber
    ranges: list[TimeRange] = Field(min_length=1, max_length=200)


class ReferenceSnapshotRequest(Model):
    """Send one still picture of the camera's view (`protocol.unit_messages.ReferenceSnapshot`),
    the picture privacy masks are drawn on in the control room."""

    action: Literal["reference_snapshot"] = "reference_snapshot"
    request_id: Ident = Field(description="Carried back by the picture that answers it")


CommandAction = Annotated[
    SelfTestNow
    | SetHold
    | ReleaseHold
    | SetConfig
    | RequestExport
    | UploadEvidence
    | ReferenceSnapshotRequest,
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
