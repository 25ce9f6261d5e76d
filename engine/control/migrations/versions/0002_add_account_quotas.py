"""add per-account quota columns to accounts

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 06:33:23.919539
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None
# Additive (nullable columns): engines of schema 0001 still run on it (engine/control/schema.py).
compatible_from = '0001'


def upgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('max_services', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('max_environments_per_service', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('builds_per_hour', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('max_version_bytes', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('max_build_bytes', sa.Integer(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('max_build_bytes')
        batch_op.drop_column('max_version_bytes')
        batch_op.drop_column('builds_per_hour')
        batch_op.drop_column('max_environments_per_service')
        batch_op.drop_column('max_services')

