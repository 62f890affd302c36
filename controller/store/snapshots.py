"""The table of reference pictures: each request a person made to a unit for one still
picture of its camera's view, and the picture the unit sent back.

Written by `controller.fleet.snapshots` (the request, from the pages and the JSON API; the
picture, from ingest); read by the mask editor, the unit page and the PIA pages. The picture
(JPEG, at most `protocol.messages.MAX_SNAPSHOT_JPEG_BYTES`) is kept in the row and loaded
only when asked for. Migration: 0008_reference_snapshots.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, deferred, mapped_column

from controller.store.base import Base, UTCDateTime

__all__ = ["ReferenceSnapshotRecord"]


class ReferenceSnapshotRecord(Base):
    """One request for a reference picture and, once the unit answered, the picture.

    Until the picture arrives `sha256`, `captured_at`, `received_at` and `jpeg` are None.
    The picture is the camera's view before privacy masks."""

    __tablename__ = "reference_snapshots"
    __table_args__ = (
        Index("ix_reference_snapshots_unit_requested", "unit_id", "requested_at"),
        Index("ix_reference_snapshots_unit_sha256", "unit_id", "sha256"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("units.unit_id", ondelete="CASCADE")
    )
    request_id: Mapped[str] = mapped_column(String(128), unique=True)
    command_id: Mapped[str] = mapped_column(String(128))
    requested_by: Mapped[str] = mapped_column(String(200))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sha256: Mapped[str | None] = mapped_column(String(64))
    captured_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    size: Mapped[int | None] = mapped_column(Integer)
    message_seq: Mapped[int | None] = mapped_column(BigInteger)
    jpeg: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
