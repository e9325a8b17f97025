"""Phase 2: sealed de-duplication templates, settlement runs, issued authorisations, published lists,
flag review (resolved_at, resolution), package categories, fko_ledgers.officer_verified

Revision ID: 0003_phase2
Revises: 0002_terminal_certificates
Create Date: 2026-11-23 07:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_phase2"
down_revision = "0002_terminal_certificates"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("fko_ledgers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("officer_verified", sa.String(16), nullable=True))
    with op.batch_alter_table("packages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("category", sa.String(60), server_default="general", nullable=False))
    with op.batch_alter_table("flags", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resolved_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("resolution", sa.String(200), nullable=True))
    op.create_table(
        "sealed_templates",
        sa.Column("card_id", sa.String(16), nullable=False),
        sa.Column("district", sa.String(200), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("searched_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("card_id", name=op.f("pk_sealed_templates")),
    )
    op.create_index(op.f("ix_sealed_templates_district"), "sealed_templates", ["district"])
    op.create_table(
        "settlement_runs",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("facility_id", sa.BigInteger(), nullable=False),
        sa.Column("period_start", sa.BigInteger(), nullable=False),
        sa.Column("period_end", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("payable_count", sa.Integer(), nullable=False),
        sa.Column("payable_paise", sa.BigInteger(), nullable=False),
        sa.Column("held_count", sa.Integer(), nullable=False),
        sa.Column("held_paise", sa.BigInteger(), nullable=False),
        sa.Column("claims", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_runs")),
        sa.UniqueConstraint("facility_id", "period_start", "period_end", name="uq_settlement_runs_period"),
    )
    op.create_table(
        "authorisations",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("card_id", sa.String(16), nullable=False),
        sa.Column("district", sa.String(200), nullable=False),
        sa.Column("audience", sa.String(16), nullable=False),
        sa.Column("serial", sa.BigInteger(), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("not_after", sa.BigInteger(), nullable=False),
        sa.Column("wire", sa.LargeBinary(), nullable=False),
        sa.Column("marks", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authorisations")),
    )
    op.create_index(op.f("ix_authorisations_card_id"), "authorisations", ["card_id"])
    op.create_index(op.f("ix_authorisations_district"), "authorisations", ["district"])
    op.create_table(
        "published_lists",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("wire", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_published_lists")),
        sa.UniqueConstraint("kind", "version", name="uq_published_lists_kind_version"),
    )


def downgrade() -> None:
    op.drop_table("published_lists")
    op.drop_index(op.f("ix_authorisations_district"), table_name="authorisations")
    op.drop_index(op.f("ix_authorisations_card_id"), table_name="authorisations")
    op.drop_table("authorisations")
    op.drop_table("settlement_runs")
    op.drop_index(op.f("ix_sealed_templates_district"), table_name="sealed_templates")
    op.drop_table("sealed_templates")
    with op.batch_alter_table("flags", schema=None) as batch_op:
        batch_op.drop_column("resolution")
        batch_op.drop_column("resolved_at")
    with op.batch_alter_table("packages", schema=None) as batch_op:
        batch_op.drop_column("category")
    with op.batch_alter_table("fko_ledgers", schema=None) as batch_op:
        batch_op.drop_column("officer_verified")
