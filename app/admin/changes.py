"""How an admin change is applied: one transaction, then live in every gateway process."""

from typing import Annotated

from fastapi import Depends
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.deps import StateDep
from app.errors import Conflict
from app.store.changes import ChangeNotices

_CONFLICT = "The change conflicts with the stored configuration."


async def change_notices(state: StateDep) -> ChangeNotices:
    assert state.notices is not None, "the lifespan sets the change notices"
    return state.notices


ChangeNoticesDep = Annotated[ChangeNotices, Depends(change_notices)]


async def flush_change(session: AsyncSession) -> None:
    """Write pending rows now, so a constraint violation is a 409 before anything commits."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(_CONFLICT) from exc


async def commit_change(session: AsyncSession, notices: ChangeNotices) -> None:
    """Commit as one transaction, then make the change live in every process."""
    try:
        await session.commit()
    except IntegrityError as exc:
        # Another request committed a conflicting row between our check and our commit.
        raise Conflict(_CONFLICT) from exc
    await notices.changed()
