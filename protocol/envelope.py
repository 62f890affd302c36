"""The envelope every fleet message shares, and the base of every protocol model.

`Envelope` carries `v`, `unit_id`, `seq`, `sent_at` and `boot_id`; each message kind adds
its `kind` and its fields (see `protocol.unit_messages` and `protocol.controller_messages`).
The field types here (`Ident`, `Text`, `Utc`...) are the constraints the kinds share.
`protocol.messages` puts the kinds together and decodes them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from protocol.topics import UNIT_ID_PATTERN, Channel

__all__ = [
    "PROTOCOL_VERSION",
    "Envelope",
    "Ident",
    "Model",
    "Percent",
    "Text",
    "UnitId",
    "Utc",
    "utcnow",
]

PROTOCOL_VERSION = "1.2"

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
