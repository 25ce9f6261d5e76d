"""add the per-account worker quota column to accounts

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 07:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None
# Additive (nullable columns): engines of schema 0001 still run on it (engine/control/schema.py).
compatible_from = '0001'


def upgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('max_workers', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('max_workers')
