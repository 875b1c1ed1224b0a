"""Repository of the rate limit rules table. Only this module queries it."""

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.store.models import RateLimitRule


class RateLimitRuleRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def all(self) -> Sequence[RateLimitRule]:
        query = select(RateLimitRule).order_by(RateLimitRule.rule_id)
        return (await self.session.scalars(query)).all()

    async def add(self, rule: RateLimitRule) -> RateLimitRule:
        self.session.add(rule)
        await self.session.flush()
        return rule
