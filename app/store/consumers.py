"""Repositories of plans, consumers and their API keys. Only this module queries those tables."""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.store.models import ApiKey, Consumer, Plan


class PlanRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def all(self) -> Sequence[Plan]:
        return (await self.session.scalars(select(Plan).order_by(Plan.name))).all()

    async def by_id(self, plan_id: int) -> Plan | None:
        return await self.session.get(Plan, plan_id)

    async def by_name(self, name: str) -> Plan | None:
        return await self.session.scalar(select(Plan).where(Plan.name == name))

    async def add(self, plan: Plan) -> Plan:
        self.session.add(plan)
        await self.session.flush()
        return plan

    async def consumers_on(self, plan: Plan) -> int:
        """How many consumers use the plan (a plan in use cannot be deleted)."""
        count = await self.session.scalar(
            select(func.count()).select_from(Consumer).where(Consumer.plan_id == plan.plan_id)
        )
        return int(count or 0)

    async def delete(self, plan: Plan) -> None:
        await self.session.delete(plan)
        await self.session.flush()


class ConsumerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def all(self) -> Sequence[Consumer]:
        return (await self.session.scalars(select(Consumer).order_by(Consumer.name))).all()

    async def by_id(self, consumer_id: int) -> Consumer | None:
        return await self.session.get(Consumer, consumer_id)

    async def by_name(self, name: str) -> Consumer | None:
        return await self.session.scalar(select(Consumer).where(Consumer.name == name))

    async def by_oauth_client_id(self, client_id: str) -> Consumer | None:
        return await self.session.scalar(
            select(Consumer).where(Consumer.oauth_client_id == client_id)
        )

    async def add(self, consumer: Consumer) -> Consumer:
        self.session.add(consumer)
        await self.session.flush()
        await self.session.refresh(consumer, ["plan"])
        return consumer

    async def save(self, consumer: Consumer) -> Consumer:
        await self.session.flush()
        await self.session.refresh(consumer, ["plan"])
        return consumer

    async def delete(self, consumer: Consumer) -> None:
        await self.session.delete(consumer)
        await self.session.flush()


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def all(self) -> Sequence[ApiKey]:
        return (await self.session.scalars(select(ApiKey).order_by(ApiKey.key_id))).all()

    async def of_consumer(self, consumer_id: int) -> Sequence[ApiKey]:
        query = select(ApiKey).where(ApiKey.consumer_id == consumer_id).order_by(ApiKey.key_id)
        return (await self.session.scalars(query)).all()

    async def by_id(self, consumer_id: int, key_id: int) -> ApiKey | None:
        return await self.session.scalar(
            select(ApiKey).where(ApiKey.consumer_id == consumer_id, ApiKey.key_id == key_id)
        )

    async def add(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        await self.session.flush()
        return key

    async def revoke(self, key: ApiKey, *, at: datetime) -> ApiKey:
        if key.revoked_at is None:
            key.revoked_at = at
            await self.session.flush()
        return key
