"""Unit reports: each unit's signing public key, heartbeat fields kept in the live state
(uptime, dropped messages, position), the controller's copy of each unit's recording index
(chain entries, segment summaries, signed checkpoints), and the commands sent with their
acknowledgements.

Revision ID: 0004_unit_reports
Revises: 0003_deployments
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_unit_reports"
down_revision: str | None = "0003_deployments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _unit_ref() -> sa.Column[object]:
    return sa.Column(
        "unit_id",
        sa.String(64),
        sa.ForeignKey("units.unit_id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    with op.batch_alter_table("units") as batch:
        batch.add_column(sa.Column("signing_public_key", sa.String(64), nullable=True))
    with op.batch_alter_table("unit_status") as batch:
        batch.add_column(sa.Column("outbox_dropped", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("uptime_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("position_lat", sa.Float(), nullable=True))
        batch.add_column(sa.Column("position_lon", sa.Float(), nullable=True))

    op.create_table(
        "index_checkpoints",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _unit_ref(),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("head", sa.String(64), nullable=False),
        _when("signed_at", False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("claimed", sa.JSON(), nullable=False),
        sa.Column("message_seq", sa.BigInteger(), nullable=False),
        _when("received_at", False),
        sa.UniqueConstraint("unit_id", "digest", name="uq_index_checkpoints_unit_digest"),
    )
    op.create_index("ix_index_checkpoints_unit_id", "index_checkpoints", ["unit_id"])
    op.create_index("ix_index_checkpoints_status", "index_checkpoints", ["status"])

    op.create_table(
        "index_entries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _unit_ref(),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("chain_hash", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("segment_id", sa.String(128), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column(
            "checkpoint_id",
            sa.Integer(),
            sa.ForeignKey("index_checkpoints.id", ondelete="CASCADE"),
            nullable=False,
        ),
        _when("received_at", False),
        sa.UniqueConstraint("unit_id", "seq", name="uq_index_entries_unit_seq"),
    )
    op.create_index("ix_index_entries_checkpoint_id", "index_entries", ["checkpoint_id"])

    op.create_table(
        "index_segments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _unit_ref(),
        sa.Column("segment_id", sa.String(128), nullable=False),
        sa.Column("chain_seq", sa.BigInteger(), nullable=True),
        _when("started_at", False),
        _when("ended_at", False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("chain_hash", sa.String(64), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column(
            "checkpoint_id",
            sa.Integer(),
            sa.ForeignKey("index_checkpoints.id", ondelete="SET NULL"),
            nullable=True,
        ),
        _when("received_at", False),
        sa.UniqueConstraint(
            "unit_id", "segment_id", "chain_hash", name="uq_index_segments_unit_segment_chain"
        ),
    )
    op.create_index("ix_index_segments_unit_started", "index_segments", ["unit_id", "started_at"])
    op.create_index("ix_index_segments_checkpoint_id", "index_segments", ["checkpoint_id"])

    op.create_table(
        "unit_commands",
        sa.Column("command_id", sa.String(128), primary_key=True),
        _unit_ref(),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("issued_by", sa.String(200), nullable=False),
        _when("issued_at", False),
        _when("expires_at", False),
    )
    op.create_index("ix_unit_commands_unit_issued", "unit_commands", ["unit_id", "issued_at"])

    op.create_table(
        "command_acks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _unit_ref(),
        sa.Column("command_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("reason", sa.String(2000), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        _when("sent_at", False),
        _when("received_at", False),
        sa.Column("message_seq", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint(
            "unit_id", "command_id", "status", name="uq_command_acks_unit_command_status"
        ),
    )
    op.create_index("ix_command_acks_command_id", "command_acks", ["command_id"])
    op.create_index("ix_command_acks_unit_received", "command_acks", ["unit_id", "received_at"])


def downgrade() -> None:
    op.drop_table("command_acks")
    op.drop_table("unit_commands")
    op.drop_table("index_segments")
    op.drop_table("index_entries")
    op.drop_table("index_checkpoints")
    with op.batch_alter_table("unit_status") as batch:
        batch.drop_column("position_lon")
        batch.drop_column("position_lat")
        batch.drop_column("uptime_s")
        batch.drop_column("outbox_dropped")
    with op.batch_alter_table("units") as batch:
        batch.drop_column("signing_public_key")
