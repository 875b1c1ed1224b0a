"""Admin endpoints over the service registry: services and their instances.

Lists and reads come from the database (the admin API is not the hot path). A change is
committed by the request's session dependency before the response, then every process
reloads its snapshot (`app.admin.changes`).
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt
from sqlalchemy.exc import IntegrityError

from app.admin.changes import ChangeNoticesDep, stage_change
from app.admin.schemas import NAME_PATTERN, InstanceUrl, Patch, RowId, UtcDateTime, Weight
from app.deps import SessionDep
from app.errors import Conflict, NotFound, problem_responses
from app.store.database import stored_utc
from app.store.models import Service, ServiceInstance
from app.store.service_repository import ServiceRepository

Balancer = Literal["round_robin", "weighted_round_robin", "least_outstanding"]

ServiceName = Annotated[
    str, Field(pattern=NAME_PATTERN, examples=["market-data"], description="Unique name")
]
TimeoutMs = Annotated[StrictInt, Field(ge=50, le=60_000, description="Per-call timeout in ms")]
# A request target: visible ASCII (anything else is percent-encoded).
HealthPath = Annotated[
    str, Field(pattern=r"^/[!-~]*$", max_length=200, description="Path probed for readiness")
]


class InstanceCreate(BaseModel):
    """A new instance of a service."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"url": "http://10.0.3.17:8080", "weight": 10}]},
    )

    url: InstanceUrl
    weight: Weight = 1
    enabled: StrictBool = True


class InstanceUpdate(Patch):
    """Fields of an instance to change."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"enabled": False}]})

    url: InstanceUrl | None = None
    weight: Weight | None = None
    enabled: StrictBool | None = None


class InstanceView(BaseModel):
    """One address at which a service answers."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "instance_id": 3,
                    "url": "http://10.0.3.17:8080",
                    "weight": 10,
                    "enabled": True,
                    "created_at": "2026-11-26T10:40:00Z",
                }
            ]
        }
    )

    instance_id: int
    url: str
    weight: int
    enabled: bool
    created_at: UtcDateTime

    @classmethod
    def of(cls, instance: ServiceInstance) -> "InstanceView":
        return cls(
            instance_id=instance.instance_id,
            url=instance.url,
            weight=instance.weight,
            enabled=instance.enabled,
            created_at=stored_utc(instance.created_at),
        )


class InstanceList(BaseModel):
    instances: list[InstanceView]


class ServiceCreate(BaseModel):
    """A new service, optionally with its instances."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "fundamentals",
                    "timeout_ms": 1500,
                    "balancer": "round_robin",
                    "health_path": "/health",
                    "instances": [{"url": "http://10.0.3.17:8080"}],
                }
            ]
        },
    )

    name: ServiceName
    timeout_ms: TimeoutMs = 2000
    balancer: Balancer = "round_robin"
    health_path: HealthPath = "/health"
    instances: list[InstanceCreate] = Field(default_factory=list, max_length=100)


class ServiceUpdate(Patch):
    """Fields of a service to change; its name and instances have their own operations."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"timeout_ms": 800}]})

    timeout_ms: TimeoutMs | None = None
    balancer: Balancer | None = None
    health_path: HealthPath | None = None


class ServiceView(BaseModel):
    """A registered service and its instances."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "market-data",
                    "timeout_ms": 2000,
                    "balancer": "round_robin",
                    "health_path": "/health",
                    "instances": [
                        {
                            "instance_id": 1,
                            "url": "http://127.0.0.1:9101",
                            "weight": 1,
                            "enabled": True,
                            "created_at": "2026-11-26T10:40:00Z",
                        }
                    ],
                    "created_at": "2026-11-26T10:40:00Z",
                    "updated_at": "2026-11-26T10:40:00Z",
                }
            ]
        }
    )

    name: str
    timeout_ms: int
    balancer: str
    health_path: str
    instances: list[InstanceView]
    created_at: UtcDateTime
    updated_at: UtcDateTime

    @classmethod
    def of(cls, service: Service) -> "ServiceView":
        return cls(
            name=service.name,
            timeout_ms=service.timeout_ms,
            balancer=service.balancer,
            health_path=service.health_path,
            instances=[InstanceView.of(i) for i in service.instances],
            created_at=stored_utc(service.created_at),
            updated_at=stored_utc(service.updated_at),
        )


class ServiceList(BaseModel):
    services: list[ServiceView]


router = APIRouter()


async def _service(repo: ServiceRepository, name: str) -> Service:
    service = await repo.by_name(name)
    if service is None:
        raise NotFound(f"No service named {name!r} is registered.")
    return service


async def _instance(repo: ServiceRepository, service: Service, instance_id: int) -> ServiceInstance:
    instance = await repo.instance(service, instance_id)
    if instance is None:
        raise NotFound(f"Service {service.name!r} has no instance {instance_id}.")
    return instance


def _refuse_duplicate_url(service: Service, url: str, *, except_id: int | None = None) -> None:
    for existing in service.instances:
        if existing.url == url and existing.instance_id != except_id:
            raise Conflict(
                f"Service {service.name!r} already has an instance at {url}.",
                extra={"instance_id": existing.instance_id},
            )


@router.get("/services", response_model=ServiceList)
async def list_services(session: SessionDep) -> ServiceList:
    """List the registered services and their instances."""
    services = await ServiceRepository(session).all()
    return ServiceList(services=[ServiceView.of(s) for s in services])


@router.post(
    "/services",
    response_model=ServiceView,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(409),
)
async def create_service(
    body: ServiceCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    notices: ChangeNoticesDep,
) -> ServiceView:
    """Register a service, with its instances if given."""
    repo = ServiceRepository(session)
    if await repo.by_name(body.name) is not None:
        raise Conflict(f"A service named {body.name!r} is already registered.")
    urls = [i.url for i in body.instances]
    duplicates = sorted({u for u in urls if urls.count(u) > 1})
    if duplicates:
        raise Conflict(f"Instance URLs must be unique within a service: {', '.join(duplicates)}.")
    service = Service(
        name=body.name,
        timeout_ms=body.timeout_ms,
        balancer=body.balancer,
        health_path=body.health_path,
        instances=[
            ServiceInstance(url=i.url, weight=i.weight, enabled=i.enabled) for i in body.instances
        ],
    )
    try:
        await repo.add(service)
    except IntegrityError as exc:
        raise Conflict(f"A service named {body.name!r} is already registered.") from exc
    await stage_change(session, notices)
    response.headers["Location"] = request.url_for("get_service", name=service.name).path
    return ServiceView.of(service)


@router.get("/services/{name}", response_model=ServiceView)
async def get_service(name: str, session: SessionDep) -> ServiceView:
    """Show one service and its instances."""
    return ServiceView.of(await _service(ServiceRepository(session), name))


@router.patch("/services/{name}", response_model=ServiceView)
async def update_service(
    name: str, body: ServiceUpdate, session: SessionDep, notices: ChangeNoticesDep
) -> ServiceView:
    """Change a service's timeout, balancer or health path; omitted fields stay."""
    service = await _service(ServiceRepository(session), name)
    for field, value in body.model_dump(exclude_unset=True).items():
        setattr(service, field, value)
    await stage_change(session, notices)
    return ServiceView.of(service)


@router.delete("/services/{name}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_service(name: str, session: SessionDep, notices: ChangeNoticesDep) -> Response:
    """Unregister a service and all its instances."""
    repo = ServiceRepository(session)
    await repo.delete(await _service(repo, name))
    await stage_change(session, notices)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/services/{name}/instances", response_model=InstanceList)
async def list_instances(name: str, session: SessionDep) -> InstanceList:
    """List a service's instances."""
    service = await _service(ServiceRepository(session), name)
    return InstanceList(instances=[InstanceView.of(i) for i in service.instances])


@router.post(
    "/services/{name}/instances",
    response_model=InstanceView,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(409),
)
async def add_instance(
    name: str,
    body: InstanceCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    notices: ChangeNoticesDep,
) -> InstanceView:
    """Add an instance to a service."""
    repo = ServiceRepository(session)
    service = await _service(repo, name)
    _refuse_duplicate_url(service, body.url)
    instance = ServiceInstance(url=body.url, weight=body.weight, enabled=body.enabled)
    try:
        await repo.add_instance(service, instance)
    except IntegrityError as exc:
        raise Conflict(f"Service {name!r} already has an instance at {body.url}.") from exc
    await stage_change(session, notices)
    response.headers["Location"] = request.url_for(
        "get_instance", name=name, instance_id=instance.instance_id
    ).path
    return InstanceView.of(instance)


@router.get("/services/{name}/instances/{instance_id:int}", response_model=InstanceView)
async def get_instance(name: str, instance_id: RowId, session: SessionDep) -> InstanceView:
    """Show one instance of a service."""
    repo = ServiceRepository(session)
    return InstanceView.of(await _instance(repo, await _service(repo, name), instance_id))


@router.patch(
    "/services/{name}/instances/{instance_id:int}",
    response_model=InstanceView,
    responses=problem_responses(409),
)
async def update_instance(
    name: str,
    instance_id: RowId,
    body: InstanceUpdate,
    session: SessionDep,
    notices: ChangeNoticesDep,
) -> InstanceView:
    """Change an instance's URL, weight or enabled flag; omitted fields stay."""
    repo = ServiceRepository(session)
    service = await _service(repo, name)
    instance = await _instance(repo, service, instance_id)
    changes = body.model_dump(exclude_unset=True)
    if "url" in changes:
        _refuse_duplicate_url(service, changes["url"], except_id=instance_id)
    for field, value in changes.items():
        setattr(instance, field, value)
    await stage_change(session, notices)
    return InstanceView.of(instance)


@router.delete(
    "/services/{name}/instances/{instance_id:int}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
)
async def remove_instance(
    name: str, instance_id: RowId, session: SessionDep, notices: ChangeNoticesDep
) -> Response:
    """Remove an instance from a service."""
    repo = ServiceRepository(session)
    service = await _service(repo, name)
    await repo.delete_instance(service, await _instance(repo, service, instance_id))
    await stage_change(session, notices)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
