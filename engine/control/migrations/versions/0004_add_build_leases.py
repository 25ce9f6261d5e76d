"""add the build lease (owner replica, lease_expires_at) to builds

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 09:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None
# Additive (two nullable columns and an index): engines of 0001-0003 keep reading and writing builds
# during a rolling upgrade; their builds carry no lease, so a 0004 replica may take one over and build
# it again (wasted work, never a wrong result).
compatible_from = '0001'


def upgrade() -> None:
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_builds_status', ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.drop_index('ix_builds_status')
        batch_op.drop_column('lease_expires_at')
        batch_op.drop_column('owner')
