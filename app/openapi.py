"""One OpenAPI document per frontend, and the pages that show them.

Each frontend is its own API with its own clients, so each gets its own document at
`<prefix>/openapi.json`; Swagger UI at `/docs` offers them in a selector, ReDoc at
`/redoc?doc=<slug>` shows one. The admin API's document is for admins only (unless
`GATEWAY_HTTP__PUBLIC_ADMIN_DOCS` is set): it needs the admin API's own credentials, and the
selector, which anyone may load, does not list it.
"""

import copy
import json
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fastapi_offline
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.docs import get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from app.admin.auth import require_admin
from app.deps import RouteAccess, StateDep
from app.errors import PROBLEM_MEDIA_TYPE, NotFound, Problem, problem_responses
from app.frontends.order_entry import PRICES_BY_TYPE, OrderRequest
from app.frontends.versions import DEPRECATION_HEADERS_DOC
from app.policy.admission import RATE_LIMIT_HEADERS_DOC, RETRY_AFTER_DOC
from app.problems import PROBLEM_TYPES, ProblemType, problems_for
from app.security.rbac import AccessRule, bearer_token, session_cookie
from app.security.sessions import CSRF_HEADER
from app.upstreams.orders import OrderType


@dataclass(frozen=True, slots=True)
class ApiDocument:
    slug: str
    title: str
    prefix: str
    description: str
    version: str = "1.0.0"
    # Served only with the admin API's credentials, and not offered in the selector.
    admin_only: bool = False


def stable_operation_id(route: APIRoute) -> str:
    """operationIds are the handler names, so generated clients keep their method names."""
    return route.name


def build_document(app: FastAPI, document: ApiDocument) -> dict[str, Any]:
    """The OpenAPI document of the routes under `document.prefix`."""
    # Included routers are kept nested (FastAPI >= 0.160); route contexts flatten them.
    routes = [
        context
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        and context.include_in_schema
        and (context.path or "").startswith(document.prefix + "/")
    ]
    schema = get_openapi(
        title=document.title,
        version=document.version,
        description=document.description,
        routes=routes,
    )
    _security_requirements(schema, routes)
    _problems_as_problem_json(schema)
    _body_problems(schema)
    _examples_keep_nulls(schema)
    _order_requests_by_type(schema)
    _typed_problems(schema)
    _csrf_header(schema)
    _openid_connect(schema)
    _enum_varnames(schema)
    schema["servers"] = SERVERS
    _docstrings_as_summaries(schema)
    _rate_limit_headers(schema)
    _deprecation_headers(schema)
    return schema


def _access_rules(dependant: Dependant) -> Iterator[AccessRule]:
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, RouteAccess):
            yield dependency.call.rule
        yield from _access_rules(dependency)


def _security_requirements(schema: dict[str, Any], routes: Sequence[RouteContext]) -> None:
    """Operations behind access rules declare their credentials and the scopes they need.

    A rule is one plain dependency rather than FastAPI's security dependencies (see
    `app.deps.RouteAccess`), so FastAPI does not see them; the requirements are written here.
    """
    for context in routes:
        route = context.original_route
        assert isinstance(route, APIRoute)
        rules = list(_access_rules(route.dependant))
        if not rules:
            continue
        scopes = list(dict.fromkeys(scope for rule in rules for scope in rule.scopes))
        schemes = list(dict.fromkeys(scheme for rule in rules for scheme in rule.audience.schemes))
        requirement = [{scheme.scheme_name: scopes} for scheme in schemes]
        for method in context.methods or ():
            schema["paths"][context.path][method.lower()]["security"] = requirement
        components = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        for scheme in schemes:
            components[scheme.scheme_name] = jsonable_encoder(
                scheme.model, by_alias=True, exclude_none=True
            )


def _rate_limit_headers(schema: dict[str, Any]) -> None:
    """Rate-limited operations (those that may answer 429) document the limit headers."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            if "429" not in responses:
                continue
            for status, response in responses.items():
                headers = response.setdefault("headers", {})
                if status.startswith("2"):
                    headers.update(RATE_LIMIT_HEADERS_DOC)
                elif status == "429":
                    headers.update({**RETRY_AFTER_DOC, **RATE_LIMIT_HEADERS_DOC})
                elif status == "503":
                    headers.update(RETRY_AFTER_DOC)
                if not headers:
                    del response["headers"]


def _deprecation_headers(schema: dict[str, Any]) -> None:
    """A deprecated operation (its version has a successor) documents the headers saying so."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not operation.get("deprecated"):
                continue
            for response in operation.get("responses", {}).values():
                response.setdefault("headers", {}).update(DEPRECATION_HEADERS_DOC)


def _docstrings_as_summaries(schema: dict[str, Any]) -> None:
    """An endpoint's one-line docstring is its summary; FastAPI files it as the description."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            description = operation.get("description", "").strip()
            # FastAPI's fallback summary is the title-cased handler name; keep explicit ones.
            fallback = operation.get("operationId", "").replace("_", " ").title()
            if not description or operation.get("summary") != fallback:
                continue
            first, _, rest = description.partition("\n\n")
            operation["summary"] = " ".join(first.split())
            if rest.strip():
                operation["description"] = rest.strip()
            else:
                del operation["description"]


def _problems_as_problem_json(schema: dict[str, Any]) -> None:
    """Error responses are problem+json; FastAPI writes every model as application/json."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if str(status)[0] in "45" and "application/json" in content:
                    content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")


_PROBLEM_REF = "#/components/schemas/Problem"


def _is_problem(response: dict[str, Any]) -> bool:
    content = response.get("content", {}).get(PROBLEM_MEDIA_TYPE, {})
    return bool(content.get("schema", {}).get("$ref") == _PROBLEM_REF)


def _body_problems(schema: dict[str, Any]) -> None:
    """Every 422 is the problem the gateway sends, and an operation with a body may answer 400.

    FastAPI documents its own `HTTPValidationError` for a 422 the route does not declare; the
    gateway answers every one with a problem (`app.errors`). A body that is not UTF-8 or not
    JSON is a 400 (malformed); one that parses but breaks the schema, a 422 (invalid).
    """
    descriptions = {
        "400": "The body is malformed: not UTF-8, or not JSON; `detail` says where",
        "422": problem_responses(422)[422]["description"],
    }
    problems = {
        status: {
            "description": description,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _PROBLEM_REF}}},
        }
        for status, description in descriptions.items()
    }
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            needed = {"400", "422"} if "requestBody" in operation else {"422"} & responses.keys()
            for status in sorted(needed):
                if status not in responses or not _is_problem(responses[status]):
                    responses[status] = copy.deepcopy(problems[status])
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "Problem" not in components:
        definition = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(definition.pop("$defs", {}))
        components["Problem"] = definition
    # FastAPI's validation error models, now that no response names them.
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused in components and f"#/components/schemas/{unused}" not in json.dumps(schema):
            del components[unused]


# Relative first: Swagger's "Try it out" calls the gateway that served the page.
SERVERS = [
    {"url": "/", "description": "The gateway that serves this document"},
    {"url": "http://127.0.0.1:8000", "description": "`make run` on a developer's machine"},
]
OPENID_CONFIGURATION = "/docs/openid-configuration"
_UNSAFE = {"post", "put", "patch", "delete"}


def _csrf_header(schema: dict[str, Any]) -> None:
    """Unsafe operations a session cookie may authenticate declare `X-CSRF-Token`."""
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            schemes = {name for need in operation.get("security", []) for name in need}
            if method not in _UNSAFE or session_cookie.scheme_name not in schemes:
                continue
            parameters = operation.setdefault("parameters", [])
            if any(p.get("name") == CSRF_HEADER for p in parameters):
                continue
            parameters.append(
                {
                    "name": CSRF_HEADER,
                    "in": "header",
                    "required": False,
                    "description": (
                        "Required when the session cookie authenticates the call: the "
                        "session's CSRF token from `GET /auth/session` (a 403 without it). "
                        "Not used with a bearer token or an API key."
                    ),
                    "schema": {"type": "string"},
                }
            )


def _openid_connect(schema: dict[str, Any]) -> None:
    """Next to every bearer requirement, the same through OpenID Connect, so Swagger UI's
    Authorize can sign in at the provider (its discovery document through the gateway)."""
    bearer = bearer_token.scheme_name
    used = False
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            requirements = operation.get("security", [])
            for requirement in list(requirements):
                if bearer in requirement:
                    requirements.append({"OpenIdConnect": requirement[bearer]})
                    used = True
    if used:
        schema["components"]["securitySchemes"]["OpenIdConnect"] = {
            "type": "openIdConnect",
            "openIdConnectUrl": OPENID_CONFIGURATION,
            "description": "Sign in at the stock-bot identity provider (authorization code, PKCE).",
        }


def _enum_classes() -> dict[tuple[str, frozenset[str]], type[Enum]]:
    """Every string enum by its name and values (namesakes told apart by their values)."""
    found: dict[tuple[str, frozenset[str]], type[Enum]] = {}
    pending: list[type[Enum]] = [StrEnum]
    while pending:
        enum = pending.pop()
        pending += enum.__subclasses__()
        if enum is not StrEnum:
            found[(enum.__name__, frozenset(str(member.value) for member in enum))] = enum
    return found


def _enum_varnames(schema: dict[str, Any]) -> None:
    """`x-enum-varnames` for enums whose values start with a digit (`1d`, `5m`), so generated
    clients name the members as the gateway does instead of `VALUE_0`."""
    classes = _enum_classes()
    for name, component in schema.get("components", {}).get("schemas", {}).items():
        values = component.get("enum")
        if not values or not any(str(v)[:1].isdigit() for v in values):
            continue
        enum = classes.get((name.rsplit("__", 1)[-1], frozenset(map(str, values))))
        if enum is not None:
            by_value = {str(member.value): member.name for member in enum}
            component["x-enum-varnames"] = [by_value[str(v)] for v in values]


def _model_examples() -> dict[str, list[tuple[frozenset[str], list[Any]]]]:
    """Each model's examples by model name, with the field names that tell namesakes apart."""
    found: dict[str, list[tuple[frozenset[str], list[Any]]]] = {}
    pending: list[type[BaseModel]] = [BaseModel]
    while pending:
        model = pending.pop()
        pending += model.__subclasses__()
        extra = model.model_config.get("json_schema_extra")
        if not isinstance(extra, dict) or "examples" not in extra:
            continue
        fields = frozenset(
            field.serialization_alias or field.alias or name
            for name, field in model.model_fields.items()
        )
        found.setdefault(model.__name__, []).append((fields, jsonable_encoder(extra["examples"])))
    return found


def _examples_keep_nulls(schema: dict[str, Any]) -> None:
    """Component examples as the models give them, `null`s included.

    FastAPI writes the document without `None` values, which takes every `null` out of the
    examples, and an example without a required nullable field fails its own schema.
    """
    examples = _model_examples()
    for name, component in schema.get("components", {}).get("schemas", {}).items():
        if "examples" not in component:
            continue
        properties = frozenset(component.get("properties", {}))
        short = name.rsplit("__", 1)[-1]
        for fields, given in examples.get(short, []):
            if fields == properties:
                component["examples"] = given
                break


def _typed_problems(schema: dict[str, Any]) -> None:
    """Each error response names the problem types its status may carry (`app.problems`):
    one schema per type, a union discriminated by `type` where there are several, and an
    example of the status's usual problem."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for path, path_item in schema.get("paths", {}).items():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                kinds = problems_for(int(status)) if str(status).isdigit() else []
                if not kinds or not _is_problem(response):
                    continue
                content = response["content"][PROBLEM_MEDIA_TYPE]
                content["schema"] = _problem_schema(components, int(status), kinds)
                content["example"] = kinds[0].example_for(int(status), instance=path)
    if _PROBLEM_REF not in json.dumps(schema.get("paths", {})):
        components.pop("Problem", None)


def _problem_schema(
    components: dict[str, Any], status: int, kinds: list[ProblemType]
) -> dict[str, Any]:
    refs = {}
    for kind in kinds:
        name = kind.model.__name__
        if name not in components:
            definition = kind.model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(definition.pop("$defs", {}))
            definition["description"] = f"{kind.description} Described at `{kind.uri}`."
            components[name] = definition
        refs[kind.uri] = f"#/components/schemas/{name}"
    if len(refs) == 1:
        return {"$ref": next(iter(refs.values()))}
    union = f"Problem{status}"
    components[union] = {
        "title": union,
        "description": f"The problem types a {status} may carry, told apart by `type`.",
        "oneOf": [{"$ref": ref} for ref in refs.values()],
        "discriminator": {"propertyName": "type", "mapping": refs},
    }
    return {"$ref": f"#/components/schemas/{union}"}


def _order_request_models() -> set[str]:
    found, pending = set(), [OrderRequest]
    while pending:
        model = pending.pop()
        found.add(model.__name__)
        pending += model.__subclasses__()
    return found


def _order_requests_by_type(schema: dict[str, Any]) -> None:
    """An order request is a union discriminated by `type`, one variant per order type.

    The model validates the rule itself (which prices each type requires or forbids, with
    the problem naming the price); the document states it, so a generated client cannot
    build a limit order without `limit_price`. Each variant is its own component
    (`LimitOrderRequest`, `PartnerLimitOrderRequest`, ...).
    """
    components = schema.get("components", {}).get("schemas", {})
    for name in sorted(_order_request_models() & components.keys()):
        base = components[name]
        variants: dict[str, str] = {}
        for order_type, prices in PRICES_BY_TYPE.items():
            words = "".join(word.title() for word in order_type.value.split("_"))
            variant_name = name.replace("OrderRequest", f"{words}OrderRequest")
            variant = copy.deepcopy(base)
            variant.pop("examples", None)
            variant["title"] = variant_name
            needs = " and ".join(f"`{price}`" for price in sorted(prices)) or "no price"
            variant["description"] = (
                f"{base.get('description', '')} A {order_type.value} order: {needs}."
            )
            properties = variant["properties"]
            properties["type"] = {"const": order_type.value, "type": "string", "title": "Type"}
            for price in sorted(PRICES_BY_TYPE[OrderType.stop_limit]):
                if price not in prices:
                    properties.pop(price, None)
                    continue
                field = properties[price]
                number = next(branch for branch in field["anyOf"] if branch.get("type") != "null")
                properties[price] = {**number, "description": field.get("description", "")}
                variant["required"] = [*variant.get("required", []), price]
            components[variant_name] = variant
            variants[order_type.value] = f"#/components/schemas/{variant_name}"
        components[name] = {
            "title": name,
            "description": base.get("description", ""),
            "oneOf": [{"$ref": ref} for ref in variants.values()],
            "discriminator": {"propertyName": "type", "mapping": variants},
            **({"examples": base["examples"]} if "examples" in base else {}),
        }


def install_docs(
    app: FastAPI,
    documents: list[ApiDocument],
    *,
    public_admin_docs: bool,
    connect_origins: Sequence[str] = (),
) -> None:
    """Serve each document, Swagger UI over the public ones, ReDoc for one, and their assets.

    The pages load Swagger UI and ReDoc from `/docs/assets` (the `fastapi-offline` package's
    copies, pinned in the lock file), so they work on a machine without internet; their
    Content-Security-Policy keeps it so (ReDoc's attribution logo would come from its CDN).
    The origins of `connect_origins` may be fetched besides the gateway: the identity
    provider's, for Swagger UI's sign-in.
    """
    cache: dict[str, dict[str, Any]] = {}
    docs = APIRouter(include_in_schema=False)

    def restricted(document: ApiDocument) -> bool:
        return document.admin_only and not public_admin_docs

    for document in documents:

        async def openapi_json(request: Request, document: ApiDocument = document) -> JSONResponse:
            if document.slug not in cache:
                cache[document.slug] = build_document(request.app, document)
            return JSONResponse(cache[document.slug])

        docs.add_api_route(
            f"{document.prefix}/openapi.json",
            openapi_json,
            methods=["GET"],
            dependencies=[Depends(require_admin)] if restricted(document) else None,
        )

    listed = [d for d in documents if not restricted(d)]

    @docs.get("/docs")
    async def swagger_ui(doc: str = listed[0].slug) -> HTMLResponse:
        chosen = _document_named(doc, listed)
        nonce = secrets.token_urlsafe(16)
        return _local_only(_swagger_page(listed, chosen, nonce=nonce), nonce, connect_origins)

    @docs.get(SWAGGER_OAUTH2_REDIRECT)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @docs.get("/redoc")
    async def redoc(doc: str = documents[0].slug) -> HTMLResponse:
        chosen = _document_named(doc, documents)
        return _local_only(_redoc_page(chosen, listed), secrets.token_urlsafe(16), ())

    @docs.get(OPENID_CONFIGURATION)
    async def openid_configuration(state: StateDep) -> JSONResponse:
        """The identity provider's discovery document, for Swagger UI's OpenID Connect sign-in."""
        metadata = await state.identity.issuer.metadata()
        return JSONResponse(
            {
                **metadata.model_dump(exclude_none=True),
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": state.settings.identity.web_scopes.split(),
            }
        )

    @docs.get("/problems")
    async def problem_catalogue() -> HTMLResponse:
        return _local_only(_catalogue_page(), secrets.token_urlsafe(16), ())

    @docs.get("/problems/{slug}")
    async def problem_type(slug: str) -> HTMLResponse:
        kind = PROBLEM_TYPES.get(slug)
        if kind is None:
            raise NotFound(f"No problem type {slug!r}; the catalogue is at /problems.")
        return _local_only(_problem_page(kind), secrets.token_urlsafe(16), ())

    app.include_router(docs)
    app.mount(DOCS_ASSETS, StaticFiles(directory=_ASSETS_DIR), name="docs-assets")


# Swagger UI 5 and ReDoc 2 as the pinned `fastapi-offline` wheel ships them.
_ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
DOCS_ASSETS = "/docs/assets"
SWAGGER_OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def _local_only(page: str, nonce: str, connect_origins: Sequence[str]) -> HTMLResponse:
    """A docs page that may load nothing but the gateway's own assets."""
    origins = (f"{u.scheme}://{u.netloc}" for u in map(urlsplit, connect_origins))
    connect = " ".join(["'self'", *origins])
    policy = (
        f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
        f"img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
        f"connect-src {connect}; frame-ancestors 'none'; base-uri 'none'"
    )
    return HTMLResponse(page, headers={"Content-Security-Policy": policy})


def _document_named(slug: str, documents: Sequence[ApiDocument]) -> ApiDocument:
    chosen = next((d for d in documents if d.slug == slug), None)
    if chosen is None:
        known = ", ".join(d.slug for d in documents)
        raise NotFound(f"No API document named {slug!r}; known: {known}.")
    return chosen


def _document_options(documents: Sequence[ApiDocument], chosen: ApiDocument) -> str:
    return "".join(
        f'<option value="{escape(d.slug)}" data-url="{escape(d.prefix)}/openapi.json"'
        f"{' selected' if d is chosen else ''}>{escape(d.title)}</option>"
        for d in documents
    )


_PAGE_STYLE = """
body{margin:0;font-family:system-ui,sans-serif}
header.docs{display:flex;gap:1rem;align-items:center;padding:.6rem 1.2rem;
 background:#1b2733;color:#fff}
header.docs a{color:#cfe3ff}
header.docs select{font-size:1rem;padding:.2rem}
"""


def _swagger_page(documents: Sequence[ApiDocument], chosen: ApiDocument, *, nonce: str) -> str:
    """Swagger UI over one document; the selector switches documents in place.

    The standalone layout's top bar is not in the pinned assets, so the selector is this
    page's own: a plain form (`?doc=<slug>`) that the script turns into an in-place switch.
    """
    config = {
        "url": f"{chosen.prefix}/openapi.json",
        "dom_id": "#swagger-ui",
        "deepLinking": True,
        "persistAuthorization": True,
        "displayOperationId": True,
        "validatorUrl": None,
        "oauth2RedirectUrl": SWAGGER_OAUTH2_REDIRECT,
    }
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>stock-bot API gateway: API docs</title>
<link rel="icon" href="{DOCS_ASSETS}/favicon.png">
<link rel="stylesheet" href="{DOCS_ASSETS}/swagger-ui.css">
<style>{_PAGE_STYLE}</style></head>
<body><header class="docs">
<form method="get" action="/docs"><label for="doc">API</label>
<select id="doc" name="doc">{_document_options(documents, chosen)}</select>
<noscript><button type="submit">Show</button></noscript></form>
<a href="/redoc?doc={escape(chosen.slug)}" id="redoc-link">Reference (ReDoc)</a>
</header>
<div id="swagger-ui"></div>
<script src="{DOCS_ASSETS}/swagger-ui-bundle.js"></script>
<script nonce="{nonce}">
const config = {json.dumps(config)};
config.presets = [SwaggerUIBundle.presets.apis];
config.layout = "BaseLayout";
window.ui = SwaggerUIBundle(config);
window.ui.initOAuth({{ usePkceWithAuthorizationCodeGrant: true }});
document.getElementById("doc").addEventListener("change", (event) => {{
  const option = event.target.selectedOptions[0];
  window.ui.specActions.updateUrl(option.dataset.url);
  window.ui.specActions.download(option.dataset.url);
  document.getElementById("redoc-link").href = "/redoc?doc=" + option.value;
  history.replaceState(null, "", "/docs?doc=" + option.value);
}});
</script></body></html>"""


def _redoc_page(document: ApiDocument, documents: Sequence[ApiDocument]) -> str:
    links = " ".join(
        f'<a href="/redoc?doc={escape(d.slug)}">{escape(d.title)}</a>' for d in documents
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(document.title)}</title>
<link rel="icon" href="{DOCS_ASSETS}/favicon.png"><style>{_PAGE_STYLE}</style></head>
<body><header class="docs"><nav aria-label="API documents">{links}</nav>
<a href="/docs?doc={escape(document.slug)}">Try it (Swagger UI)</a></header>
<redoc spec-url="{escape(document.prefix)}/openapi.json"></redoc>
<script src="{DOCS_ASSETS}/redoc.standalone.js"></script>
</body></html>"""


def _catalogue_page() -> str:
    rows = "".join(
        f'<tr><td><a href="{escape(kind.uri)}"><code>{escape(kind.uri)}</code></a></td>'
        f"<td>{escape(kind.title)}</td><td>{', '.join(map(str, kind.statuses))}</td></tr>"
        for kind in PROBLEM_TYPES.values()
    )
    return _plain_page(
        "Problem types",
        "<p>Every error the gateway answers is <code>application/problem+json</code> (RFC "
        "9457); its <code>type</code> is one of these.</p>"
        f"<table><thead><tr><th>type</th><th>title</th><th>status</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>",
    )


def _problem_page(kind: ProblemType) -> str:
    fields = kind.model.model_json_schema()["properties"]
    common = {"type", "title", "status", "detail", "instance", "request_id"}
    extra_rows = "".join(
        f"<tr><td><code>{escape(name)}</code></td>"
        f"<td>{escape(str(field.get('description', '')))}</td></tr>"
        for name, field in fields.items()
        if name not in common
    )
    extra = (
        f"<h2>Extra fields</h2><table><tbody>{extra_rows}</tbody></table>"
        if extra_rows
        else "<p>No fields beyond the standard ones.</p>"
    )
    example = json.dumps(kind.example_for(kind.statuses[0]), indent=2)
    return _plain_page(
        kind.title,
        f"<p><code>type</code>: <code>{escape(kind.uri)}</code> &middot; status "
        f"{', '.join(map(str, kind.statuses))}</p><p>{escape(kind.description)}</p>{extra}"
        "<h2>Every problem also has</h2><p><code>type</code>, <code>title</code>, "
        "<code>status</code>, <code>detail</code>, <code>instance</code> (the request path) "
        "and <code>request_id</code>.</p>"
        f"<h2>Example</h2><pre>{escape(example)}</pre>"
        '<p><a href="/problems">Every problem type</a></p>',
    )


def _plain_page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{_PAGE_STYLE}
main{{max-width:50rem;margin:1rem auto;padding:0 1rem}} td,th{{padding:.2rem .6rem;text-align:left}}
pre{{background:#f4f6f8;padding:1rem;overflow:auto}}</style></head>
<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"""
