"""What a pass-through route declares: the one schema of the admin API, the YAML file
(`gateway config`) and the snapshot.

A route is declared relative to the gateway's pass-through prefix (a setting, default
`/api/`): `match.path: /news/latest` serves `/api/news/latest`. So no route can shadow the
BFF, admin, auth or docs paths, whatever the prefix or the declaration.

The table (`app.store.models.Route`) keeps the name, `enabled` and the rest of the
declaration as one JSON document; the snapshot loader validates each stored document with
this model, so every value the admin API accepts is one the hot path serves, and a document
written around the API that does not validate is refused alone (`app.store.snapshot`).
"""

import re
from typing import Annotated, Any, Literal, Self

import fastjsonschema
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

# Names of routes: as those of services, plans and rate limit rules.
ROUTE_NAME_PATTERN = r"^[a-z][a-z0-9-]{1,62}$"
# A literal path segment: unreserved characters only; `{name}` is a parameter.
_LITERAL_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")
_PARAMETER_SEGMENT = re.compile(r"^\{([a-z_][a-z0-9_]{0,31})\}$")
# Header and query names a transform or a match may name.
_TOKEN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$"
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST = rf"^(\*\.)?{_LABEL}(\.{_LABEL})*(:[0-9]{{1,5}})?$"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Hop-by-hop and framing headers a transform may not set: the proxy owns them.
_PROXY_OWNED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)
MAX_TIMEOUT_MS = 600_000
MAX_RETRIES = 9
MAX_REQUESTS = 10_000_000
MAX_WINDOW_S = 86_400
MAX_CACHE_TTL_S = 86_400


class _Declaration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def path_segments(path: str) -> list[str]:
    """The segments of a declared path, `/` alone being none."""
    return [segment for segment in path.split("/")[1:] if segment != ""] if path != "/" else []


def _declared_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must start with /")
    if value != "/" and value.endswith("/"):
        raise ValueError("must not end with / (a prefix matches the segments below it)")
    names: set[str] = set()
    for segment in value.split("/")[1:] if value != "/" else []:
        if segment == "":
            raise ValueError("has an empty segment (//)")
        parameter = _PARAMETER_SEGMENT.match(segment)
        if parameter is not None:
            if parameter.group(1) in names:
                raise ValueError(f"names the parameter {{{parameter.group(1)}}} twice")
            names.add(parameter.group(1))
            continue
        if not _LITERAL_SEGMENT.match(segment) or segment in {".", ".."}:
            raise ValueError(
                f"segment {segment!r} is neither a {{parameter}} nor letters, digits and ._~-"
            )
    return value


DeclaredPath = Annotated[
    StrictStr,
    Field(max_length=200, examples=["/market-data/quotes", "/orders/{order_id}"]),
    AfterValidator(_declared_path),
]
HeaderName = Annotated[StrictStr, Field(pattern=_TOKEN)]
HeaderValue = Annotated[StrictStr, Field(max_length=1000, pattern=r"^[^\x00-\x1f\x7f]*$")]
QueryName = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9._~:-]{1,100}$")]
QueryValue = Annotated[StrictStr, Field(max_length=1000, pattern=r"^[^\x00-\x1f\x7f]*$")]
# A dotted path into a JSON document: `data.items`, `quote.px`.
JsonPath = Annotated[
    StrictStr, Field(pattern=r"^[A-Za-z0-9_$-]{1,100}(\.[A-Za-z0-9_$-]{1,100}){0,15}$")
]


def _settable_header(value: str) -> str:
    if value.lower() in _PROXY_OWNED_HEADERS:
        raise ValueError(f"{value} is set by the proxy itself")
    return value


SettableHeader = Annotated[HeaderName, AfterValidator(_settable_header)]


class RouteMatch(_Declaration):
    """Which requests the route takes: exactly one of `path` (a template, matched whole;
    `{name}` is one segment) or `path_prefix` (that path and every path below it), under
    the gateway's pass-through prefix; `methods` (empty: any), `host`, `headers` (each
    present with exactly this value)."""

    path: DeclaredPath | None = None
    path_prefix: DeclaredPath | None = None
    methods: list[Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]] = Field(
        default_factory=list, max_length=7
    )
    host: Annotated[StrictStr, Field(pattern=_HOST, max_length=255)] | None = Field(
        None, description="The request's Host, exactly or `*.example.com`; null: any"
    )
    headers: dict[HeaderName, HeaderValue] = Field(default_factory=dict, max_length=20)

    @model_validator(mode="after")
    def _one_path(self) -> Self:
        if (self.path is None) == (self.path_prefix is None):
            raise ValueError("declare exactly one of path and path_prefix")
        if self.path_prefix is not None and "{" in self.path_prefix:
            raise ValueError("path_prefix takes no {parameters}; use path")
        return self

    @property
    def parameters(self) -> list[str]:
        if self.path is None:
            return []
        return [
            m.group(1)
            for segment in path_segments(self.path)
            if (m := _PARAMETER_SEGMENT.match(segment)) is not None
        ]


class RouteUpstream(_Declaration):
    """Where the route goes: a service of the registry by name, and the path there. For a
    `path` route, `path` may use the match's parameters; for a `path_prefix` route it
    replaces the prefix and the rest of the request's path follows. Null: the matched path
    as it is."""

    service: Annotated[StrictStr, Field(pattern=ROUTE_NAME_PATTERN)]
    path: DeclaredPath | None = None


class RouteRateLimit(_Declaration):
    """`limit` requests per `period_s`, counted per `key_by`: each consumer, each signed-in
    user, each client address, or once for every caller of the route."""

    key_by: Literal["consumer", "user", "address", "route"]
    limit: Annotated[StrictInt, Field(ge=1, le=MAX_REQUESTS)]
    period_s: Annotated[StrictInt | StrictFloat, Field(gt=0, le=MAX_WINDOW_S)]
    burst: Annotated[StrictInt, Field(ge=1, le=MAX_REQUESTS)] | None = None


class RouteCache(_Declaration):
    """`ttl`: a successful GET is kept `ttl_s` seconds; `origin`: the gateway follows the
    origin's `Cache-Control`/`Expires` as a shared cache would (RFC 9111)."""

    mode: Literal["ttl", "origin"]
    ttl_s: Annotated[StrictInt | StrictFloat, Field(gt=0, le=MAX_CACHE_TTL_S)] | None = None

    @model_validator(mode="after")
    def _ttl_when_needed(self) -> Self:
        if self.mode == "ttl" and self.ttl_s is None:
            raise ValueError("mode ttl needs ttl_s")
        return self


class NameChanges(_Declaration):
    """Add (or replace) values, remove and rename names, applied in that order: remove,
    rename, add."""

    add: dict[str, StrictStr] = Field(default_factory=dict, max_length=50)
    remove: list[StrictStr] = Field(default_factory=list, max_length=50)
    rename: dict[str, StrictStr] = Field(default_factory=dict, max_length=50)


class HeaderChanges(NameChanges):
    add: dict[SettableHeader, HeaderValue] = Field(default_factory=dict, max_length=50)
    remove: list[HeaderName] = Field(default_factory=list, max_length=50)
    rename: dict[HeaderName, SettableHeader] = Field(default_factory=dict, max_length=50)


class QueryChanges(NameChanges):
    add: dict[QueryName, QueryValue] = Field(default_factory=dict, max_length=50)
    remove: list[QueryName] = Field(default_factory=list, max_length=50)
    rename: dict[QueryName, QueryName] = Field(default_factory=dict, max_length=50)


class BodyMap(_Declaration):
    """A JSON body map, in this order: `pick` the subtree at a dotted path, `remove` fields,
    `rename` fields (dotted paths, within their object), `add` constants. A list is mapped
    item by item."""

    pick: JsonPath | None = None
    remove: list[JsonPath] = Field(default_factory=list, max_length=50)
    rename: dict[JsonPath, Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_$-]{1,100}$")]] = Field(
        default_factory=dict, max_length=50
    )
    add: dict[JsonPath, Any] = Field(default_factory=dict, max_length=50)


class RequestTransforms(_Declaration):
    headers: HeaderChanges = HeaderChanges()
    query: QueryChanges = QueryChanges()
    body: BodyMap | None = None


class ResponseTransforms(_Declaration):
    headers: HeaderChanges = HeaderChanges()
    body: BodyMap | None = None


class RouteTransforms(_Declaration):
    request: RequestTransforms = RequestTransforms()
    response: ResponseTransforms = ResponseTransforms()


def _json_schema(value: dict[str, Any]) -> dict[str, Any]:
    try:
        fastjsonschema.compile(value)
    except (fastjsonschema.JsonSchemaDefinitionException, TypeError, ValueError) as exc:
        raise ValueError(f"not a usable JSON Schema: {exc}") from None
    return value


JsonSchema = Annotated[dict[str, Any], AfterValidator(_json_schema)]


class RouteSchema(_Declaration):
    """JSON Schemas checked before anything is forwarded: `query` against the query
    parameters as an object of strings (a repeated name: the last value), `body` against the
    JSON request body."""

    query: JsonSchema | None = None
    body: JsonSchema | None = None


class RouteDeclaration(_Declaration):
    """A pass-through route: what it matches, where it goes, and its policies."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "name": "news-latest",
                    "description": "The latest headlines",
                    "match": {"path": "/news/latest", "methods": ["GET"]},
                    "upstream": {"service": "news", "path": "/news/latest"},
                    "auth": "none",
                    "rate_limits": [{"key_by": "address", "limit": 20, "period_s": 1}],
                    "transforms": {"response": {"body": {"rename": {"headline": "title"}}}},
                }
            ]
        },
    )

    name: Annotated[StrictStr, Field(pattern=ROUTE_NAME_PATTERN)]
    description: Annotated[StrictStr, Field(max_length=500)] = ""
    enabled: StrictBool = True
    match: RouteMatch
    upstream: RouteUpstream
    # none: anyone (identified when a credential is sent); user: a signed-in user; partner:
    # an API key or a client-credentials token; any: a user or a partner.
    auth: Literal["none", "user", "partner", "any"] = "any"
    roles: list[Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]] = Field(
        default_factory=list, max_length=20
    )
    scopes: list[Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9_:.-]{0,62}$")]] = Field(
        default_factory=list, max_length=20
    )
    rate_limits: list[RouteRateLimit] = Field(default_factory=list, max_length=10)
    cache: RouteCache | None = None
    timeout_ms: Annotated[StrictInt, Field(ge=1, le=MAX_TIMEOUT_MS)] | None = Field(
        None, description="Each try's timeout; null: the service's"
    )
    retries: Annotated[StrictInt, Field(ge=0, le=MAX_RETRIES)] | None = Field(
        None, description="Tries after the first (repeatable requests only); null: the service's"
    )
    transforms: RouteTransforms = RouteTransforms()
    request_schema: RouteSchema = RouteSchema()
    list_rows: (
        Annotated[
            StrictStr, Field(pattern=r"^(|[A-Za-z0-9_$-]{1,100}(\.[A-Za-z0-9_$-]{1,100}){0,15})$")
        ]
        | None
    ) = Field(
        None,
        description="A list endpoint: where its JSON answer (after the response transforms) "
        'holds the rows, e.g. `quotes`; `""` for a top-level list. It then also answers CSV '
        "for `Accept: text/csv`, and 406 for an `Accept` it can produce neither way",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.auth == "none" and (self.roles or self.scopes):
            raise ValueError("a route with auth none cannot require roles or scopes")
        upstream_path = self.upstream.path
        if upstream_path is not None:
            if self.match.path_prefix is not None and "{" in upstream_path:
                raise ValueError("upstream.path of a path_prefix route takes no {parameters}")
            unknown = [
                m.group(1)
                for segment in path_segments(upstream_path)
                if (m := _PARAMETER_SEGMENT.match(segment)) is not None
                and m.group(1) not in self.match.parameters
            ]
            if unknown:
                raise ValueError(
                    f"upstream.path uses {{{unknown[0]}}}, which match.path does not declare"
                )
        return self

    def stored(self) -> dict[str, Any]:
        """The table's JSON document: everything but the name and the switch."""
        return self.model_dump(mode="json", exclude={"name", "enabled"}, exclude_defaults=True)

    @classmethod
    def of_stored(cls, *, name: str, enabled: bool, document: dict[str, Any]) -> "RouteDeclaration":
        """The declaration a stored row holds; `pydantic.ValidationError` when it cannot be
        served."""
        return cls.model_validate({**document, "name": name, "enabled": enabled})
