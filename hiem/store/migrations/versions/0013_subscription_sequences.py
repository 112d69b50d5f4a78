"""subscription counters: each subscription numbers its own deliveries (no global fan-out lock) and counts
its MessageContent filter failures

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 07:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('subscriptions') as batch:
        batch.add_column(sa.Column('last_sequence', sa.BigInteger(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('filter_failures', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('filter_failed_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('filter_error', sa.String(length=512), nullable=True))
    op.execute("UPDATE subscriptions SET last_sequence = COALESCE("
               "(SELECT MAX(sequence) FROM deliveries WHERE deliveries.subscription_id = subscriptions.id), 0)")


def downgrade() -> None:
    with op.batch_alter_table('subscriptions') as batch:
        for column in ('filter_error', 'filter_failed_at', 'filter_failures', 'last_sequence'):
            batch.drop_column(column)
