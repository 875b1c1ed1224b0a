"""Repositories of the developer portal's tables: sign-ups and the audit trail. Only this
module queries them."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.store.models import AuditEvent, DeveloperSignup


class SignupRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_subject(self, subject: str) -> DeveloperSignup | None:
        return await self.session.scalar(
            select(DeveloperSignup).where(DeveloperSignup.subject == subject)
        )

    async def by_id(self, signup_id: int) -> DeveloperSignup | None:
        return await self.session.get(DeveloperSignup, signup_id)

    async def all(self) -> Sequence[DeveloperSignup]:
        """Pending first, then the newest."""
        query = select(DeveloperSignup).order_by(
            (DeveloperSignup.status != "pending"), DeveloperSignup.signup_id.desc()
        )
        return (await self.session.scalars(query)).all()

    async def add(self, signup: DeveloperSignup) -> DeveloperSignup:
        self.session.add(signup)
        await self.session.flush()
        return signup


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(
        self,
        *,
        actor: str,
        action: str,
        consumer_id: int | None,
        target: str = "",
        detail: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditEvent:
        event = AuditEvent(
            actor=actor,
            action=action,
            consumer_id=consumer_id,
            target=target,
            detail=detail or {},
        )
        if at is not None:
            event.at = at
        self.session.add(event)
        await self.session.flush()
        return event

    async def latest(
        self, *, consumer_id: int | None = None, limit: int = 50
    ) -> Sequence[AuditEvent]:
        """The newest events, of one consumer or of all."""
        query = select(AuditEvent).order_by(AuditEvent.event_id.desc()).limit(limit)
        if consumer_id is not None:
            query = query.where(AuditEvent.consumer_id == consumer_id)
        return (await self.session.scalars(query)).all()
