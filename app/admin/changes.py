"""How an admin change is applied: one transaction, then live in every gateway process.

Handlers write and flush (`stage_change`), never commit. The request's session dependency
commits once the handler has succeeded, or rolls back when it raised; only after the commit
do the change notice and any other announcement go out (`app.store.database.after_commit`).
The admin session ends before the response is sent, so a 2xx means the change is committed
and live in this process, and a commit that fails is the response's own error.
"""

from typing import Annotated

from fastapi import Depends
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.deps import StateDep
from app.errors import Conflict
from app.policy.chain import PolicyChain
from app.store.database import CONFLICTING_CHANGE, after_commit
from app.store.notices import ChangeNotices
from app.store.routes import RevisionRepository


async def change_notices(state: StateDep) -> ChangeNotices:
    return state.notices


ChangeNoticesDep = Annotated[ChangeNotices, Depends(change_notices)]


async def policy_chain(state: StateDep) -> PolicyChain:
    return state.chain


# The limiters and quota counters, whose counts of a deleted consumer or rule go with it.
PolicyChainDep = Annotated[PolicyChain, Depends(policy_chain)]


async def flush_change(session: AsyncSession) -> None:
    """Write pending rows now, so a constraint violation is a 409 before anything commits."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(CONFLICTING_CHANGE) from exc


async def stage_change(session: AsyncSession, notices: ChangeNotices) -> None:
    """Write the change now (a 409 if it breaks a constraint) and have every process told of
    it once the request's transaction has committed. The store's revision rises in the same
    transaction, so every process can tell by its number that it is behind."""
    await flush_change(session)
    await RevisionRepository(session).advance()
    after_commit(session, notices.changed)
