"""security nonces: the WS-Security replay cache's table takes the name of what it holds

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 18:20:00
"""

from __future__ import annotations

from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_replay_cache_expires', table_name='replay_cache')
    op.rename_table('replay_cache', 'security_nonces')
    op.create_index('ix_security_nonces_expires', 'security_nonces', ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_security_nonces_expires', table_name='security_nonces')
    op.rename_table('security_nonces', 'replay_cache')
    op.create_index('ix_replay_cache_expires', 'replay_cache', ['expires_at'], unique=False)
