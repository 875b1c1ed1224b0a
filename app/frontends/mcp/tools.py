"""The partner API's operations as MCP tools, generated from its OpenAPI document.

The document is the one `/partner/v1/openapi.json` serves (`app.openapi.build_document`),
built from the routes' Pydantic models; so a tool's input and output schemas are those
models' schemas, its title the operation's summary (the handler's docstring), its scopes the
operation's security requirement, and the tools never drift from the HTTP API. A new partner
operation with a JSON answer becomes a tool without a line here.

A tool's arguments are the operation's parameters (path, query, header; a header's name in
snake case: `Idempotency-Key` is `idempotency_key`) and the fields of its JSON body, side by
side. `ToolOperation.http_call` turns them back into the HTTP request the partner route
takes; the route itself validates them, as it does for any client.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlencode

import mcp_types as types
import orjson

from app.errors import InvalidRequest

JSON_MEDIA = "application/json"
_COMPONENT_REF = "#/components/schemas/"
_DEFS_REF = "#/$defs/"
# Methods that change nothing, and those that replace or remove what is there.
_SAFE_METHODS = frozenset({"GET", "HEAD"})
_DESTRUCTIVE_METHODS = frozenset({"PUT", "PATCH", "DELETE"})
IDEMPOTENCY_HEADER = "Idempotency-Key"

ParameterLocation = Literal["path", "query", "header"]


@dataclass(frozen=True, slots=True)
class Parameter:
    """One HTTP parameter of an operation and the tool argument that carries it."""

    argument: str
    name: str
    location: ParameterLocation
    required: bool


@dataclass(frozen=True, slots=True)
class HttpCall:
    """The partner request a tool call stands for."""

    method: str
    # Percent-encoded, as on the wire.
    raw_path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True, slots=True)
class ToolOperation:
    """A tool and the partner operation behind it."""

    tool: types.Tool
    method: str
    path: str
    # The scopes the operation's security requirement names: who sees the tool listed.
    scopes: frozenset[str]
    parameters: tuple[Parameter, ...]
    # The operation takes a JSON body made of the arguments that are not parameters.
    has_body: bool

    def listed_for(self, granted: frozenset[str]) -> bool:
        return self.scopes <= granted

    def http_call(self, arguments: Mapping[str, Any]) -> HttpCall:
        """The HTTP request for `arguments`; `InvalidRequest` (422) for arguments that no
        request can carry (an unknown name where there is no body, a missing path value, an
        object where a parameter takes a string)."""
        by_argument = {parameter.argument: parameter for parameter in self.parameters}
        errors: list[dict[str, str]] = []
        path = self.path
        query: list[tuple[str, str]] = []
        headers: list[tuple[bytes, bytes]] = []
        for parameter in self.parameters:
            value = arguments.get(parameter.argument)
            if value is None:
                if parameter.location == "path":
                    errors.append(_error(parameter.argument, "Field required"))
                continue
            text = _parameter_text(value)
            if text is None:
                errors.append(_error(parameter.argument, "Must be a string, number or boolean"))
            elif parameter.location == "path":
                path = path.replace("{" + parameter.name + "}", quote(text, safe=""))
            elif parameter.location == "query":
                query.append((parameter.name, text))
            elif not text.isprintable() or not text.isascii():
                errors.append(_error(parameter.argument, "Must be printable ASCII"))
            else:
                headers.append((parameter.name.lower().encode(), text.encode()))
        rest = {name: value for name, value in arguments.items() if name not in by_argument}
        if rest and not self.has_body:
            errors += [_error(name, "Unknown argument") for name in sorted(rest)]
        if errors:
            detail = "; ".join(f"{error['field']}: {error['message']}" for error in errors)
            raise InvalidRequest(detail, extra={"errors": errors})
        body = orjson.dumps(rest) if self.has_body else b""
        if self.has_body:
            headers.append((b"content-type", JSON_MEDIA.encode()))
        return HttpCall(
            method=self.method,
            raw_path=path,
            query=urlencode(query).encode(),
            headers=headers,
            body=body,
        )


class ToolCatalogue:
    """Every tool, by name."""

    def __init__(self, operations: list[ToolOperation]) -> None:
        self._operations = {operation.tool.name: operation for operation in operations}

    def __iter__(self) -> Iterator[ToolOperation]:
        return iter(self._operations.values())

    def get(self, name: str) -> ToolOperation | None:
        return self._operations.get(name)

    def listed_for(self, granted: frozenset[str]) -> list[types.Tool]:
        return [operation.tool for operation in self if operation.listed_for(granted)]


def tool_catalogue(document: Mapping[str, Any], *, name_prefix: str) -> ToolCatalogue:
    """The tools of every operation in `document` that answers JSON; a tool is named by
    its operationId without `name_prefix` (`partner_quotes` is `quotes`)."""
    components: Mapping[str, Any] = document.get("components", {}).get("schemas", {})
    operations = []
    for path, path_item in document.get("paths", {}).items():
        for method, operation in path_item.items():
            built = _tool_operation(
                path, method.upper(), operation, components=components, name_prefix=name_prefix
            )
            if built is not None:
                operations.append(built)
    return ToolCatalogue(operations)


def _tool_operation(
    path: str,
    method: str,
    operation: Mapping[str, Any],
    *,
    components: Mapping[str, Any],
    name_prefix: str,
) -> ToolOperation | None:
    output = _success_schema(operation, components)
    if output is None:
        return None
    name = operation["operationId"].removeprefix(name_prefix)
    properties: dict[str, Any] = {}
    required: list[str] = []
    parameters = []
    for declared in operation.get("parameters", ()):
        location = declared["in"]
        if location not in ("path", "query", "header"):
            continue
        argument = declared["name"].lower().replace("-", "_")
        schema = dict(declared.get("schema", {}))
        if "description" in declared:
            schema["description"] = declared["description"]
        properties[argument] = schema
        if declared.get("required"):
            required.append(argument)
        parameters.append(
            Parameter(
                argument=argument,
                name=declared["name"],
                location=location,
                required=bool(declared.get("required")),
            )
        )
    body = operation.get("requestBody", {}).get("content", {}).get(JSON_MEDIA)
    if body is not None:
        fields = _union_fields(_resolve(body["schema"], components), components)
        for field_name, schema in fields.get("properties", {}).items():
            if field_name in properties:
                raise ValueError(f"{name}: body field {field_name!r} is also a parameter")
            properties[field_name] = schema
        required += fields.get("required", [])
    input_schema = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    scopes = frozenset(
        scope
        for requirement in operation.get("security", ())
        for scopes in requirement.values()
        for scope in scopes
    )
    summary = operation.get("summary", name).strip()
    idempotent_by_key = any(
        p.name == IDEMPOTENCY_HEADER and p.location == "header" and p.required for p in parameters
    )
    tool = types.Tool(
        name=name,
        title=summary.rstrip("."),
        description=_description(
            summary, operation.get("description"), scopes=scopes, keyed=idempotent_by_key
        ),
        input_schema=_with_definitions(input_schema, components),
        output_schema=_with_definitions(output, components),
        annotations=types.ToolAnnotations(
            title=summary.rstrip("."),
            read_only_hint=method in _SAFE_METHODS,
            destructive_hint=method in _DESTRUCTIVE_METHODS,
            # A repeat with the same arguments (the same idempotency key) changes nothing.
            idempotent_hint=method in _SAFE_METHODS | {"PUT", "DELETE"} or idempotent_by_key,
            # Only the stock-bot platform's own services are reached.
            open_world_hint=False,
        ),
    )
    return ToolOperation(
        tool=tool,
        method=method,
        path=path,
        scopes=scopes,
        parameters=tuple(parameters),
        has_body=body is not None,
    )


def _description(
    summary: str, description: str | None, *, scopes: frozenset[str], keyed: bool
) -> str:
    parts = [summary]
    if description:
        parts.append(description.strip())
    if keyed:
        parts.append(
            "`idempotency_key` is required: choose a new one per intended order and send the "
            "same one when retrying it; a retry with the same key and arguments returns the "
            "first order instead of placing a second one."
        )
    if scopes:
        parts.append(f"Needs the scope(s): {', '.join(sorted(scopes))}.")
    return "\n\n".join(parts)


def _success_schema(
    operation: Mapping[str, Any], components: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The JSON object a 2xx answer holds; None when the operation answers no JSON object."""
    for status, response in sorted(operation.get("responses", {}).items()):
        if not str(status).startswith("2"):
            continue
        schema = response.get("content", {}).get(JSON_MEDIA, {}).get("schema")
        if schema is None:
            return None
        resolved = _resolve(schema, components)
        return dict(resolved) if resolved.get("type") == "object" else None
    return None


def _union_fields(schema: Mapping[str, Any], components: Mapping[str, Any]) -> Mapping[str, Any]:
    """A body that is a union (an order request, by `type`) as one set of fields: every
    variant's properties, required where every variant requires them; the gateway checks
    the variant's own rules when the call is made."""
    if "oneOf" not in schema:
        return schema
    variants = [_resolve(variant, components) for variant in schema["oneOf"]]
    properties: dict[str, Any] = {}
    for variant in variants:
        for field_name, field in variant.get("properties", {}).items():
            if "const" in field:
                merged = properties.setdefault(field_name, {"type": "string", "enum": []})
                merged["enum"].append(field["const"])
            else:
                properties.setdefault(field_name, field)
    required = [
        name
        for name in variants[0].get("required", [])
        if all(name in variant.get("required", []) for variant in variants)
    ]
    return {"properties": properties, "required": required}


def _resolve(schema: Mapping[str, Any], components: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_COMPONENT_REF):
        resolved: Mapping[str, Any] = components[ref.removeprefix(_COMPONENT_REF)]
        return resolved
    return schema


def _with_definitions(schema: dict[str, Any], components: Mapping[str, Any]) -> dict[str, Any]:
    """`schema` standing alone: the components it refers to (transitively) under `$defs`."""
    definitions: dict[str, Any] = {}
    pending = list(_references(schema))
    while pending:
        name = pending.pop()
        if name in definitions:
            continue
        definitions[name] = components[name]
        pending += _references(components[name])
    standalone: dict[str, Any] = _rewrite_refs(schema)
    if definitions:
        standalone["$defs"] = {name: _rewrite_refs(definitions[name]) for name in definitions}
    return standalone


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str) and item.startswith(_COMPONENT_REF):
                yield item.removeprefix(_COMPONENT_REF)
            else:
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def _rewrite_refs(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: (
                _DEFS_REF + item.removeprefix(_COMPONENT_REF)
                if key == "$ref" and isinstance(item, str)
                else _rewrite_refs(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_rewrite_refs(item) for item in value]
    return value


def _parameter_text(value: Any) -> str | None:
    """A parameter's value as HTTP carries it; None for a value no parameter takes."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}
