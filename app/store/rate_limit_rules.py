"""Repository of the rate limit rules table. Only this module queries it."""

from collections.abc import Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.store.models import RateLimitRule


class RateLimitRuleRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def all(self) -> Sequence[RateLimitRule]:
        query = select(RateLimitRule).order_by(RateLimitRule.rule_id)
        return (await self.session.scalars(query)).all()

    async def by_id(self, rule_id: int) -> RateLimitRule | None:
        return await self.session.get(RateLimitRule, rule_id)

    async def by_name(self, name: str) -> RateLimitRule | None:
        return await self.session.scalar(select(RateLimitRule).where(RateLimitRule.name == name))

    async def names_keyed_on_plan(self, plan_name: str) -> Sequence[str]:
        """The names of the rules that count each consumer on `plan_name`."""
        query = (
            select(RateLimitRule.name)
            .where(RateLimitRule.key_by == "plan", RateLimitRule.plan_name == plan_name)
            .order_by(RateLimitRule.rule_id)
        )
        return (await self.session.scalars(query)).all()

    async def add(self, rule: RateLimitRule) -> RateLimitRule:
        self.session.add(rule)
        await self.session.flush()
        return rule

    async def update(self, rule: RateLimitRule, changes: Mapping[str, object]) -> RateLimitRule:
        """Set the given columns and write them, so a duplicate name fails here."""
        for column, value in changes.items():
            setattr(rule, column, value)
        await self.session.flush()
        return rule

    async def delete(self, rule: RateLimitRule) -> None:
        await self.session.delete(rule)
        await self.session.flush()
