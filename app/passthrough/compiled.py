"""A snapshot's routes, compiled for the hot path: the route table, and each route's access
rule, rate limits, transforms and validators, built once per snapshot and kept until the
snapshot changes. A request holds the `CompiledRoutes` it started with to its end, so a
change made meanwhile never reaches it halfway."""

import hashlib
from dataclasses import dataclass

import orjson

from app.cache.policy import CachePolicy
from app.passthrough.matcher import RouteTable
from app.passthrough.proxy import upstream_path
from app.passthrough.transforms import BodyTransform, HeaderTransform, QueryTransform
from app.passthrough.validation import RequestValidation
from app.policy.context import RouteLimit
from app.security.rbac import PARTNERS, USERS, AccessRule, Audience, partner_rule, user_rule
from app.store.route_declarations import RouteDeclaration
from app.store.snapshot import ConfigSnapshot, RouteConfig
from app.traffic.gcra import RateLimit

# A route for users and partners alike.
ANYONE_SIGNED_IN = Audience(
    kinds=USERS.kinds | PARTNERS.kinds,
    schemes=(*USERS.schemes, *PARTNERS.schemes[:1]),
    challenge=PARTNERS.challenge,
    description="a signed-in user or a partner credential",
)


def access_rule(declaration: RouteDeclaration) -> AccessRule | None:
    """The route's access rule; None for a route open to anyone."""
    scopes = tuple(declaration.scopes)
    match declaration.auth:
        case "user":
            return user_rule(*scopes)
        case "partner":
            return partner_rule(*scopes)
        case "any":
            return AccessRule(ANYONE_SIGNED_IN, scopes)
    return None


def _limits(route: RouteConfig) -> tuple[RouteLimit, ...]:
    declaration = route.declaration
    return tuple(
        RouteLimit(
            # By id: a renamed route keeps its counts, a deleted one's are never reused.
            key=f"rt:{route.route_id}:{index}",
            key_by=limit.key_by,
            limit=RateLimit.of(
                f"{declaration.name}-{limit.key_by}" + (f"-{index}" if index else ""),
                limit=limit.limit,
                period_s=float(limit.period_s),
                burst=limit.burst,
            ),
        )
        for index, limit in enumerate(declaration.rate_limits)
    )


def _cache_policy(route: RouteConfig) -> CachePolicy | None:
    """The response cache's policy for the route: shared by the callers the route admits
    (it authorizes before the lookup), one entry per user on a user route; a change of the
    declaration makes every older entry a miss."""
    declaration = route.declaration
    cache = declaration.cache
    if cache is None:
        return None
    digest = hashlib.blake2b(
        orjson.dumps(declaration.model_dump(mode="json")), digest_size=8
    ).hexdigest()
    return CachePolicy(
        ttl_s=float(cache.ttl_s or 0),
        scope="per-caller" if declaration.auth == "user" else "shared",
        follow_origin=cache.mode == "origin",
        share_credentialed=declaration.auth != "user",
        revision=f"{route.route_id}:{digest}",
    )


def _fixed_target(declaration: RouteDeclaration) -> str | None:
    """The upstream path of a template without parameters (matched only by its own literal
    segments, so every request goes to one path); None for the others."""
    path = declaration.match.path
    if path is None or "{" in path:
        return None
    return upstream_path(declaration, parameters={}, rest="", path=path)


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    route_id: int
    declaration: RouteDeclaration
    # The template the access log and metrics label the request with, prefix included.
    template: str
    rule: AccessRule | None
    roles: frozenset[str]
    limits: tuple[RouteLimit, ...]
    request_headers: HeaderTransform | None
    request_query: QueryTransform | None
    request_body: BodyTransform | None
    response_headers: HeaderTransform | None
    response_body: BodyTransform | None
    validation: RequestValidation | None
    cache_policy: CachePolicy | None
    # The upstream path of a route whose path has no parameters: the same for every request.
    upstream_target: str | None

    @classmethod
    def of(cls, route: RouteConfig, *, prefix: str) -> "CompiledRoute":
        declaration = route.declaration
        match = declaration.match
        path = match.path if match.path is not None else f"{match.path_prefix}/*"
        transforms = declaration.transforms
        return cls(
            route_id=route.route_id,
            declaration=declaration,
            template=prefix.rstrip("/") + path.replace("//", "/"),
            rule=access_rule(declaration),
            roles=frozenset(declaration.roles),
            limits=_limits(route),
            request_headers=HeaderTransform.of(transforms.request.headers),
            request_query=QueryTransform.of(transforms.request.query),
            request_body=BodyTransform.of(transforms.request.body),
            response_headers=HeaderTransform.of(transforms.response.headers),
            response_body=BodyTransform.of(transforms.response.body),
            validation=RequestValidation.of(declaration.request_schema),
            cache_policy=_cache_policy(route),
            upstream_target=_fixed_target(declaration),
        )

    @property
    def reads_request_body(self) -> bool:
        """Whether the request body is read whole (to validate or map it) before forwarding."""
        return self.request_body is not None or (
            self.validation is not None and self.validation.body is not None
        )


@dataclass(frozen=True, slots=True)
class CompiledRoutes:
    version: int
    table: RouteTable
    routes: dict[int, CompiledRoute]


class RouteCompiler:
    """Keeps the compiled routes of the current snapshot; compiles again when it changes."""

    def __init__(self, *, prefix: str) -> None:
        self.prefix = prefix
        self._compiled: CompiledRoutes | None = None
        self._snapshot: ConfigSnapshot | None = None

    def routes(self, snapshot: ConfigSnapshot) -> CompiledRoutes:
        compiled = self._compiled
        if compiled is not None and self._snapshot is snapshot:
            return compiled
        compiled = CompiledRoutes(
            version=snapshot.version,
            table=RouteTable(snapshot.routes),
            routes={r.route_id: CompiledRoute.of(r, prefix=self.prefix) for r in snapshot.routes},
        )
        self._compiled, self._snapshot = compiled, snapshot
        return compiled
