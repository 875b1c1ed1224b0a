"""Repository of the pass-through routes table and the config store's revision. Only this
module queries them."""

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.store.models import ConfigRevision, Route
from app.store.route_declarations import RouteDeclaration

# The one row of `config_revision`.
_REVISION_ROW = 1


class RouteRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def all(self) -> Sequence[Route]:
        return (await self.session.scalars(select(Route).order_by(Route.route_id))).all()

    async def by_id(self, route_id: int) -> Route | None:
        return await self.session.get(Route, route_id)

    async def by_name(self, name: str) -> Route | None:
        return await self.session.scalar(select(Route).where(Route.name == name))

    async def add(self, declaration: RouteDeclaration) -> Route:
        route = Route(
            name=declaration.name,
            enabled=declaration.enabled,
            declaration=declaration.stored(),
        )
        self.session.add(route)
        await self.session.flush()
        return route

    async def replace(self, route: Route, declaration: RouteDeclaration) -> Route:
        """Store `declaration` in place of the route's, keeping its id."""
        route.name = declaration.name
        route.enabled = declaration.enabled
        route.declaration = declaration.stored()
        await self.session.flush()
        return route

    async def delete(self, route: Route) -> None:
        await self.session.delete(route)
        await self.session.flush()


def declaration_of(route: Route) -> RouteDeclaration:
    """A stored row's declaration; `pydantic.ValidationError` when it does not validate."""
    return RouteDeclaration.of_stored(
        name=route.name, enabled=route.enabled, document=dict(route.declaration or {})
    )


class RevisionRepository:
    """The config store's revision: one number every committed change raises."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def current(self) -> int:
        revision = await self.session.scalar(
            select(ConfigRevision.revision).where(ConfigRevision.revision_id == _REVISION_ROW)
        )
        return int(revision or 0)

    async def advance(self) -> None:
        """Raise the revision within the change's transaction (the row lock also orders
        concurrent changes)."""
        result = await self.session.execute(
            update(ConfigRevision)
            .where(ConfigRevision.revision_id == _REVISION_ROW)
            .values(revision=ConfigRevision.revision + 1)
        )
        if getattr(result, "rowcount", 1) == 0:
            self.session.add(ConfigRevision(revision_id=_REVISION_ROW, revision=1))
            await self.session.flush()
