"""The one way the gateway calls a platform service.

Owns the pooled aiohttp session (the only place one is created), instance choice, the
per-call timeout, request-id forwarding and the mapping of failures onto typed errors.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from pydantic import BaseModel, ValidationError

from app.discovery.registry import ServiceRegistry
from app.observability.context import current_request_id
from app.settings import UpstreamSettings
from app.upstreams.errors import (
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)

M = TypeVar("M", bound=BaseModel)

_FAILURE_BY_STATUS: dict[int, type[UpstreamError]] = {
    503: UpstreamUnavailable,
    504: UpstreamTimeout,
}


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    service: str
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def model(self, model: type[M]) -> M:
        """Decode the body into `model`; a body that does not fit is the upstream's fault."""
        try:
            return model.model_validate_json(self.body)
        except ValidationError as exc:
            raise UpstreamError(
                f"{self.service} sent a response the gateway could not read "
                f"({exc.error_count()} error(s)).",
                service=self.service,
            ) from exc

    def detail(self) -> str:
        """The upstream's own explanation of an error, when it gave one."""
        try:
            detail = orjson.loads(self.body).get("detail")
        except (orjson.JSONDecodeError, AttributeError):
            detail = None
        return detail if isinstance(detail, str) else f"{self.service} answered {self.status}"


def create_session(settings: UpstreamSettings) -> aiohttp.ClientSession:
    """The worker's pooled session; built in the lifespan, closed after it."""
    connector = aiohttp.TCPConnector(
        limit=settings.pool_limit,
        limit_per_host=settings.pool_limit_per_host,
        keepalive_timeout=settings.keepalive_timeout_s,
        ttl_dns_cache=60,
    )
    return aiohttp.ClientSession(
        connector=connector,
        json_serialize=lambda value: orjson.dumps(value).decode(),
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
    )


class UpstreamCaller:
    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        registry: ServiceRegistry,
        settings: UpstreamSettings,
    ) -> None:
        self._session = session
        self._registry = registry
        self._settings = settings

    async def request(
        self,
        service: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> UpstreamResponse:
        """Call one instance of `service`; 5xx, timeouts and connection errors raise."""
        config = self._registry.service(service)
        instance = self._registry.pick(service)
        outgoing = {"x-request-id": current_request_id()}
        data = None
        if json_body is not None:
            data = orjson.dumps(json_body)
            outgoing["content-type"] = "application/json"
        if headers:
            outgoing.update(headers)
        timeout = aiohttp.ClientTimeout(
            total=timeout_s or config.timeout_s, connect=self._settings.connect_timeout_s
        )
        try:
            async with self._session.request(
                method,
                instance.url + path,
                params=params,
                data=data,
                headers=outgoing,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                body = await response.read()
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"{service} did not answer within {timeout.total:g} s.", service=service
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(
                f"{service} could not be reached ({type(exc).__name__}).", service=service
            ) from exc
        result = UpstreamResponse(service, response.status, response.headers, body)
        if response.status >= 500:
            failure = _FAILURE_BY_STATUS.get(response.status, UpstreamError)
            raise failure(f"{service} answered {response.status}.", service=service)
        return result

    async def fetch(
        self,
        service: str,
        method: str,
        path: str,
        model: type[M],
        **kwargs: Any,
    ) -> M:
        """Call and decode into `model`; an upstream 4xx passes through as its own status."""
        response = await self.request(service, method, path, **kwargs)
        if response.status >= 400:
            raise UpstreamRejected(response.detail(), status=response.status, service=service)
        return response.model(model)
