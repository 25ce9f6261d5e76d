"""create accounts, services, environments, variables, entries, versions, blobs, builds, deployments and logs

Revision ID: 0001
Revises: (none)
Create Date: 2026-12-06 05:45:22.782622
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('sid', sa.String(length=34), nullable=False),
    sa.Column('friendly_name', sa.String(length=64), nullable=False),
    sa.Column('token_hash', sa.String(length=255), nullable=False),
    sa.Column('date_created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('date_updated', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sid'),
    sa.UniqueConstraint('friendly_name')
    )
    op.create_table('blobs',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('date_created', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sha256')
    )
    op.create_table('api_keys',
    sa.Column('sid', sa.String(length=34), nullable=False),
    sa.Column('account_sid', sa.String(length=34), nullable=False),
    sa.Column('friendly_name', sa.String(length=64), nullable=False),
    sa.Column('secret_hash', sa.String(length=255), nullable=False),
    sa.Column('date_created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('date_updated', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_sid'], ['accounts.sid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sid')
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_account_sid'), ['account_sid'], unique=False)

    op.create_table('services',
    sa.Column('sid', sa.String(length=34), nullable=False),
    sa.Column('account_sid', sa.String(length=34), nullable=False),
    sa.Column('unique_name', sa.String(length=50), nullable=False),
    sa.Column('friendly_name', sa.String(length=255), nullable=False),
    sa.Column('include_credentials', sa.Boolean(), nullable=False),
    sa.Column('ui_editable', sa.Boolean(), nullable=False),
    sa.Column('date_created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('date_updated', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_sid'], ['accounts.sid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sid'),
    sa.UniqueConstraint('account_sid', 'unique_name', name='uq_services_account_unique_name')
    )
    with op.batch_alter_table('services', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_services_account_sid'), ['account_sid'], unique=False)

    op.create_table('builds',
    sa.Column('sid', sa.String(length=34), nullable=False),
    sa.Column('account_sid', sa.String(length=34), nullable=False),
    sa.Column('service_sid', sa.String(length=34), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('runtime', sa.String(length=16), nullable=False),
    sa.Column('dependencies', sa.Text(), nullable=False),
    sa.Column('function_versions', sa.Text(), nullable=False),
    sa.Column('asset_versions', sa.Text(), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('date_created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('date_updated', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_sid'], ['accounts.sid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['service_sid'], ['services.sid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sid')
    )
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.create_index('ix_builds_account_created', ['account_sid', 'date_created'], unique=False)
        batch_op.create_index(batch_op.f('ix_builds_account_sid'), ['account_sid'], unique=False)
        batch_op.create_index(batch_op.f('ix_builds_service_sid'), ['service_sid'], unique=False)

    op.create_table('entries',
    sa.Column('sid', sa.String(length=34), nullable=False),
    sa.Column('account_sid', sa.String(length=34), nullable=False),
    sa.Column('service_sid', sa.String(length=34), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('friendly_name', sa.String(length=255), nullable=False),
    sa.Column('date_created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('date_updated', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_sid'], ['accounts.sid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['service_sid'], ['services.sid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sid')
    )
    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_entries_account_sid'), ['account_sid'], unique=False)
        batch_op.create_index(batch_op.f('ix_entries_service_sid'), ['service_sid'], unique=False)

    op.create_table('environments',
    sa.Column('sid', sa.String(length=34), nullable=False),
    sa.Column('account_sid', sa.String(length=34), nullable=False),
    sa.Column('service_sid', sa.String(length=34), nullable=False),
    sa.Column('unique_name', sa.String(length=100), nullable=False),
    sa.Column('domain_suffix', sa.String(length=16), nullable=True),
    sa.Column('domain_name', sa.String(length=255), nullable=False),
    sa.Column('build_sid', sa.String(length=34), nullable=True),
    sa.Column('date_created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('date_updated', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_sid'], ['accounts.sid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['service_sid'], ['services.sid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sid'),
    sa.UniqueConstraint('domain_name'),
    sa.UniqueConstraint('service_sid', 'unique_name', name='uq_environments_service_unique_name')
    )
    with op.batch_alter_table('environments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_environments_account_sid'), ['account_sid'], unique=False)
        batch_op.create_index(batch_op.f('ix_environments_service_sid'), ['service_sid'], unique=False)

    op.create_table('deployments',
    sa.Column('sid', sa.String(length=34), nullable=False),
    sa.Column('account_sid', sa.String(length=34), nullable=False),
    sa.Column('service_sid', sa.String(length=34), nullable=False),
    sa.Column('environment_sid', sa.String(length=34), nullable=False),
    sa.Column('build_sid', sa.String(length=34), nullable=False),
    sa.Column('date_created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('date_updated', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_sid'], ['accounts.sid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['build_sid'], ['builds.sid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['environment_sid'], ['environments.sid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['service_sid'], ['services.sid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sid')
    )
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deployments_account_sid'), ['account_sid'], unique=False)
        batch_op.create_index(batch_op.f('ix_deployments_environment_sid'), ['environment_sid'], unique=False)

    op.create_table('logs',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('sid', sa.String(length=34), nullable=False),
    sa.Column('account_sid', sa.String(length=34), nullable=False),
    sa.Column('service_sid', sa.String(length=34), nullable=False),
    sa.Column('environment_sid', sa.String(length=34), nullable=False),
    sa.Column('build_sid', sa.String(length=34), nullable=True),
    sa.Column('deployment_sid', sa.String(length=34), nullable=True),
    sa.Column('function_sid', sa.String(length=34), nullable=True),
    sa.Column('request_sid', sa.String(length=34), nullable=True),
    sa.Column('level', sa.String(length=8), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('date_created', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_sid'], ['accounts.sid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['environment_sid'], ['environments.sid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['service_sid'], ['services.sid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('sid')
    )
    with op.batch_alter_table('logs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_logs_account_sid'), ['account_sid'], unique=False)
        batch_op.create_index(batch_op.f('ix_logs_environment_sid'), ['environment_sid'], unique=False)

    op.create_table('variables',
    sa.Column('sid', sa.String(length=34), nullable=False),
    sa.Column('account_sid', sa.String(length=34), nullable=False),
    sa.Column('service_sid', sa.String(length=34), nullable=False),
    sa.Column('environment_sid', sa.String(length=34), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('date_created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('date_updated', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_sid'], ['accounts.sid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['environment_sid'], ['environments.sid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['service_sid'], ['services.sid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sid'),
    sa.UniqueConstraint('environment_sid', 'key', name='uq_variables_environment_key')
    )
    with op.batch_alter_table('variables', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_variables_account_sid'), ['account_sid'], unique=False)
        batch_op.create_index(batch_op.f('ix_variables_environment_sid'), ['environment_sid'], unique=False)

    op.create_table('versions',
    sa.Column('sid', sa.String(length=34), nullable=False),
    sa.Column('account_sid', sa.String(length=34), nullable=False),
    sa.Column('service_sid', sa.String(length=34), nullable=False),
    sa.Column('entry_sid', sa.String(length=34), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('path', sa.String(length=255), nullable=False),
    sa.Column('visibility', sa.String(length=16), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=255), nullable=False),
    sa.Column('blob_sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('date_created', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_sid'], ['accounts.sid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['blob_sha256'], ['blobs.sha256'], ),
    sa.ForeignKeyConstraint(['entry_sid'], ['entries.sid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['service_sid'], ['services.sid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sid')
    )
    with op.batch_alter_table('versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_versions_account_sid'), ['account_sid'], unique=False)
        batch_op.create_index(batch_op.f('ix_versions_entry_sid'), ['entry_sid'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_versions_entry_sid'))
        batch_op.drop_index(batch_op.f('ix_versions_account_sid'))

    op.drop_table('versions')
    with op.batch_alter_table('variables', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_variables_environment_sid'))
        batch_op.drop_index(batch_op.f('ix_variables_account_sid'))

    op.drop_table('variables')
    with op.batch_alter_table('logs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_logs_environment_sid'))
        batch_op.drop_index(batch_op.f('ix_logs_account_sid'))

    op.drop_table('logs')
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deployments_environment_sid'))
        batch_op.drop_index(batch_op.f('ix_deployments_account_sid'))

    op.drop_table('deployments')
    with op.batch_alter_table('environments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_environments_service_sid'))
        batch_op.drop_index(batch_op.f('ix_environments_account_sid'))

    op.drop_table('environments')
    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_entries_service_sid'))
        batch_op.drop_index(batch_op.f('ix_entries_account_sid'))

    op.drop_table('entries')
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_builds_service_sid'))
        batch_op.drop_index(batch_op.f('ix_builds_account_sid'))
        batch_op.drop_index('ix_builds_account_created')

    op.drop_table('builds')
    with op.batch_alter_table('services', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_services_account_sid'))

    op.drop_table('services')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_account_sid'))

    op.drop_table('api_keys')
    op.drop_table('blobs')
    op.drop_table('accounts')
