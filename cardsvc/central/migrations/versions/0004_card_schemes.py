"""cards.schemes: every scheme on a card with its cover (balances are reconciled per scheme)

Revision ID: 0004_card_schemes
Revises: 0003_phase2
Create Date: 2026-11-23 07:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_card_schemes"
down_revision = "0003_phase2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cards", schema=None) as batch_op:
        batch_op.add_column(sa.Column("schemes", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cards", schema=None) as batch_op:
        batch_op.drop_column("schemes")
