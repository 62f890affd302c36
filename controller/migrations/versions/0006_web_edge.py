"""The web edge: device ids on login attempts, and the keys login cookies are signed with.

Revision ID: 0006_web_edge
Revises: 0004_unit_reports
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_web_edge"
down_revision: str | None = "0004_unit_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("login_attempts") as batch:
        batch.add_column(sa.Column("device", sa.String(64), nullable=True))
    op.create_index("ix_login_attempts_device_at", "login_attempts", ["device", "at"])
    op.create_table(
        "server_keys",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("server_keys")
    op.drop_index("ix_login_attempts_device_at", table_name="login_attempts")
    with op.batch_alter_table("login_attempts") as batch:
        batch.drop_column("device")
