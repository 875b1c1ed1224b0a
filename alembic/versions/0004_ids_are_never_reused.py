"""ids are never reused: AUTOINCREMENT on SQLite

SQLite's plain INTEGER PRIMARY KEY hands the largest deleted id to the next row, so a new
consumer could inherit a deleted one's id, and with it the quota and rate limit counters
keyed by that id. AUTOINCREMENT never hands out an id twice. A SQLite table gets it only
when it is created, so each table is rebuilt (batch mode: copy, drop, rename) with its rows
and ids. PostgreSQL's sequences never reuse a value: nothing to do there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 15:20:00.000000
"""

from collections.abc import Sequence

from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every table with an id of its own; each id is in an admin path, and some key state
# outside the database (Redis counters, in-process limits).
TABLES = ("plans", "services", "consumers", "service_instances", "api_keys", "rate_limit_rules")


def _rebuild(*, autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)
