"""Admin endpoints for upstream traffic: what the breakers and health checks see, per-service
policies, and self-registration of instances (register, heartbeat, deregister).

Breaker and health state is this process's own view (each gateway process keeps its own);
self-registrations are shared through Redis when it is configured.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field, StrictFloat

from app.admin.changes import ChangeNoticesDep, stage_change
from app.admin.schemas import InstanceUrl, UtcDateTime, Weight
from app.deps import SessionDep, StateDep
from app.discovery.registry import ServiceRegistry
from app.discovery.selfreg import Registration
from app.errors import NotFound, ServiceUnavailable, problem_responses
from app.shared.redis import RedisUnavailable
from app.store.service_repository import ServiceRepository
from app.store.snapshot import ServiceConfig
from app.traffic.breaker import CircuitState
from app.traffic.service_policy import ServicePolicy
from app.upstreams.caller import UpstreamCaller

router = APIRouter()


class BreakerView(BaseModel):
    service: str
    instance: str = Field(description="The instance's URL")
    state: CircuitState
    consecutive_failures: int
    window_calls: int = Field(description="Calls in the rolling window")
    window_failures: int
    since: UtcDateTime = Field(description="When the circuit entered its current state")


class BreakerList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "breakers": [
                        {
                            "service": "market-data",
                            "instance": "http://10.0.3.17:8080",
                            "state": "open",
                            "consecutive_failures": 5,
                            "window_calls": 40,
                            "window_failures": 7,
                            "since": "2026-11-26T10:41:00Z",
                        }
                    ]
                }
            ]
        }
    )

    breakers: list[BreakerView]


class InstanceHealthView(BaseModel):
    url: str
    source: str = Field(description="config, registered (self-registration) or dns")
    weight: int
    in_rotation: bool = Field(description="Health checks and passive ejection let it take calls")
    healthy: bool = Field(description="The active health checks' verdict")
    ejected_for_ms: int = Field(description="Passive ejection left, 0 when not ejected")
    last_check_at: UtcDateTime | None
    last_error: str | None
    circuit: CircuitState


class BulkheadView(BaseModel):
    max_concurrent: int
    in_flight: int
    waiting: int
    rejected: int


class RetryBudgetView(BaseModel):
    calls: int
    retries: int
    refused: int = Field(description="Retries the budget did not allow")


class ServiceTrafficView(BaseModel):
    service: str
    balancer: str
    instances: list[InstanceHealthView]
    bulkhead: BulkheadView
    retry_budget: RetryBudgetView


class TrafficInstances(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "services": [
                        {
                            "service": "news",
                            "balancer": "round_robin",
                            "instances": [
                                {
                                    "url": "http://10.0.3.20:8080",
                                    "source": "config",
                                    "weight": 1,
                                    "in_rotation": True,
                                    "healthy": True,
                                    "ejected_for_ms": 0,
                                    "last_check_at": "2026-11-26T10:41:00Z",
                                    "last_error": None,
                                    "circuit": "closed",
                                }
                            ],
                            "bulkhead": {
                                "max_concurrent": 64,
                                "in_flight": 3,
                                "waiting": 0,
                                "rejected": 0,
                            },
                            "retry_budget": {"calls": 1200, "retries": 4, "refused": 0},
                        }
                    ]
                }
            ]
        }
    )

    services: list[ServiceTrafficView]


class RegistrationRequest(BaseModel):
    """An instance announcing itself; it must heartbeat within `ttl_s` or it leaves."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"url": "http://10.0.3.21:8080", "weight": 1, "ttl_s": 15}]
        },
    )

    url: InstanceUrl
    weight: Weight = 1
    ttl_s: StrictFloat | None = Field(
        None, ge=1, le=3600, description="Default: the gateway's registration TTL"
    )


class InstanceRef(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"url": "http://10.0.3.21:8080"}]}
    )

    url: InstanceUrl


class RegistrationView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "service": "news",
                    "url": "http://10.0.3.21:8080",
                    "weight": 1,
                    "ttl_s": 15,
                    "expires_at": "2026-11-26T10:41:15Z",
                }
            ]
        }
    )

    service: str
    url: str
    weight: int
    ttl_s: float
    expires_at: UtcDateTime

    @classmethod
    def of(cls, registration: Registration) -> "RegistrationView":
        return cls(
            service=registration.service,
            url=registration.url,
            weight=registration.weight,
            ttl_s=registration.ttl_s,
            expires_at=datetime.fromtimestamp(registration.expires_at, UTC),
        )


async def upstream_caller(state: StateDep) -> UpstreamCaller:
    return state.caller


CallerDep = Annotated[UpstreamCaller, Depends(upstream_caller)]


@asynccontextmanager
async def _registrations_store() -> AsyncIterator[None]:
    """Redis trouble while registering is a 503 the instance can retry, not a 500."""
    try:
        yield
    except RedisUnavailable as exc:
        raise ServiceUnavailable(
            "The registration store is unavailable; try again shortly.",
            headers={"Retry-After": "1"},
        ) from exc


def _known_service(registry: ServiceRegistry, name: str) -> ServiceConfig:
    service = registry.service_config(name)
    if service is None:
        raise NotFound(f"No service named {name!r} is registered.")
    return service


@router.get("/traffic/breakers", response_model=BreakerList)
async def list_breakers(caller: CallerDep) -> BreakerList:
    """Circuit breaker state of every instance this process has called."""
    views = []
    for entry in caller.breakers:
        calls, failures = entry.breaker.window()
        views.append(
            BreakerView(
                service=entry.service,
                instance=entry.url,
                state=entry.breaker.state,
                consecutive_failures=entry.breaker.consecutive_failures,
                window_calls=calls,
                window_failures=failures,
                since=entry.breaker.since,
            )
        )
    return BreakerList(breakers=views)


@router.get("/traffic/instances", response_model=TrafficInstances)
async def list_instance_health(caller: CallerDep) -> TrafficInstances:
    """Every instance of every service, from all sources, with its health and circuit."""
    registry = caller.registry
    services = []
    for name in registry.service_names():
        config = registry.service(name)
        instances = []
        for instance in registry.instances(name):
            health = registry.health.health(name, instance.url)
            breaker = caller.breakers.get(name, instance.url)
            instances.append(
                InstanceHealthView(
                    url=instance.url,
                    source=instance.source,
                    weight=instance.weight,
                    in_rotation=registry.health.in_rotation(name, instance.url),
                    healthy=health.healthy,
                    ejected_for_ms=int(registry.health.ejected_for_s(name, instance.url) * 1000),
                    last_check_at=health.last_check_at,
                    last_error=health.last_error,
                    circuit=breaker.state if breaker is not None else CircuitState.closed,
                )
            )
        bulkhead = caller.bulkheads.bulkhead(name, config.policy.bulkhead)
        budget = caller.budgets.budget(name, config.policy.retries)
        services.append(
            ServiceTrafficView(
                service=name,
                balancer=config.balancer,
                instances=instances,
                bulkhead=BulkheadView(
                    max_concurrent=bulkhead.policy.max_concurrent,
                    in_flight=bulkhead.in_flight,
                    waiting=bulkhead.waiting,
                    rejected=bulkhead.rejected,
                ),
                retry_budget=RetryBudgetView(
                    calls=budget.calls, retries=budget.retries, refused=budget.refused
                ),
            )
        )
    return TrafficInstances(services=services)


@router.get("/services/{name}/policy", response_model=ServicePolicy)
async def get_service_policy(name: str, caller: CallerDep) -> ServicePolicy:
    """The traffic policy in force for a service, defaults filled in."""
    return _known_service(caller.registry, name).policy


@router.put("/services/{name}/policy", response_model=ServicePolicy)
async def put_service_policy(
    name: str, body: ServicePolicy, session: SessionDep, notices: ChangeNoticesDep
) -> ServicePolicy:
    """Replace a service's traffic policy; sections and fields left out take their defaults."""
    service = await ServiceRepository(session).by_name(name)
    if service is None:
        raise NotFound(f"No service named {name!r} is registered.")
    # Only what the operator set is stored, so improved defaults reach unset fields.
    service.policy = body.model_dump(mode="json", exclude_unset=True)
    await stage_change(session, notices)
    return body


@router.post(
    "/services/{name}/instances/register",
    response_model=RegistrationView,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(503),
)
async def register_instance(
    name: str, body: RegistrationRequest, caller: CallerDep
) -> RegistrationView:
    """Register an instance of a service until it stops heartbeating."""
    registry = caller.registry
    _known_service(registry, name)
    async with _registrations_store():
        registration = await registry.self_registry.register(
            name, body.url, weight=body.weight, ttl_s=body.ttl_s
        )
    return RegistrationView.of(registration)


@router.post(
    "/services/{name}/instances/heartbeat",
    response_model=RegistrationView,
    responses=problem_responses(404, 503),
)
async def heartbeat_instance(name: str, body: InstanceRef, caller: CallerDep) -> RegistrationView:
    """Keep a registration alive for another TTL; 404 once it has expired (register again)."""
    registry = caller.registry
    _known_service(registry, name)
    async with _registrations_store():
        registration = await registry.self_registry.heartbeat(name, body.url)
    if registration is None:
        raise NotFound(
            f"{body.url} is not registered for {name!r} (or its registration expired); "
            "register it again."
        )
    return RegistrationView.of(registration)


@router.post(
    "/services/{name}/instances/deregister",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(404, 503),
)
async def deregister_instance(name: str, body: InstanceRef, caller: CallerDep) -> Response:
    """Remove a self-registered instance at once, e.g. on shutdown."""
    registry = caller.registry
    _known_service(registry, name)
    async with _registrations_store():
        removed = await registry.self_registry.deregister(name, body.url)
    if not removed:
        raise NotFound(f"{body.url} is not registered for {name!r}.")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
