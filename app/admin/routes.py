"""Admin endpoints over the pass-through routes of the config store.

A route is declared as in the YAML file (`app.store.route_declarations.RouteDeclaration`),
relative to the pass-through prefix (default `/api/`). A change is committed, then every
gateway process serves it from its next request (`app.admin.changes`).
"""

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.changes import ChangeNoticesDep, stage_change
from app.admin.schemas import RowId, UtcDateTime
from app.deps import SessionDep
from app.errors import Conflict, InvalidRequest, NotFound, problem_responses
from app.store.database import stored_utc
from app.store.models import Route
from app.store.route_declarations import RouteDeclaration
from app.store.routes import RouteRepository, declaration_of
from app.store.service_repository import ServiceRepository

router = APIRouter(prefix="/routes", tags=["admin: routes"])


class RouteView(BaseModel):
    """A stored pass-through route: its id, its declaration, when it was written."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "route_id": 2,
                    "route": RouteDeclaration.model_config["json_schema_extra"]["examples"][0],  # type: ignore[index]
                    "created_at": "2026-12-01T18:00:00Z",
                    "updated_at": "2026-12-01T18:00:00Z",
                }
            ]
        }
    )

    route_id: int
    route: RouteDeclaration
    created_at: UtcDateTime
    updated_at: UtcDateTime

    @classmethod
    def of(cls, row: Route) -> "RouteView":
        created_at, updated_at = stored_utc(row.created_at), stored_utc(row.updated_at)
        assert created_at is not None and updated_at is not None
        return cls(
            route_id=row.route_id,
            route=declaration_of(row),
            created_at=created_at,
            updated_at=updated_at or created_at,
        )


class RouteList(BaseModel):
    routes: list[RouteView]


async def _route(repo: RouteRepository, route_id: int) -> Route:
    route = await repo.by_id(route_id)
    if route is None:
        raise NotFound(f"No route with id {route_id} exists.")
    return route


async def _refuse_unknown_service(session: AsyncSession, declaration: RouteDeclaration) -> None:
    """A route goes to a service of the registry; one that names none is refused at once,
    rather than answering 503 on every request."""
    service = declaration.upstream.service
    if await ServiceRepository(session).by_name(service) is None:
        message = f"no service named {service!r} is registered"
        raise InvalidRequest(
            f"body.upstream.service: {message}",
            extra={"errors": [{"field": "body.upstream.service", "message": message}]},
        )


async def _refuse_duplicate_name(
    repo: RouteRepository, name: str, *, except_id: int | None = None
) -> None:
    existing = await repo.by_name(name)
    if existing is not None and existing.route_id != except_id:
        raise Conflict(
            f"A route named {name!r} already exists.", extra={"route_id": existing.route_id}
        )


@router.get("", response_model=RouteList)
async def list_routes(session: SessionDep) -> RouteList:
    """Every pass-through route, enabled or not, oldest first."""
    return RouteList(routes=[RouteView.of(r) for r in await RouteRepository(session).all()])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RouteView,
    responses=problem_responses(409),
)
async def create_route(
    body: RouteDeclaration,
    request: Request,
    response: Response,
    session: SessionDep,
    notices: ChangeNoticesDep,
) -> RouteView:
    """Create a pass-through route; every gateway process serves it at once."""
    await _refuse_unknown_service(session, body)
    repo = RouteRepository(session)
    await _refuse_duplicate_name(repo, body.name)
    try:
        route = await repo.add(body)
    except IntegrityError as exc:
        raise Conflict(f"A route named {body.name!r} already exists.") from exc
    await stage_change(session, notices)
    response.headers["Location"] = request.url_for("get_route", route_id=route.route_id).path
    return RouteView.of(route)


@router.get("/{route_id}", response_model=RouteView)
async def get_route(route_id: RowId, session: SessionDep) -> RouteView:
    """One pass-through route."""
    return RouteView.of(await _route(RouteRepository(session), route_id))


@router.put("/{route_id}", response_model=RouteView, responses=problem_responses(409))
async def replace_route(
    route_id: RowId, body: RouteDeclaration, session: SessionDep, notices: ChangeNoticesDep
) -> RouteView:
    """Replace a route's declaration (switch it off with `enabled: false`); effective at
    once, while requests already under way finish on the declaration they started with."""
    repo = RouteRepository(session)
    route = await _route(repo, route_id)
    await _refuse_unknown_service(session, body)
    await _refuse_duplicate_name(repo, body.name, except_id=route_id)
    try:
        await repo.replace(route, body)
    except IntegrityError as exc:
        raise Conflict(f"A route named {body.name!r} already exists.") from exc
    await stage_change(session, notices)
    return RouteView.of(route)


@router.delete("/{route_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_route(route_id: RowId, session: SessionDep, notices: ChangeNoticesDep) -> Response:
    """Delete a pass-through route; no gateway process serves it any more."""
    repo = RouteRepository(session)
    await repo.delete(await _route(repo, route_id))
    await stage_change(session, notices)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
