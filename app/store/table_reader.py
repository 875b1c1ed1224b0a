"""Whole config tables for the snapshot, read so that a row that cannot be read is refused
alone: the rest of its table still loads.

SQLite stores whatever a hand-written statement gives it (text in a number column, broken
JSON, a date that is not one), and converting such a value fails the whole query. When a
table's query fails that way, its rows are read again one by one.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.interfaces import ORMOption

from app.store.models import Base

logger = logging.getLogger("gateway.config")

Row = TypeVar("Row", bound=Base)

# What converting a stored value raises: the row's fault, not the database's.
UNREADABLE = (ValueError, TypeError, ArithmeticError, LookupError)


@dataclass(frozen=True, slots=True)
class TableRows(Generic[Row]):
    rows: Sequence[Row]
    # (primary key, why) of each row that could not be read.
    unreadable: tuple[tuple[int, str], ...] = ()


class TableReader:
    """Only the snapshot loader reads whole tables this way; the admin API uses the
    repositories."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def rows(self, model: type[Row], *options: ORMOption) -> TableRows[Row]:
        """Every row of `model`'s table in primary-key order; `options` e.g. leave
        relationships unloaded, so a row is read from its own table alone."""
        key = inspect(model).primary_key[0]
        try:
            query = select(model).order_by(key).options(*options)
            return TableRows((await self.session.scalars(query)).all())
        except UNREADABLE as exc:
            logger.warning("table %s has a row that cannot be read: %s", model.__tablename__, exc)
        rows: list[Row] = []
        unreadable: list[tuple[int, str]] = []
        for row_id in (await self.session.scalars(select(key).order_by(key))).all():
            one = select(model).where(key == row_id).options(*options)
            try:
                row = await self.session.scalar(one)
            except UNREADABLE as exc:
                unreadable.append((row_id, f"cannot be read: {exc}"))
                continue
            if row is not None:
                rows.append(row)
        return TableRows(rows, tuple(unreadable))
