"""pass-through routes, the config store's revision

`routes`: one row per pass-through route, its declaration as JSON
(`app.store.route_declarations`). `config_revision`: one row whose number every committed
change raises, so each process can tell by version whether its snapshot is behind.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 18:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'routes',
        sa.Column('route_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('declaration', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('route_id'),
        sa.UniqueConstraint('name'),
        sqlite_autoincrement=True,
    )
    revisions = op.create_table(
        'config_revision',
        sa.Column('revision_id', sa.Integer(), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('revision_id'),
    )
    op.bulk_insert(revisions, [{'revision_id': 1, 'revision': 0}])


def downgrade() -> None:
    op.drop_table('config_revision')
    op.drop_table('routes')
