"""card_periods: a renewed card's policy periods (the register keeps the current one in cards)

Revision ID: 0006_card_periods
Revises: 0005_fallbacks
Create Date: 2026-11-23 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_card_periods"
down_revision = "0005_fallbacks"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "card_periods",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("card_id", sa.String(16), nullable=False),
        sa.Column("serial", sa.BigInteger(), nullable=False),
        sa.Column("policy_start", sa.BigInteger(), nullable=False),
        sa.Column("policy_end", sa.BigInteger(), nullable=False),
        sa.Column("scheme_id", sa.SmallInteger(), nullable=False),
        sa.Column("cover_paise", sa.BigInteger(), nullable=False),
        sa.Column("schemes", sa.JSON(), nullable=True),
        sa.Column("authorisation_id", sa.String(16), nullable=True),
        sa.Column("counter", sa.BigInteger(), nullable=True),
        sa.Column("committed_at", sa.BigInteger(), nullable=True),
        sa.Column("recorded_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_periods")),
        sa.UniqueConstraint("card_id", "serial", name="uq_card_periods_card_serial"),
    )


def downgrade() -> None:
    op.drop_table("card_periods")
