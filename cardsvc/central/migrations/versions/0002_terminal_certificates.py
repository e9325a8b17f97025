"""terminals.certificate_chain: CV certificate chains checked to the root with cardsvc.pki

Revision ID: 0002_terminal_certificates
Revises: 0001_initial
Create Date: 2026-11-23 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_terminal_certificates"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("terminals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("certificate_chain", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("terminals", schema=None) as batch_op:
        batch_op.drop_column("certificate_chain")
