"""The pass-through routes' own OpenAPI document (`<prefix>openapi.json`, default
`/api/openapi.json`), built from their declarations: one operation per route and method,
its path parameters, its query schema as parameters, its body schema, who may call it and
its rate limits. Built again whenever the snapshot changes (once per snapshot)."""

from collections.abc import Iterable
from typing import Any

from app.passthrough.compiled import CompiledRoute
from app.store.route_declarations import METHODS

_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "none": [],
    "user": [{"BearerToken": []}, {"SessionCookie": []}],
    "partner": [{"ApiKey": []}, {"BearerToken": []}],
    "any": [{"BearerToken": []}, {"SessionCookie": []}, {"ApiKey": []}],
}
_PROBLEM = {"$ref": "#/components/responses/Problem"}


def _parameters(route: CompiledRoute) -> list[dict[str, Any]]:
    declaration = route.declaration
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in declaration.match.parameters
    ]
    query = declaration.request_schema.query or {}
    required = set(query.get("required", []))
    for name, schema in (query.get("properties") or {}).items():
        parameters.append(
            {"name": name, "in": "query", "required": name in required, "schema": schema}
        )
    for name, value in declaration.match.headers.items():
        parameters.append(
            {"name": name, "in": "header", "required": True, "schema": {"const": value}}
        )
    return parameters


def _operation(route: CompiledRoute, method: str) -> dict[str, Any]:
    declaration = route.declaration
    operation: dict[str, Any] = {
        "operationId": f"{declaration.name}-{method.lower()}",
        "summary": declaration.description or declaration.name,
        "tags": [declaration.upstream.service],
        "parameters": _parameters(route),
        "security": _SECURITY[declaration.auth],
        "responses": {
            "200": {"description": f"The answer of {declaration.upstream.service}, as it is"},
            "401": _PROBLEM,
            "403": _PROBLEM,
            "422": _PROBLEM,
            "429": _PROBLEM,
            "502": _PROBLEM,
            "503": _PROBLEM,
            "504": _PROBLEM,
        },
    }
    if declaration.scopes:
        operation["x-required-scopes"] = list(declaration.scopes)
    if declaration.rate_limits:
        operation["x-rate-limits"] = [
            limit.model_dump(mode="json", exclude_none=True) for limit in declaration.rate_limits
        ]
    body = declaration.request_schema.body
    if body is not None and method not in {"GET", "HEAD", "DELETE", "OPTIONS"}:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return operation


def routes_document(routes: Iterable[CompiledRoute], *, prefix: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in sorted(routes, key=lambda r: r.route_id):
        match = route.declaration.match
        path = prefix.rstrip("/") + (match.path or f"{match.path_prefix}/{{rest}}")
        item = paths.setdefault(path, {})
        methods: list[str] = list(match.methods) or [
            m for m in METHODS if m not in {"HEAD", "OPTIONS"}
        ]
        for method in methods:
            if method.lower() not in item:
                item[method.lower()] = _operation(route, method)
        if match.path_prefix is not None:
            for operation in item.values():
                names = {p["name"] for p in operation["parameters"]}
                if "rest" not in names:
                    operation["parameters"].append(
                        {
                            "name": "rest",
                            "in": "path",
                            "required": True,
                            "description": "The rest of the path, passed on as it is",
                            "schema": {"type": "string"},
                        }
                    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "stock-bot pass-through routes",
            "version": "1",
            "description": "Platform services reached through routes configured at run time "
            "(admin API `/admin/v1/routes`, `gateway config apply`). Generated from the "
            "routes this gateway process serves.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "BearerToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "SessionCookie": {"type": "apiKey", "in": "cookie", "name": "stockbot_session"},
            },
            "responses": {
                "Problem": {
                    "description": "The gateway's own failure (RFC 9457)",
                    "content": {"application/problem+json": {"schema": {"type": "object"}}},
                }
            },
        },
    }
