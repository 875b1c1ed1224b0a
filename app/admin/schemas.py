"""Request and response bodies of the admin API over the service registry."""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from app.store.models import Service, ServiceInstance

SERVICE_NAME_PATTERN = r"^[a-z][a-z0-9-]{1,62}$"

Balancer = Literal["round_robin", "weighted_round_robin", "least_outstanding"]


def _instance_url(value: str) -> str:
    """An instance is an origin: scheme, host and port, nothing the caller would append to."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme not in {"http", "https"}:
        raise ValueError("scheme must be http or https")
    if not parts.hostname:
        raise ValueError("a host is required")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials are not allowed in an instance URL")
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise ValueError("an instance URL has no path, query or fragment")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _utc(moment: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; they were written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


ServiceName = Annotated[
    str, Field(pattern=SERVICE_NAME_PATTERN, examples=["market-data"], description="Unique name")
]
InstanceUrl = Annotated[
    str,
    Field(max_length=500, examples=["http://10.0.3.17:8080"]),
    AfterValidator(_instance_url),
]
TimeoutMs = Annotated[int, Field(ge=50, le=60_000, description="Per-call timeout in ms")]
Weight = Annotated[int, Field(ge=1, le=100, description="Share of traffic, 1..100")]
HealthPath = Annotated[
    str, Field(pattern=r"^/", max_length=200, description="Path probed for readiness")
]


class _Patch(BaseModel):
    """A partial update: omitted fields stay as they are; null is not a value."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Only called for fields the client sent: an explicit null would erase a required value.
        if value is None:
            raise ValueError("may not be null; omit the field to leave it unchanged")
        return value


class InstanceCreate(BaseModel):
    """A new instance of a service."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"url": "http://10.0.3.17:8080", "weight": 10}]},
    )

    url: InstanceUrl
    weight: Weight = 1
    enabled: bool = True


class InstanceUpdate(_Patch):
    """Fields of an instance to change."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"enabled": False}]})

    url: InstanceUrl | None = None
    weight: Weight | None = None
    enabled: bool | None = None


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
    created_at: datetime

    @classmethod
    def of(cls, instance: ServiceInstance) -> "InstanceView":
        return cls(
            instance_id=instance.instance_id,
            url=instance.url,
            weight=instance.weight,
            enabled=instance.enabled,
            created_at=_utc(instance.created_at),
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


class ServiceUpdate(_Patch):
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
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, service: Service) -> "ServiceView":
        return cls(
            name=service.name,
            timeout_ms=service.timeout_ms,
            balancer=service.balancer,
            health_path=service.health_path,
            instances=[InstanceView.of(i) for i in service.instances],
            created_at=_utc(service.created_at),
            updated_at=_utc(service.updated_at),
        )


class ServiceList(BaseModel):
    services: list[ServiceView]
