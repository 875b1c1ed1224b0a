"""Repository of the service registry tables. Only this module queries them."""

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.store.models import Service, ServiceInstance


class ServiceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def all(self) -> Sequence[Service]:
        result = await self.session.scalars(select(Service).order_by(Service.name))
        return result.all()

    async def by_name(self, name: str) -> Service | None:
        return await self.session.scalar(select(Service).where(Service.name == name))

    async def add(self, service: Service) -> Service:
        self.session.add(service)
        await self.session.flush()
        await self.session.refresh(service, ["instances"])
        return service

    async def delete(self, service: Service) -> None:
        await self.session.delete(service)
        await self.session.flush()

    async def instance(self, service: Service, instance_id: int) -> ServiceInstance | None:
        return await self.session.scalar(
            select(ServiceInstance).where(
                ServiceInstance.service_id == service.service_id,
                ServiceInstance.instance_id == instance_id,
            )
        )

    async def add_instance(self, service: Service, instance: ServiceInstance) -> ServiceInstance:
        instance.service_id = service.service_id
        self.session.add(instance)
        await self.session.flush()
        await self.session.refresh(service, ["instances"])
        return instance

    async def delete_instance(self, service: Service, instance: ServiceInstance) -> None:
        await self.session.delete(instance)
        await self.session.flush()
        await self.session.refresh(service, ["instances"])
