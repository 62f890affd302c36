"""Tables of what units report beyond their live state: the controller's copy of each
unit's recording index (its signed checkpoints, the chain entries they cover, the segment
summaries) and the commands sent to units with each acknowledgement.

Written by `controller.fleet.unit_reports` (from ingest) and `controller.fleet.commands`;
read by the API and the unit page. Migration: 0004_unit_reports.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.base import Base, UTCDateTime

__all__ = [
    "ChainEntryRecord",
    "CheckpointRecord",
    "CommandAckRecord",
    "CommandRecord",
    "SegmentRecord",
]

Json = JSON()
UnitRef = String(64)
Hash = String(64)


class CheckpointRecord(Base):
    """One recording-index report's signed checkpoint and what the controller found.

    `status`: "verified" (signature good, continues the stored chain), "gap" (signature
    and chain good, but entries before it never arrived), "no_key" (no signing key on
    record for the unit: cannot be checked), "bad_signature" or "broken_chain" (kept,
    flagged, raised as a fault). `claimed` keeps a flagged report's chain entries, which
    never join the stored chain. `digest` identifies the report's content: a redelivery
    is stored once."""

    __tablename__ = "index_checkpoints"
    __table_args__ = (
        UniqueConstraint("unit_id", "digest", name="uq_index_checkpoints_unit_digest"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(
        UnitRef, ForeignKey("units.unit_id", ondelete="CASCADE"), index=True
    )
    digest: Mapped[str] = mapped_column(Hash)
    count: Mapped[int] = mapped_column(BigInteger)
    head: Mapped[str] = mapped_column(Hash)
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), index=True)
    problems: Mapped[list[str]] = mapped_column(Json, default=list)
    claimed: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    message_seq: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ChainEntryRecord(Base):
    """One entry of a unit's index chain, as the controller holds it: only from reports
    whose signature verified and whose entries link up, one per chain position."""

    __tablename__ = "index_entries"
    __table_args__ = (UniqueConstraint("unit_id", "seq", name="uq_index_entries_unit_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(UnitRef, ForeignKey("units.unit_id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[str] = mapped_column(Hash)
    chain_hash: Mapped[str] = mapped_column(Hash)
    kind: Mapped[str] = mapped_column(String(10))
    segment_id: Mapped[str] = mapped_column(String(128))
    body: Mapped[dict[str, Any]] = mapped_column(Json)
    checkpoint_id: Mapped[int] = mapped_column(
        ForeignKey("index_checkpoints.id", ondelete="CASCADE"), index=True
    )
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SegmentRecord(Base):
    """A sealed segment as the unit summarised it, with the checkpoint that came with it
    (None when the report carried none); its trust is that checkpoint's status."""

    __tablename__ = "index_segments"
    __table_args__ = (
        UniqueConstraint(
            "unit_id", "segment_id", "chain_hash", name="uq_index_segments_unit_segment_chain"
        ),
        Index("ix_index_segments_unit_started", "unit_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(UnitRef, ForeignKey("units.unit_id", ondelete="CASCADE"))
    segment_id: Mapped[str] = mapped_column(String(128))
    chain_seq: Mapped[int | None] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime())
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(Hash)
    chain_hash: Mapped[str] = mapped_column(Hash)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    checkpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("index_checkpoints.id", ondelete="SET NULL"), index=True
    )
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CommandRecord(Base):
    """A signed command the controller sent to a unit. Its state comes from its acks."""

    __tablename__ = "unit_commands"
    __table_args__ = (Index("ix_unit_commands_unit_issued", "unit_id", "issued_at"),)

    command_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    unit_id: Mapped[str] = mapped_column(UnitRef, ForeignKey("units.unit_id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    issued_by: Mapped[str] = mapped_column(String(200))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CommandAckRecord(Base):
    """A unit's acknowledgement of a command, one per command and status. Kept also when
    no command with its id was sent to the unit (then shown flagged)."""

    __tablename__ = "command_acks"
    __table_args__ = (
        UniqueConstraint(
            "unit_id", "command_id", "status", name="uq_command_acks_unit_command_status"
        ),
        Index("ix_command_acks_unit_received", "unit_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(UnitRef, ForeignKey("units.unit_id", ondelete="CASCADE"))
    command_id: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(2000), default="")
    result: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    message_seq: Mapped[int] = mapped_column(BigInteger)
