"""Admin endpoints over the service registry: services and their instances.

Lists and reads come from the database (the admin API is not the hot path). A change is
committed here, inside the handler, before the snapshot reloads: the session dependency's
own commit would only run after the response, too late for the reload to see it.
"""

from fastapi import APIRouter, Request, Response, status
from sqlalchemy.exc import IntegrityError

from app.admin.changes import ChangeNoticesDep, commit_change, flush_change
from app.admin.schemas import (
    InstanceCreate,
    InstanceList,
    InstanceUpdate,
    InstanceView,
    ServiceCreate,
    ServiceList,
    ServiceUpdate,
    ServiceView,
)
from app.deps import SessionDep
from app.errors import Conflict, NotFound, problem_responses
from app.store.models import Service, ServiceInstance
from app.store.service_repository import ServiceRepository

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
    await commit_change(session, notices)
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
    await flush_change(session)
    await commit_change(session, notices)
    return ServiceView.of(service)


@router.delete("/services/{name}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_service(name: str, session: SessionDep, notices: ChangeNoticesDep) -> Response:
    """Unregister a service and all its instances."""
    repo = ServiceRepository(session)
    await repo.delete(await _service(repo, name))
    await commit_change(session, notices)
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
    await commit_change(session, notices)
    response.headers["Location"] = request.url_for(
        "get_instance", name=name, instance_id=instance.instance_id
    ).path
    return InstanceView.of(instance)


@router.get("/services/{name}/instances/{instance_id}", response_model=InstanceView)
async def get_instance(name: str, instance_id: int, session: SessionDep) -> InstanceView:
    """Show one instance of a service."""
    repo = ServiceRepository(session)
    return InstanceView.of(await _instance(repo, await _service(repo, name), instance_id))


@router.patch(
    "/services/{name}/instances/{instance_id}",
    response_model=InstanceView,
    responses=problem_responses(409),
)
async def update_instance(
    name: str,
    instance_id: int,
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
    await flush_change(session)
    await commit_change(session, notices)
    return InstanceView.of(instance)


@router.delete(
    "/services/{name}/instances/{instance_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
)
async def remove_instance(
    name: str, instance_id: int, session: SessionDep, notices: ChangeNoticesDep
) -> Response:
    """Remove an instance from a service."""
    repo = ServiceRepository(session)
    service = await _service(repo, name)
    await repo.delete_instance(service, await _instance(repo, service, instance_id))
    await commit_change(session, notices)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
