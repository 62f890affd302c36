"""Evidence tables: cases with their time ranges, the holds placed on units for them, the
retrievals of footage from units with each file received, the exhibits made from it, the
releases of exhibits, and the log of everyone who looked at footage.

    cases             one request for footage: who asked, why, on what lawful basis, its
                      state, the decision, the subject-access deadline and the outcome
    case_ranges       the unit and time ranges a case covers
    case_holds        a hold sent to a unit for one range, its acknowledgement and release
    retrievals        one upload of a case's footage from one unit
    retrieved_files   each file of a retrieval: segment or the unit's signed manifest
    exhibits          a master exhibit (the retrieved footage as received) or one derived
                      from it, on disk under the evidence store
    releases          an exhibit handed to a recipient outside the controller
    review_log        every view, play, download or export of case footage

Written by `controller.evidence`. Migration: 0007_evidence.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.base import Base, UTCDateTime

__all__ = [
    "CASE_OUTCOMES",
    "CASE_STATUSES",
    "CASE_TYPES",
    "EXHIBIT_KINDS",
    "FILE_ROLES",
    "FILE_STATUSES",
    "RETRIEVAL_STATUSES",
    "REVIEW_ACTIONS",
    "CaseHoldRow",
    "CaseRangeRow",
    "CaseRow",
    "ExhibitRow",
    "ReleaseRow",
    "RetrievalRow",
    "RetrievedFileRow",
    "ReviewLogRow",
]

CASE_TYPES = ("police_request", "subject_access", "insurance_civil", "internal_review")
CASE_STATUSES = (
    "requested",
    "approved",
    "refused",
    "retrieving",
    "retrieved",
    "released",
    "closed",
)
CASE_OUTCOMES = (
    "arrest",
    "charge",
    "caution",
    "no_further_action",
    "disclosed",
    "refused",
    "other",
)
RETRIEVAL_STATUSES = ("requested", "uploading", "complete", "refused", "failed")
FILE_ROLES = ("segment", "manifest")
FILE_STATUSES = ("pending", "receiving", "verified", "refused")
EXHIBIT_KINDS = ("master", "derived")
REVIEW_ACTIONS = ("viewed", "played", "downloaded", "exported")

UnitRef = String(64)
UserRef = String(64)
IdentRef = String(128)


class CaseRow(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: Human case number, e.g. "C-2026-0007" (the year from the clock when raised).
    number: Mapped[str] = mapped_column(String(40), unique=True)
    case_type: Mapped[str] = mapped_column(String(30), index=True)
    external_ref: Mapped[str] = mapped_column(String(200), default="")
    requester_name: Mapped[str] = mapped_column(String(200))
    requester_org: Mapped[str] = mapped_column(String(200), default="")
    requester_contact: Mapped[str] = mapped_column(String(300), default="")
    lawful_basis: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), index=True)
    raised_by: Mapped[str] = mapped_column(UserRef, index=True)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    decided_by: Mapped[str | None] = mapped_column(UserRef)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refusal_reason: Mapped[str | None] = mapped_column(Text)
    #: When a subject access request was received (its deadline runs from here).
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    extended_to: Mapped[datetime | None] = mapped_column(UTCDateTime())
    extension_reason: Mapped[str | None] = mapped_column(Text)
    #: When the reminder that the SAR deadline is near went out (cleared by an extension).
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: When the SAR deadline was first seen passed unanswered (cleared by an extension).
    overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(String(30), index=True)
    closed_by: Mapped[str | None] = mapped_column(UserRef)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CaseRangeRow(Base):
    __tablename__ = "case_ranges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    unit_id: Mapped[str] = mapped_column(
        UnitRef, ForeignKey("units.unit_id", ondelete="RESTRICT"), index=True
    )
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())


class CaseHoldRow(Base):
    __tablename__ = "case_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    range_id: Mapped[int] = mapped_column(
        ForeignKey("case_ranges.id", ondelete="CASCADE"), index=True
    )
    unit_id: Mapped[str] = mapped_column(
        UnitRef, ForeignKey("units.unit_id", ondelete="RESTRICT"), index=True
    )
    #: The hold id sent to the unit in `set_hold` (and `release_hold`).
    hold_id: Mapped[str] = mapped_column(IdentRef, unique=True)
    command_id: Mapped[str | None] = mapped_column(IdentRef, index=True)
    placed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    release_command_id: Mapped[str | None] = mapped_column(IdentRef, index=True)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    release_acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    problem: Mapped[str | None] = mapped_column(Text)


class RetrievalRow(Base):
    __tablename__ = "retrievals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    unit_id: Mapped[str] = mapped_column(
        UnitRef, ForeignKey("units.unit_id", ondelete="RESTRICT"), index=True
    )
    upload_id: Mapped[str] = mapped_column(IdentRef, unique=True)
    command_id: Mapped[str | None] = mapped_column(IdentRef, index=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20), index=True)
    total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    received_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    problem: Mapped[str | None] = mapped_column(Text)
    #: "upload" (the unit sent it over HTTPS) or "import" (collected from its export folder).
    source: Mapped[str] = mapped_column(String(20), default="upload")


class RetrievedFileRow(Base):
    __tablename__ = "retrieved_files"
    __table_args__ = (
        Index("ux_retrieved_files_retrieval_name", "retrieval_id", "name", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    retrieval_id: Mapped[int] = mapped_column(
        ForeignKey("retrievals.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    received_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(20))
    problem: Mapped[str | None] = mapped_column(Text)
    #: The segment the unit's signed manifest lists under this file name (segments only).
    segment_id: Mapped[str | None] = mapped_column(String(128))
    #: Bytes that arrived again after the controller had acknowledged them (0 unless a
    #: unit misbehaves): the record that no acknowledged chunk was taken twice.
    resent_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ExhibitRow(Base):
    __tablename__ = "exhibits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="RESTRICT"), index=True)
    #: e.g. "C-2026-0007/EX1".
    number: Mapped[str] = mapped_column(String(60), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(UserRef)
    path: Mapped[str] = mapped_column(String(1000))
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    derived_from_id: Mapped[int | None] = mapped_column(
        ForeignKey("exhibits.id", ondelete="RESTRICT"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))


class ReleaseRow(Base):
    __tablename__ = "releases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="RESTRICT"), index=True)
    exhibit_id: Mapped[int] = mapped_column(
        ForeignKey("exhibits.id", ondelete="RESTRICT"), index=True
    )
    released_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    released_by: Mapped[str] = mapped_column(UserRef, index=True)
    recipient_name: Mapped[str] = mapped_column(String(200))
    recipient_org: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(Text)
    lawful_basis: Mapped[str] = mapped_column(Text)
    reference: Mapped[str] = mapped_column(String(200), default="")
    #: e.g. "encrypted USB", "secure download", "in person".
    method: Mapped[str] = mapped_column(String(100))
    notes: Mapped[str] = mapped_column(Text, default="")


class ReviewLogRow(Base):
    __tablename__ = "review_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    user: Mapped[str] = mapped_column(UserRef, index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="RESTRICT"), index=True)
    exhibit_id: Mapped[int | None] = mapped_column(
        ForeignKey("exhibits.id", ondelete="RESTRICT"), index=True
    )
    action: Mapped[str] = mapped_column(String(20))
    #: The client it was done from (address and browser).
    client: Mapped[str] = mapped_column(String(500), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
