"""developer portal: sign-ups and the audit trail

`developer_signups`: a developer's request for partner API access, its decision and the
consumer it became. `audit_events`: every action taken through the portal (`app.portal`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 19:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'developer_signups',
        sa.Column('signup_id', sa.Integer(), nullable=False),
        sa.Column('subject', sa.String(length=200), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('email', sa.String(length=200), nullable=False),
        sa.Column('company', sa.String(length=100), nullable=False),
        sa.Column('intended_use', sa.String(length=1000), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('consumer_id', sa.Integer(), nullable=True),
        sa.Column('decided_by', sa.String(length=200), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['consumer_id'], ['consumers.consumer_id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('signup_id'),
        sa.UniqueConstraint('subject'),
        sqlite_autoincrement=True,
    )
    op.create_index('ix_developer_signups_status', 'developer_signups', ['status'])
    op.create_table(
        'audit_events',
        sa.Column('event_id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('consumer_id', sa.Integer(), nullable=True),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('target', sa.String(length=200), nullable=False),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('event_id'),
        sqlite_autoincrement=True,
    )
    op.create_index('ix_audit_events_at', 'audit_events', ['at'])
    op.create_index('ix_audit_events_consumer_id', 'audit_events', ['consumer_id'])


def downgrade() -> None:
    op.drop_index('ix_audit_events_consumer_id', table_name='audit_events')
    op.drop_index('ix_audit_events_at', table_name='audit_events')
    op.drop_table('audit_events')
    op.drop_index('ix_developer_signups_status', table_name='developer_signups')
    op.drop_table('developer_signups')
