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
    # degraded: serving, but from the config snapshot on disk (the database has not answered
    # since start-up). draining: told to stop (SIGTERM), still serving until it does.
    status: Literal["ready", "not_ready", "degraded", "draining"]
    config_version: int
    config: Literal["current, from database", "stale, from disk"]
    services: list[ServiceReadiness]


@router.get("/healthz", response_model=Liveness)
async def healthz() -> Liveness:
    """The process is up."""
    return Liveness()


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(state: StateDep) -> JSONResponse:
    """Config loaded from the database and every registered service has a reachable
    instance; 503 otherwise (`degraded` while serving the config snapshot from disk,
    `draining` once told to stop)."""
    snapshot = state.config.current
    services = await asyncio.gather(
        *(_probe_service(state, name) for name in sorted(snapshot.services))
    )
    ready = snapshot.version > 0 and all(s.reachable_instances > 0 for s in services)
    stale = state.config.stale
    body = Readiness(
        status="degraded" if ready and stale else "ready" if ready else "not_ready",
        config_version=snapshot.version,
        config="stale, from disk" if stale else "current, from database",
        services=list(services),
    )
    if state.drain.draining:
        # Out of the load balancer's rotation first, while every route still serves.
        body.status = "draining"
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ready" else 503)


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
