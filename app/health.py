"""Liveness and readiness of the gateway process."""

import asyncio
from typing import Literal

import aiohttp
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.deps import StateDep
from app.state import GatewayState

router = APIRouter(tags=["health"])


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class ServiceReadiness(BaseModel):
    service: str
    reachable_instances: int
    instances: int


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    config_version: int
    services: list[ServiceReadiness]


@router.get("/healthz", response_model=Liveness)
async def healthz() -> Liveness:
    """The process is up."""
    return Liveness()


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(state: StateDep) -> JSONResponse:
    """Config loaded and every registered service has a reachable instance; 503 otherwise."""
    snapshot = state.config.current
    services = await asyncio.gather(
        *(_probe_service(state, name) for name in sorted(snapshot.services))
    )
    ready = snapshot.version > 0 and all(s.reachable_instances > 0 for s in services)
    body = Readiness(
        status="ready" if ready else "not_ready",
        config_version=snapshot.version,
        services=list(services),
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


async def _probe_service(state: GatewayState, name: str) -> ServiceReadiness:
    service = state.config.current.services[name]
    # Every source's instances: config store, self-registration and DNS.
    enabled = state.registry.instances(name)
    results = await asyncio.gather(
        *(_probe(state.http, instance.url + service.health_path) for instance in enabled)
    )
    return ServiceReadiness(service=name, reachable_instances=sum(results), instances=len(enabled))


async def _probe(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=1.0)) as response:
            return response.status < 500
    except (aiohttp.ClientError, TimeoutError):
        return False
