"""Admin endpoints for the response cache: what it holds in this process, and invalidation by
URL pattern or by route (every process's memory and the shared Redis level)."""

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.cache.cache import ResponseCache
from app.deps import StateDep
from app.errors import problem_responses

router = APIRouter()

# A glob over request URLs (path and sorted query): `*`, `?` and `[...]` as in Redis MATCH.
UrlPattern = Annotated[
    str, StringConstraints(min_length=1, max_length=2048, pattern=r"^/[\x21-\x7e]*$")
]
# A route template as the routers declare it, e.g. `/partner/v1/candles/{symbol}`.
RouteTemplate = Annotated[
    str, StringConstraints(min_length=1, max_length=2048, pattern=r"^/[\x21-\x7e]*$")
]


class InvalidationRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"patterns": ["/partner/v1/quotes*"]},
                {"routes": ["/partner/v1/candles/{symbol}"]},
            ]
        },
    )

    patterns: list[UrlPattern] = Field(
        default_factory=list,
        max_length=100,
        description="Globs over stored URLs (path, then `?` and the sorted query)",
    )
    routes: list[RouteTemplate] = Field(
        default_factory=list,
        max_length=100,
        description="Route templates: every stored URL of each route",
    )

    @model_validator(mode="after")
    def _names_something(self) -> "InvalidationRequest":
        if not self.patterns and not self.routes:
            raise ValueError("name at least one pattern or route")
        return self


class InvalidationResult(BaseModel):
    patterns: list[str] = Field(description="The URL globs invalidated")
    deleted: int = Field(description="Entries deleted here and in Redis (variants counted)")


class CacheView(BaseModel):
    enabled: bool
    shared: bool = Field(description="Whether Redis holds the shared level")
    memory_entries: int = Field(description="Entries in this process's memory")
    memory_bytes: int
    memory_max_bytes: int


@router.get("/cache", response_model=CacheView)
async def cache_state(state: StateDep) -> CacheView:
    """The response cache as this process holds it."""
    cache: ResponseCache = state.cache
    return CacheView(
        enabled=cache.settings.enabled,
        shared=cache.shared is not None,
        memory_entries=len(cache.memory),
        memory_bytes=cache.memory.used_bytes,
        memory_max_bytes=cache.memory.max_bytes,
    )


@router.post(
    "/cache/invalidations",
    response_model=InvalidationResult,
    responses=problem_responses(422),
)
async def invalidate_cache(body: InvalidationRequest, state: StateDep) -> InvalidationResult:
    """Delete cached responses by URL pattern or by route, in every gateway process."""
    cache: ResponseCache = state.cache
    patterns = list(body.patterns)
    patterns += [cache.route_pattern(template) for template in body.routes]
    deleted = await cache.invalidate(patterns)
    return InvalidationResult(patterns=patterns, deleted=deleted)
