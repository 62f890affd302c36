"""Locations, deployments with their PIA, authorizations and revocations.

Revision ID: 0003_deployments
Revises: 0002_users
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_deployments"
down_revision: str | None = "0002_users"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "locations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("address", sa.String(500), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("geofence_radius_m", sa.Float(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        _when("created_at", False),
        sa.Column("created_by", sa.String(64), nullable=False),
        _when("updated_at", False),
        _when("retired_at"),
    )
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "unit_id",
            sa.String(64),
            sa.ForeignKey("units.unit_id", ondelete="RESTRICT"),
            nullable=False,
        ),
        sa.Column(
            "location_id",
            sa.Integer(),
            sa.ForeignKey("locations.id", ondelete="RESTRICT"),
            nullable=False,
        ),
        sa.Column("status", sa.String(20), nullable=False),
        _when("planned_start", False),
        _when("planned_end", False),
        _when("review_due", False),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("residual_risk", sa.String(10), nullable=False),
        sa.Column("referral_source", sa.String(30), nullable=False),
        sa.Column("pia", sa.JSON(), nullable=False),
        sa.Column("profile", sa.JSON(), nullable=False),
        sa.Column("evaluation", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(64), nullable=False),
        _when("created_at", False),
        _when("updated_at", False),
        sa.Column("submitted_by", sa.String(64), nullable=True),
        _when("submitted_at"),
        sa.Column("decided_by", sa.String(64), nullable=True),
        _when("decided_at"),
        sa.Column("decision_reason", sa.Text(), nullable=False),
        _when("ico_consulted_on"),
        sa.Column("authorization_id", sa.String(128), nullable=True),
        _when("authorized_until"),
        _when("review_reminded_at"),
        _when("lapsed_at"),
        _when("ended_at"),
        sa.Column("ended_by", sa.String(64), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=False),
        sa.Column("renewals", sa.Integer(), nullable=False),
    )
    op.create_index("ix_deployments_unit_id", "deployments", ["unit_id"])
    op.create_index("ix_deployments_location_id", "deployments", ["location_id"])
    op.create_index("ix_deployments_status", "deployments", ["status"])
    op.create_index("ix_deployments_review_due", "deployments", ["review_due"])
    op.create_table(
        "authorizations",
        sa.Column("authorization_id", sa.String(128), primary_key=True),
        sa.Column(
            "deployment_id",
            sa.String(64),
            sa.ForeignKey("deployments.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("unit_id", sa.String(64), nullable=False),
        _when("issued_at", False),
        sa.Column("issued_by", sa.String(64), nullable=False),
        _when("valid_from", False),
        _when("valid_until", False),
        sa.Column("message", sa.JSON(), nullable=False),
        _when("published_at"),
        _when("revoked_at"),
    )
    op.create_index("ix_authorizations_deployment_id", "authorizations", ["deployment_id"])
    op.create_index("ix_authorizations_unit_id", "authorizations", ["unit_id"])
    op.create_index("ix_authorizations_published_at", "authorizations", ["published_at"])
    op.create_table(
        "revocations",
        sa.Column("revocation_id", sa.String(128), primary_key=True),
        sa.Column(
            "authorization_id",
            sa.String(128),
            sa.ForeignKey("authorizations.authorization_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("deployment_id", sa.String(64), nullable=False),
        sa.Column("unit_id", sa.String(64), nullable=False),
        _when("issued_at", False),
        sa.Column("issued_by", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("message", sa.JSON(), nullable=False),
        _when("published_at"),
    )
    op.create_index("ix_revocations_authorization_id", "revocations", ["authorization_id"])
    op.create_index("ix_revocations_deployment_id", "revocations", ["deployment_id"])
    op.create_index("ix_revocations_unit_id", "revocations", ["unit_id"])
    op.create_index("ix_revocations_published_at", "revocations", ["published_at"])


def downgrade() -> None:
    op.drop_table("revocations")
    op.drop_table("authorizations")
    op.drop_table("deployments")
    op.drop_table("locations")
