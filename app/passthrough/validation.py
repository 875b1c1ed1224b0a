"""Validation before forwarding: a route's JSON Schemas for its query parameters and its JSON
body, compiled once per snapshot (fastjsonschema) and checked before anything is sent
upstream. A request that fails is a 422 problem naming the field (`query.symbols`,
`body.quantity`); nothing is forwarded.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import fastjsonschema
import orjson

from app.errors import InvalidRequest, MalformedBody
from app.store.route_declarations import RouteSchema

Validator = Callable[[Any], Any]


def _compile(schema: dict[str, Any] | None) -> Validator | None:
    return fastjsonschema.compile(schema) if schema is not None else None


def _field(where: str, error: fastjsonschema.JsonSchemaValueException, value: Any) -> str:
    parts = [str(part) for part in (error.path or [])[1:]]
    if error.rule == "required" and isinstance(error.rule_definition, list):
        target = value
        for part in parts:
            target = target.get(part) if isinstance(target, dict) else None
        missing = [
            name
            for name in error.rule_definition
            if not isinstance(target, dict) or name not in target
        ]
        if missing:
            parts.append(str(missing[0]))
    return ".".join([where, *parts])


def _invalid(
    where: str, error: fastjsonschema.JsonSchemaValueException, value: Any
) -> InvalidRequest:
    field = _field(where, error, value)
    message = str(error.message).removeprefix(str(error.name)).strip() or "is invalid"
    if error.rule == "required":
        message = "is required"
    return InvalidRequest(
        f"{field}: {message}", extra={"errors": [{"field": field, "message": message}]}
    )


@dataclass(frozen=True, slots=True)
class RequestValidation:
    query: Validator | None
    body: Validator | None

    @classmethod
    def of(cls, schema: RouteSchema) -> "RequestValidation | None":
        if schema.query is None and schema.body is None:
            return None
        return cls(query=_compile(schema.query), body=_compile(schema.body))

    def check_query(self, pairs: Iterable[tuple[str, str]]) -> None:
        if self.query is None:
            return
        parameters = dict(pairs)
        try:
            self.query(parameters)
        except fastjsonschema.JsonSchemaValueException as error:
            raise _invalid("query", error, parameters) from None

    def check_body(self, body: bytes) -> None:
        if self.body is None:
            return
        try:
            document = orjson.loads(body) if body else None
        except orjson.JSONDecodeError as exc:
            raise MalformedBody(
                f"The body is not JSON: {exc}.",
                extra={"errors": [{"field": "body", "message": "not JSON"}]},
            ) from None
        try:
            self.body(document)
        except fastjsonschema.JsonSchemaValueException as error:
            raise _invalid("body", error, document) from None
