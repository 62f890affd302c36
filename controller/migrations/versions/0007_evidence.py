"""Evidence: cases and their ranges, holds, retrievals with their files, exhibits,
releases and the review log.

Revision ID: 0007_evidence
Revises: 0006_web_edge
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_evidence"
down_revision: str | None = "0006_web_edge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Columns with a plain index, per table (named ix_<table>_<column> as the models do).
_INDEXED = {
    "cases": ("case_type", "status", "raised_by", "raised_at", "due_at", "outcome"),
    "case_ranges": ("case_id", "unit_id"),
    "case_holds": ("case_id", "range_id", "unit_id", "command_id", "release_command_id"),
    "retrievals": ("case_id", "unit_id", "command_id", "status"),
    "retrieved_files": ("retrieval_id",),
    "exhibits": ("case_id", "derived_from_id"),
    "releases": ("case_id", "exhibit_id", "released_at", "released_by"),
    "review_log": ("at", "user", "case_id", "exhibit_id"),
}


def _when(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id() -> sa.Column[object]:
    return sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True)


def _ref(name: str, target: str, ondelete: str, nullable: bool = False) -> sa.Column[object]:
    kind = sa.String(64) if target == "units.unit_id" else sa.Integer()
    return sa.Column(name, kind, sa.ForeignKey(target, ondelete=ondelete), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "cases",
        _id(),
        sa.Column("number", sa.String(40), nullable=False, unique=True),
        sa.Column("case_type", sa.String(30), nullable=False),
        sa.Column("external_ref", sa.String(200), nullable=False),
        sa.Column("requester_name", sa.String(200), nullable=False),
        sa.Column("requester_org", sa.String(200), nullable=False),
        sa.Column("requester_contact", sa.String(300), nullable=False),
        sa.Column("lawful_basis", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("raised_by", sa.String(64), nullable=False),
        _when("raised_at", False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        _when("decided_at"),
        sa.Column("refusal_reason", sa.Text(), nullable=True),
        _when("received_at"),
        _when("due_at"),
        _when("extended_to"),
        sa.Column("extension_reason", sa.Text(), nullable=True),
        _when("reminded_at"),
        _when("overdue_at"),
        sa.Column("outcome", sa.String(30), nullable=True),
        sa.Column("closed_by", sa.String(64), nullable=True),
        _when("closed_at"),
    )
    op.create_table(
        "case_ranges",
        _id(),
        _ref("case_id", "cases.id", "CASCADE"),
        _ref("unit_id", "units.unit_id", "RESTRICT"),
        _when("start", False),
        _when("end", False),
    )
    op.create_table(
        "case_holds",
        _id(),
        _ref("case_id", "cases.id", "CASCADE"),
        _ref("range_id", "case_ranges.id", "CASCADE"),
        _ref("unit_id", "units.unit_id", "RESTRICT"),
        sa.Column("hold_id", sa.String(128), nullable=False, unique=True),
        sa.Column("command_id", sa.String(128), nullable=True),
        _when("placed_at"),
        _when("acked_at"),
        sa.Column("release_command_id", sa.String(128), nullable=True),
        _when("released_at"),
        _when("release_acked_at"),
        sa.Column("problem", sa.Text(), nullable=True),
    )
    op.create_table(
        "retrievals",
        _id(),
        _ref("case_id", "cases.id", "CASCADE"),
        _ref("unit_id", "units.unit_id", "RESTRICT"),
        sa.Column("upload_id", sa.String(128), nullable=False, unique=True),
        sa.Column("command_id", sa.String(128), nullable=True),
        _when("requested_at", False),
        _when("started_at"),
        _when("finished_at"),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=True),
        sa.Column("received_bytes", sa.BigInteger(), nullable=False),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.Column("source", sa.String(20), nullable=False),
    )
    op.create_table(
        "retrieved_files",
        _id(),
        _ref("retrieval_id", "retrievals.id", "CASCADE"),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("received_bytes", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.Column("segment_id", sa.String(128), nullable=True),
        sa.Column("resent_bytes", sa.BigInteger(), nullable=False),
        _when("verified_at"),
    )
    op.create_index(
        "ux_retrieved_files_retrieval_name",
        "retrieved_files",
        ["retrieval_id", "name"],
        unique=True,
    )
    op.create_table(
        "exhibits",
        _id(),
        _ref("case_id", "cases.id", "RESTRICT"),
        sa.Column("number", sa.String(60), nullable=False, unique=True),
        _when("created_at", False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        _ref("derived_from_id", "exhibits.id", "RESTRICT", nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
    )
    op.create_table(
        "releases",
        _id(),
        _ref("case_id", "cases.id", "RESTRICT"),
        _ref("exhibit_id", "exhibits.id", "RESTRICT"),
        _when("released_at", False),
        sa.Column("released_by", sa.String(64), nullable=False),
        sa.Column("recipient_name", sa.String(200), nullable=False),
        sa.Column("recipient_org", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("lawful_basis", sa.Text(), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("method", sa.String(100), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
    )
    op.create_table(
        "review_log",
        _id(),
        _when("at", False),
        sa.Column("user", sa.String(64), nullable=False),
        _ref("case_id", "cases.id", "RESTRICT"),
        _ref("exhibit_id", "exhibits.id", "RESTRICT", nullable=True),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("client", sa.String(500), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    for table, columns in _INDEXED.items():
        for column in columns:
            op.create_index(f"ix_{table}_{column}", table, [column])


def downgrade() -> None:
    for table, columns in _INDEXED.items():
        for column in columns:
            op.drop_index(f"ix_{table}_{column}", table_name=table)
    op.drop_index("ux_retrieved_files_retrieval_name", table_name="retrieved_files")
    for table in (
        "review_log",
        "releases",
        "exhibits",
        "retrieved_files",
        "retrievals",
        "case_holds",
        "case_ranges",
        "cases",
    ):
        op.drop_table(table)
