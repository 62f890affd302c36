"""Fleet tables: inventory, live status, sequence tracking, quarantine, self-tests, power,
faults, maintenance callouts with their events, and notifications.

Written by ingest, the fleet and callout services; read by the API. Migrations: 0001_fleet;
0004_unit_reports (signing key, uptime, dropped messages, position).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.base import Base, UTCDateTime

__all__ = [
    "Callout",
    "CalloutEvent",
    "Notification",
    "PowerReading",
    "QuarantinedMessage",
    "SelfTestRecord",
    "SeqGap",
    "Unit",
    "UnitFault",
    "UnitStatus",
]

Json = JSON()
UnitRef = String(64)


class Unit(Base):
    """A camera unit in the inventory (from provisioning, or first heard on the broker)."""

    __tablename__ = "units"

    unit_id: Mapped[str] = mapped_column(UnitRef, primary_key=True)
    site: Mapped[str | None] = mapped_column(String(200))
    model: Mapped[str | None] = mapped_column(String(200))
    ups: Mapped[str | None] = mapped_column(String(300))
    contractor: Mapped[str | None] = mapped_column(String(200), index=True)
    serial: Mapped[str | None] = mapped_column(String(80))
    #: The unit's Ed25519 public key (raw, hex) that signs its recording-index checkpoints.
    signing_public_key: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(20), default="provisioning")
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class UnitStatus(Base):
    """The live state of one unit, as last reported (and as the controller concluded)."""

    __tablename__ = "unit_status"

    unit_id: Mapped[str] = mapped_column(
        UnitRef, ForeignKey("units.unit_id", ondelete="CASCADE"), primary_key=True
    )
    online: Mapped[bool | None] = mapped_column(Boolean)
    online_reason: Mapped[str] = mapped_column(String(200), default="")
    online_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    boot_id: Mapped[str | None] = mapped_column(String(128))
    agent_version: Mapped[str | None] = mapped_column(String(100))
    recording: Mapped[bool | None] = mapped_column(Boolean)
    recording_reason: Mapped[str] = mapped_column(String(500), default="")
    gate_open: Mapped[bool | None] = mapped_column(Boolean)
    gate_reason: Mapped[str] = mapped_column(String(500), default="")
    deployment_id: Mapped[str | None] = mapped_column(String(128))
    storage_total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    storage_free_bytes: Mapped[int | None] = mapped_column(BigInteger)
    outbox_depth: Mapped[int | None] = mapped_column(Integer)
    #: Messages the unit dropped since its agent started (its outbox was full).
    outbox_dropped: Mapped[int | None] = mapped_column(Integer)
    #: Seconds the unit's agent has been running.
    uptime_s: Mapped[float | None] = mapped_column(Float)
    position_lat: Mapped[float | None] = mapped_column(Float)
    position_lon: Mapped[float | None] = mapped_column(Float)
    temperature_c: Mapped[float | None] = mapped_column(Float)
    clock_offset_s: Mapped[float | None] = mapped_column(Float)
    reported_faults: Mapped[list[str]] = mapped_column(Json, default=list)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    power_source: Mapped[str | None] = mapped_column(String(20))
    on_battery: Mapped[bool | None] = mapped_column(Boolean)
    low_battery: Mapped[bool | None] = mapped_column(Boolean)
    charge_pct: Mapped[float | None] = mapped_column(Float)
    power_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_selftest_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_selftest_verdict: Mapped[str | None] = mapped_column(String(10))
    last_selftest_id: Mapped[str | None] = mapped_column(String(128))
    last_pass_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Highest seq received from the unit; lower seqs are duplicates unless in a gap.
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    #: Seq of the state message that set `online` (a late will must not undo a newer one).
    state_seq: Mapped[int | None] = mapped_column(BigInteger)
    messages: Mapped[int] = mapped_column(BigInteger, default=0)
    duplicates: Mapped[int] = mapped_column(BigInteger, default=0)
    missing: Mapped[int] = mapped_column(BigInteger, default=0)


class SeqGap(Base):
    """A range of seqs not (yet) received from a unit. `reason` is "missing", or "will"
    for the one seq a unit reserves for its last-will message at each connection."""

    __tablename__ = "seq_gaps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(
        UnitRef, ForeignKey("units.unit_id", ondelete="CASCADE"), index=True
    )
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(10), default="missing")
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime())


class QuarantinedMessage(Base):
    """A message that could not be accepted: kept for inspection, never processed."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    topic: Mapped[str] = mapped_column(String(300))
    unit_id: Mapped[str | None] = mapped_column(UnitRef)
    reason: Mapped[str] = mapped_column(String(40), index=True)
    detail: Mapped[str] = mapped_column(String(500), default="")
    payload_size: Mapped[int] = mapped_column(Integer)
    payload_prefix: Mapped[str] = mapped_column(Text, default="")


class SelfTestRecord(Base):
    __tablename__ = "selftest_reports"
    __table_args__ = (UniqueConstraint("unit_id", "report_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(
        UnitRef, ForeignKey("units.unit_id", ondelete="CASCADE"), index=True
    )
    report_id: Mapped[str] = mapped_column(String(128))
    trigger: Mapped[str] = mapped_column(String(20))
    command_id: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    verdict: Mapped[str] = mapped_column(String(10))
    checks: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PowerReading(Base):
    __tablename__ = "power_readings"
    __table_args__ = (Index("ix_power_readings_unit_at", "unit_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(UnitRef, ForeignKey("units.unit_id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(20))
    on_battery: Mapped[bool] = mapped_column(Boolean)
    facts: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)


class UnitFault(Base):
    """A fault of a unit, active or cleared; raised by the unit or by the controller."""

    __tablename__ = "unit_faults"

    unit_id: Mapped[str] = mapped_column(
        UnitRef, ForeignKey("units.unit_id", ondelete="CASCADE"), primary_key=True
    )
    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    priority: Mapped[str] = mapped_column(String(2))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    origin: Mapped[str] = mapped_column(String(12), default="unit")
    check_name: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(String(2000), default="")
    facts: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime())
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Seq of the event last applied, so a late (replayed) event cannot undo a newer one.
    event_seq: Mapped[int | None] = mapped_column(BigInteger)


class Callout(Base):
    """A maintenance callout: one open per unit and fault."""

    __tablename__ = "callouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(
        UnitRef, ForeignKey("units.unit_id", ondelete="CASCADE"), index=True
    )
    fault_code: Mapped[str] = mapped_column(String(40))
    priority: Mapped[str] = mapped_column(String(2), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    #: "unit|fault" while the callout is open, NULL once closed: one open per unit + fault.
    open_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    contractor: Mapped[str | None] = mapped_column(String(200), index=True)
    title: Mapped[str] = mapped_column(String(200))
    check_name: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(String(2000), default="")
    facts: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime())
    respond_by: Mapped[datetime] = mapped_column(UTCDateTime())
    repair_by: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attending_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    fault_cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    respond_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    repair_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    raise_count: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CalloutEvent(Base):
    """One step in a callout's life: who, when, what and a note."""

    __tablename__ = "callout_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    callout_id: Mapped[int] = mapped_column(
        ForeignKey("callouts.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(30))
    actor: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(String(2000), default="")
    details: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)


class Notification(Base):
    """A message to a contractor about a callout, and how its delivery went."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    callout_id: Mapped[int | None] = mapped_column(
        ForeignKey("callouts.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(10))
    target: Mapped[str] = mapped_column(String(500))
    reason: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
