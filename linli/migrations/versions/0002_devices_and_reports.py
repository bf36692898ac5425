"""device credentials, lifecycle and resident reports

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('device_credentials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site', sa.String(length=32), nullable=False),
    sa.Column('device_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('username', sa.String(length=80), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username')
    )
    with op.batch_alter_table('device_credentials', schema=None) as batch_op:
        batch_op.create_index('ix_device_credentials_device', ['site', 'device_id'], unique=False)

    op.create_table('device_lifecycle_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site', sa.String(length=32), nullable=False),
    sa.Column('device_id', sa.String(length=32), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('device_lifecycle_events', schema=None) as batch_op:
        batch_op.create_index('ix_device_lifecycle_device', ['site', 'device_id', 'at'], unique=False)

    op.create_table('resident_reports',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('site', sa.String(length=32), nullable=False),
    sa.Column('device_id', sa.String(length=32), nullable=True),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('contact', sa.String(length=128), nullable=True),
    sa.Column('location', sa.JSON(), nullable=False),
    sa.Column('photos', sa.JSON(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('personal_data_removed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('resident_reports', schema=None) as batch_op:
        batch_op.create_index('ix_resident_reports_ticket', ['ticket_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('resident_reports', schema=None) as batch_op:
        batch_op.drop_index('ix_resident_reports_ticket')

    op.drop_table('resident_reports')
    with op.batch_alter_table('device_lifecycle_events', schema=None) as batch_op:
        batch_op.drop_index('ix_device_lifecycle_device')

    op.drop_table('device_lifecycle_events')
    with op.batch_alter_table('device_credentials', schema=None) as batch_op:
        batch_op.drop_index('ix_device_credentials_device')

    op.drop_table('device_credentials')

