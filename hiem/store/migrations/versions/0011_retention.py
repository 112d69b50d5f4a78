"""retention: what the purge deleted, and the index it deletes finished deliveries by

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'purge_totals',
        sa.Column('kind', sa.String(length=64), nullable=False),
        sa.Column('rows', sa.BigInteger(), nullable=False),
        sa.Column('last_purge_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('kind'),
    )
    op.create_index('ix_deliveries_state_updated', 'deliveries', ['state', 'updated_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_deliveries_state_updated', table_name='deliveries')
    op.drop_table('purge_totals')
