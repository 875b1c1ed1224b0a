"""API versions: which exist per frontend, which succeeds which, and how a superseded one says so.

A frontend's new version lives beside the old one (`/web/v2` beside `/web/v1`). The new
version takes every route of the old one it does not change (`carry_over`: the same handlers,
not copies), so each route of a superseded version has a successor at the same path under the
successor's prefix. Every answer of a superseded version's route carries
- `Deprecation: @<unix seconds>` (RFC 9745), when the version was (or will be) deprecated;
- `Sunset: <HTTP-date>` (RFC 8594), when it stops answering;
- `Link: <successor path>; rel="successor-version", </versions>; rel="deprecation"`;
and its OpenAPI operations are marked `deprecated`. The dates are settings
(`versions.superseded`); `GET /versions` lists every version with its status and dates.
"""

import inspect
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from app.settings import Settings, VersionDates

VERSIONS_PATH = "/versions"


@dataclass(frozen=True, slots=True)
class ApiVersion:
    frontend: str
    version: str
    # The version that replaces this one, e.g. "v2"; None while it is the latest.
    successor: str | None = None

    @property
    def key(self) -> str:
        """The version's name in settings, e.g. `web/v1`."""
        return f"{self.frontend}/{self.version}"

    @property
    def prefix(self) -> str:
        return f"/{self.frontend}/{self.version}"

    @property
    def successor_prefix(self) -> str | None:
        return None if self.successor is None else f"/{self.frontend}/{self.successor}"


# Every version the gateway serves, oldest first within a frontend.
API_VERSIONS: tuple[ApiVersion, ...] = (
    ApiVersion("web", "v1", successor="v2"),
    ApiVersion("web", "v2"),
    ApiVersion("mobile", "v1"),
    ApiVersion("partner", "v1"),
)

WEB_V1 = API_VERSIONS[0]


def deprecation_headers(dates: VersionDates | None, *, successor: str) -> dict[str, str]:
    """The headers of a superseded version's answer; `successor` is the path replacing it."""
    headers = {
        "Link": f'<{successor}>; rel="successor-version", <{VERSIONS_PATH}>; rel="deprecation"'
    }
    if dates is not None:
        headers["Deprecation"] = f"@{int(dates.deprecated_at.timestamp())}"
        headers["Sunset"] = format_datetime(dates.sunset, usegmt=True)
    return headers


# What the OpenAPI documents say of the headers above (`app.openapi`).
DEPRECATION_HEADERS_DOC: dict[str, Any] = {
    "Deprecation": {
        "description": "When this version was deprecated (RFC 9745): `@` and Unix seconds",
        "schema": {"type": "string", "example": "@1796083200"},
    },
    "Sunset": {
        "description": "When this version stops answering (RFC 8594), an HTTP-date",
        "schema": {"type": "string", "example": "Wed, 30 Jun 2027 00:00:00 GMT"},
    },
    "Link": {
        "description": (
            'The successor of this endpoint (`rel="successor-version"`) and the version '
            'list (`rel="deprecation"`)'
        ),
        "schema": {"type": "string"},
    },
}

RouteHandler = Callable[[Request], Coroutine[Any, Any, Response]]


def superseded_route(version: ApiVersion) -> type[APIRoute]:
    """The route class of a superseded version: its operations are deprecated, and each answer
    (a problem too) names its successor and carries the version's dates."""
    if version.successor_prefix is None:
        raise ValueError(f"{version.key} has no successor")
    successor: str = version.successor_prefix
    own = len(version.prefix)

    class SupersededRoute(APIRoute):
        def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
            super().__init__(path, endpoint, **{**kwargs, "deprecated": True})

        def get_route_handler(self) -> RouteHandler:
            handle = super().get_route_handler()
            finish = self.finish

            async def handle_superseded(request: Request) -> Response:
                try:
                    response = await handle(request)
                except Exception as error:
                    # Answered here by the app's own handler, so a problem carries them too.
                    response = await _handled(request, error)
                finish(request, response)
                return response

            return handle_superseded

        @staticmethod
        def finish(request: Request, response: Response) -> None:
            """What the version adds to each answer of the route, a problem's too (a direct
            route calls it as well: `app.frontends.direct`)."""
            settings: Settings = request.state.gateway.settings
            headers = deprecation_headers(
                settings.versions.superseded.get(version.key),
                successor=successor + request.url.path[own:],
            )
            link = response.headers.get("link")
            response.headers.update(headers)
            if link:
                # The route's own links (a page's rel="next") stay beside the successor's.
                response.headers["link"] = f"{link}, {headers['Link']}"

    return SupersededRoute


async def _handled(request: Request, error: Exception) -> Response:
    """The answer the app's exception handler gives `error`; re-raised when none handles it."""
    handlers = request.app.exception_handlers
    for kind in type(error).__mro__:
        handler = handlers.get(kind)
        if handler is not None:
            answer = handler(request, error)
            response: Response = await answer if inspect.isawaitable(answer) else answer
            return response
    raise error


def carry_over(
    source: APIRouter, target: APIRouter, *, changed: Collection[tuple[str, str]] = ()
) -> None:
    """Give `target` (a new version) every HTTP route of `source` (the version it succeeds)
    except the `changed` ones (method and relative path, e.g. `("GET", "/dashboard")`), which
    it defines itself: same handler, parameters and documentation; `target`'s own router-level
    dependencies apply instead of `source`'s."""
    inherited = len(source.dependencies)
    for route in list(source.routes):
        if not isinstance(route, APIRoute):
            continue
        path = route.path.removeprefix(source.prefix)
        if all((method, path) in changed for method in route.methods or ()):
            continue
        target.add_api_route(
            path,
            route.endpoint,
            response_model=route.response_model,
            status_code=route.status_code,
            dependencies=route.dependencies[inherited:],
            summary=route.summary,
            description=route.description,
            response_description=route.response_description,
            # The source router's responses are in the route's; `target` adds its own.
            responses={k: v for k, v in route.responses.items() if k not in source.responses},
            methods=route.methods,
            response_model_exclude_none=route.response_model_exclude_none,
            include_in_schema=route.include_in_schema,
            response_class=route.response_class,
            name=route.name,
            openapi_extra=route.openapi_extra,
        )


class VersionStatus(StrEnum):
    current = "current"
    deprecated = "deprecated"


_VERSION_EXAMPLE: JsonDict = {
    "frontend": "web",
    "version": "v1",
    "prefix": "/web/v1",
    "status": "deprecated",
    "successor": "/web/v2",
    "deprecated_at": "2026-12-01T00:00:00Z",
    "sunset": "2027-06-30T00:00:00Z",
    "openapi": "/web/v1/openapi.json",
}


class VersionView(BaseModel):
    """One version of one frontend's API."""

    model_config = ConfigDict(json_schema_extra={"examples": [_VERSION_EXAMPLE]})

    frontend: str = Field(description="The frontend: `web`, `mobile` or `partner`")
    version: str = Field(description="The version, e.g. `v2`")
    prefix: str = Field(description="Where its routes are")
    status: VersionStatus = Field(
        description="`deprecated` once it has a successor (clients should move), else `current`"
    )
    successor: str | None = Field(description="The prefix of the version replacing it")
    deprecated_at: datetime | None = Field(description="When it was or will be deprecated")
    sunset: datetime | None = Field(description="When it stops answering")
    openapi: str = Field(description="Its OpenAPI document")


class VersionsView(BaseModel):
    """Every API version the gateway serves."""

    versions: list[VersionView] = Field(description="Per frontend, oldest version first")


def versions_view(settings: Settings) -> VersionsView:
    views = []
    for version in API_VERSIONS:
        dates = settings.versions.superseded.get(version.key)
        views.append(
            VersionView(
                frontend=version.frontend,
                version=version.version,
                prefix=version.prefix,
                status=VersionStatus.current
                if version.successor is None
                else VersionStatus.deprecated,
                successor=version.successor_prefix,
                deprecated_at=None if dates is None else dates.deprecated_at,
                sunset=None if dates is None else dates.sunset,
                openapi=f"{version.prefix}/openapi.json",
            )
        )
    return VersionsView(versions=views)


router = APIRouter(tags=["versions"])


@router.get(VERSIONS_PATH, response_model=VersionsView)
async def list_versions(request: Request) -> VersionsView:
    """Every frontend's API versions, their status and sunset dates."""
    settings: Settings = request.state.gateway.settings
    return versions_view(settings)
