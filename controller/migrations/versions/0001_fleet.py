"""Fleet and audit tables (units, live status, seq gaps, quarantine, self-tests, power,
faults, callouts, callout events, notifications, audit log)

Revision ID: 0001_fleet
Revises: (none)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_fleet"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("details_json", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("seq"),
    )
    op.create_index(op.f("ix_audit_log_action"), "audit_log", ["action"], unique=False)
    op.create_index(op.f("ix_audit_log_actor"), "audit_log", ["actor"], unique=False)
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"], unique=False)
    op.create_index(op.f("ix_audit_log_subject"), "audit_log", ["subject"], unique=False)

    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("topic", sa.String(length=300), nullable=False),
        sa.Column("unit_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("payload_size", sa.Integer(), nullable=False),
        sa.Column("payload_prefix", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_quarantine_reason"), "quarantine", ["reason"], unique=False)
    op.create_index(op.f("ix_quarantine_received_at"), "quarantine", ["received_at"], unique=False)

    op.create_table(
        "units",
        sa.Column("unit_id", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=200), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("ups", sa.String(length=300), nullable=True),
        sa.Column("contractor", sa.String(length=200), nullable=True),
        sa.Column("serial", sa.String(length=80), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("unit_id"),
    )
    op.create_index(op.f("ix_units_contractor"), "units", ["contractor"], unique=False)

    op.create_table(
        "callouts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("unit_id", sa.String(length=64), nullable=False),
        sa.Column("fault_code", sa.String(length=40), nullable=False),
        sa.Column("priority", sa.String(length=2), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("open_key", sa.String(length=120), nullable=True),
        sa.Column("contractor", sa.String(length=200), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("check_name", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.String(length=2000), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("respond_by", sa.DateTime(timezone=True), nullable=False),
        sa.Column("repair_by", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attending_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fault_cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("respond_breached", sa.Boolean(), nullable=False),
        sa.Column("repair_breached", sa.Boolean(), nullable=False),
        sa.Column("raise_count", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.unit_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("open_key"),
    )
    op.create_index(op.f("ix_callouts_contractor"), "callouts", ["contractor"], unique=False)
    op.create_index(op.f("ix_callouts_priority"), "callouts", ["priority"], unique=False)
    op.create_index(op.f("ix_callouts_status"), "callouts", ["status"], unique=False)
    op.create_index(op.f("ix_callouts_unit_id"), "callouts", ["unit_id"], unique=False)

    op.create_table(
        "power_readings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("unit_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("on_battery", sa.Boolean(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.unit_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_power_readings_unit_at", "power_readings", ["unit_id", "at"], unique=False)

    op.create_table(
        "selftest_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("unit_id", sa.String(length=64), nullable=False),
        sa.Column("report_id", sa.String(length=128), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("command_id", sa.String(length=128), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verdict", sa.String(length=10), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.unit_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("unit_id", "report_id"),
    )
    op.create_index(
        op.f("ix_selftest_reports_finished_at"), "selftest_reports", ["finished_at"], unique=False
    )
    op.create_index(
        op.f("ix_selftest_reports_unit_id"), "selftest_reports", ["unit_id"], unique=False
    )

    op.create_table(
        "seq_gaps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("unit_id", sa.String(length=64), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=10), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.unit_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_seq_gaps_unit_id"), "seq_gaps", ["unit_id"], unique=False)

    op.create_table(
        "unit_faults",
        sa.Column("unit_id", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("priority", sa.String(length=2), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("origin", sa.String(length=12), nullable=False),
        sa.Column("check_name", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.String(length=2000), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("event_seq", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["unit_id"], ["units.unit_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("unit_id", "code"),
    )
    op.create_table(
        "unit_status",
        sa.Column("unit_id", sa.String(length=64), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=True),
        sa.Column("online_reason", sa.String(length=200), nullable=False),
        sa.Column("online_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("boot_id", sa.String(length=128), nullable=True),
        sa.Column("agent_version", sa.String(length=100), nullable=True),
        sa.Column("recording", sa.Boolean(), nullable=True),
        sa.Column("recording_reason", sa.String(length=500), nullable=False),
        sa.Column("gate_open", sa.Boolean(), nullable=True),
        sa.Column("gate_reason", sa.String(length=500), nullable=False),
        sa.Column("deployment_id", sa.String(length=128), nullable=True),
        sa.Column("storage_total_bytes", sa.BigInteger(), nullable=True),
        sa.Column("storage_free_bytes", sa.BigInteger(), nullable=True),
        sa.Column("outbox_depth", sa.Integer(), nullable=True),
        sa.Column("temperature_c", sa.Float(), nullable=True),
        sa.Column("clock_offset_s", sa.Float(), nullable=True),
        sa.Column("reported_faults", sa.JSON(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("power_source", sa.String(length=20), nullable=True),
        sa.Column("on_battery", sa.Boolean(), nullable=True),
        sa.Column("low_battery", sa.Boolean(), nullable=True),
        sa.Column("charge_pct", sa.Float(), nullable=True),
        sa.Column("power_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_selftest_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_selftest_verdict", sa.String(length=10), nullable=True),
        sa.Column("last_selftest_id", sa.String(length=128), nullable=True),
        sa.Column("last_pass_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=True),
        sa.Column("state_seq", sa.BigInteger(), nullable=True),
        sa.Column("messages", sa.BigInteger(), nullable=False),
        sa.Column("duplicates", sa.BigInteger(), nullable=False),
        sa.Column("missing", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.unit_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("unit_id"),
    )

    op.create_table(
        "callout_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("callout_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("note", sa.String(length=2000), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["callout_id"], ["callouts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_callout_events_callout_id"), "callout_events", ["callout_id"], unique=False
    )

    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("callout_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("reason", sa.String(length=30), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["callout_id"], ["callouts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_notifications_callout_id"), "notifications", ["callout_id"], unique=False
    )
    op.create_index(
        op.f("ix_notifications_next_attempt_at"), "notifications", ["next_attempt_at"], unique=False
    )
    op.create_index(op.f("ix_notifications_status"), "notifications", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_notifications_status"), table_name="notifications")
    op.drop_index(op.f("ix_notifications_next_attempt_at"), table_name="notifications")
    op.drop_index(op.f("ix_notifications_callout_id"), table_name="notifications")

    op.drop_table("notifications")
    op.drop_index(op.f("ix_callout_events_callout_id"), table_name="callout_events")

    op.drop_table("callout_events")

    op.drop_table("unit_status")
    op.drop_table("unit_faults")
    op.drop_index(op.f("ix_seq_gaps_unit_id"), table_name="seq_gaps")

    op.drop_table("seq_gaps")
    op.drop_index(op.f("ix_selftest_reports_unit_id"), table_name="selftest_reports")
    op.drop_index(op.f("ix_selftest_reports_finished_at"), table_name="selftest_reports")

    op.drop_table("selftest_reports")
    op.drop_index("ix_power_readings_unit_at", table_name="power_readings")

    op.drop_table("power_readings")
    op.drop_index(op.f("ix_callouts_unit_id"), table_name="callouts")
    op.drop_index(op.f("ix_callouts_status"), table_name="callouts")
    op.drop_index(op.f("ix_callouts_priority"), table_name="callouts")
    op.drop_index(op.f("ix_callouts_contractor"), table_name="callouts")

    op.drop_table("callouts")

    op.drop_index(op.f("ix_units_contractor"), table_name="units")

    op.drop_table("units")
    op.drop_index(op.f("ix_quarantine_received_at"), table_name="quarantine")
    op.drop_index(op.f("ix_quarantine_reason"), table_name="quarantine")

    op.drop_table("quarantine")

    op.drop_index(op.f("ix_audit_log_subject"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_actor"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_action"), table_name="audit_log")

    op.drop_table("audit_log")
