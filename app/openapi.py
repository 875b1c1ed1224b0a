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
from html import escape
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.docs import get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.staticfiles import StaticFiles

from app.admin.auth import require_admin
from app.deps import RouteAccess
from app.errors import PROBLEM_MEDIA_TYPE, NotFound, Problem, problem_responses
from app.frontends.versions import DEPRECATION_HEADERS_DOC
from app.policy.admission import RATE_LIMIT_HEADERS_DOC, RETRY_AFTER_DOC
from app.security.rbac import AccessRule


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
    `connect_origins` may be fetched besides the gateway: the identity provider, for
    Swagger UI's sign-in.
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

    app.include_router(docs)
    app.mount(DOCS_ASSETS, StaticFiles(directory=_ASSETS_DIR), name="docs-assets")


# Swagger UI 5 and ReDoc 2 as the pinned `fastapi-offline` wheel ships them.
_ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
DOCS_ASSETS = "/docs/assets"
SWAGGER_OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def _local_only(page: str, nonce: str, connect_origins: Sequence[str]) -> HTMLResponse:
    """A docs page that may load nothing but the gateway's own assets."""
    connect = " ".join(["'self'", *connect_origins])
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
