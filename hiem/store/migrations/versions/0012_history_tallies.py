"""history tallies: what the sweeper folded of finished deliveries and received notifications, and the
index the notifications received since are counted by

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 08:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    tallies = op.create_table(
        'history_tallies',
        sa.Column('kind', sa.String(length=64), nullable=False),
        sa.Column('rows', sa.BigInteger(), nullable=False),
        sa.Column('through', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('kind'),
    )
    # the watermark, at hiem.store.tallies.NEVER: nothing folded yet (the sweeper's first fold counts the
    # history once; until then a read counts it all, as before)
    op.bulk_insert(tallies, [{'kind': 'through', 'rows': 0, 'through': datetime(1970, 1, 1, tzinfo=UTC)}])
    op.create_index('ix_notifications_received', 'notifications', ['received_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_notifications_received', table_name='notifications')
    op.drop_table('history_tallies')
