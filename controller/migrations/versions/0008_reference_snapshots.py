"""Reference pictures: each request a person made to a unit for a still picture of its
camera's view, and the picture the unit sent back.

Revision ID: 0008_reference_snapshots
Revises: 0006_web_edge
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_reference_snapshots"
down_revision: str | None = "0007_evidence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "reference_snapshots",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "unit_id",
            sa.String(64),
            sa.ForeignKey("units.unit_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("request_id", sa.String(128), nullable=False, unique=True),
        sa.Column("command_id", sa.String(128), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        _when("requested_at", False),
        _when("expires_at", False),
        sa.Column("sha256", sa.String(64), nullable=True),
        _when("captured_at"),
        _when("received_at"),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("message_seq", sa.BigInteger(), nullable=True),
        sa.Column("jpeg", sa.LargeBinary(), nullable=True),
    )
    op.create_index(
        "ix_reference_snapshots_unit_requested", "reference_snapshots", ["unit_id", "requested_at"]
    )
    op.create_index(
        "ix_reference_snapshots_unit_sha256", "reference_snapshots", ["unit_id", "sha256"]
    )


def downgrade() -> None:
    op.drop_index("ix_reference_snapshots_unit_sha256", table_name="reference_snapshots")
    op.drop_index("ix_reference_snapshots_unit_requested", table_name="reference_snapshots")
    op.drop_table("reference_snapshots")
