"""fallbacks: the terminals' fallbacks and supervised overrides, uploaded in their own batch kind

Revision ID: 0005_fallbacks
Revises: 0004_card_schemes
Create Date: 2026-11-23 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_fallbacks"
down_revision = "0004_card_schemes"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "fallbacks",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("batch_id", BIG_ID, nullable=False),
        sa.Column("terminal_id", sa.String(16), nullable=False),
        sa.Column("facility_id", sa.BigInteger(), nullable=True),
        sa.Column("event", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("card_id", sa.String(16), nullable=False),
        sa.Column("member", sa.SmallInteger(), nullable=False),
        sa.Column("operator_id", sa.String(16), nullable=False),
        sa.Column("supervisor_id", sa.String(16), nullable=True),
        sa.Column("reason", sa.String(40), nullable=True),
        sa.Column("note", sa.String(200), nullable=True),
        sa.Column("records", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], name=op.f("fk_fallbacks_batch_id_batches")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fallbacks")),
        sa.UniqueConstraint("content_hash", name=op.f("uq_fallbacks_content_hash")),
    )
    op.create_index(op.f("ix_fallbacks_terminal_id"), "fallbacks", ["terminal_id"])
    op.create_index(op.f("ix_fallbacks_card_id"), "fallbacks", ["card_id"])
    op.create_index(op.f("ix_fallbacks_operator_id"), "fallbacks", ["operator_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_fallbacks_operator_id"), table_name="fallbacks")
    op.drop_index(op.f("ix_fallbacks_card_id"), table_name="fallbacks")
    op.drop_index(op.f("ix_fallbacks_terminal_id"), table_name="fallbacks")
    op.drop_table("fallbacks")
