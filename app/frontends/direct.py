"""Direct dispatch of the hot read routes: a FastAPI route's own endpoint, called without
FastAPI's router and dependency solving.

On partner quotes those cost as much as the endpoint itself: the walk through the nested
routers, then two dependants solved (the route and its `RouteAccess`), each with a pass over
every kind of parameter; on the web dashboard they are the larger part of what the gateway
does before its first upstream call. A route whose whole request handling is "its access
rule, a few dependencies of the request alone, its path and query parameters, its endpoint"
(partner quotes and candles, the web and mobile dashboards, a symbol's page) needs none of
that. For such a route this layer takes FastAPI's steps itself, in FastAPI's order and with
FastAPI's own parts where they decide an answer:

1. the access rule through the policy chain, the route template recorded on the context
   first (the edge's access record, metrics and span name it as they would);
2. the route's other dependencies, each a coroutine function of the request (the service
   clients, the caller's account), in FastAPI's order;
3. the path and query parameters as FastAPI's `request_params_to_args` reads them, the same
   values and the same errors (a 422 problem naming `path.<name>`, `query.<name>`, after the
   rule and the dependencies, as FastAPI does): for plain one-value parameters
   (`ParamReader`), what that function works out per request and per field (model,
   aliases, sequence or not: a third of the route's own cost) is worked out once, and each
   value goes to FastAPI's own validation of the field; any other parameter goes through
   the function itself;
4. the endpoint: a `Response` it returns is sent as it is, a value of its response model is
   serialized by FastAPI's own `serialize_response`, as FastAPI's request handler does
   (it takes its path parameters as arguments: `request.path_params` stays empty, as
   nothing but the edge writes the scope; a dependency of the request alone that read them
   would find none, and none of the gateway's does);
5. an exception answered by the app's own handler for it (`app.errors`), else left to the
   edge, as from the route; and what the route's class adds to every answer (a superseded
   version's successor, `app.frontends.versions`).

A route qualifies when nothing else stands between the request and its endpoint, checked
once from the app's routes (`_direct_route`). The FastAPI route stays registered: the OpenAPI
documents are made from it, and whatever this layer passes on (another method, a mount
under a root path, dependency overrides) reaches it.
"""

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, get_type_hints
from urllib.parse import parse_qsl

from fastapi import Request, Response, params
from fastapi._compat import ModelField, Undefined
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import (
    _get_param_aliases,
    _get_param_model,
    _is_json_field,
    _validate_value_with_model_field,
    field_annotation_is_sequence,
    request_params_to_args,
)
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts, serialize_response
from starlette.convertors import Convertor
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.deps import RouteAccess, context_of
from app.security.rbac import AccessRule

ExceptionHandler = Callable[[Request, Exception], Any]


@dataclass(frozen=True, slots=True)
class DirectRoute:
    """What answering one route takes: its template, rule, parameters and endpoint."""

    template: str
    rule: AccessRule
    path: Sequence[ModelField]
    query: Sequence[ModelField]
    endpoint: Callable[..., Awaitable[Any]]
    request_name: str | None
    # The endpoint's parameter that takes the caller (the rule's result), if any.
    principal_name: str | None = None
    # The route's other dependencies, each a coroutine function of the request alone, in
    # FastAPI's order, with the endpoint's parameter each result goes to (None: unused).
    dependencies: Sequence[tuple[str | None, Callable[[Request], Awaitable[Any]]]] = ()
    # The answer from the endpoint's result when it is not a `Response` (a response model's
    # serialization, as FastAPI serializes it); None: the endpoint returns a `Response`.
    serialize: Callable[[Any], Awaitable[Response]] | None = None
    # What the route's class adds to every answer, a problem's too (`finish`).
    finish: Callable[[Request, Response], None] | None = None
    # A template's pattern and its parameters' convertors (None for a literal path), and the
    # patterns of routes before it that might take a GET of one of its paths.
    pattern: re.Pattern[str] | None = None
    convertors: Mapping[str, Convertor[Any]] = field(default_factory=dict)
    earlier: Sequence[re.Pattern[str]] = ()

    # How its parameters are read, worked out once (None: by `request_params_to_args`).
    path_readers: "tuple[ParamReader, ...] | None" = None
    query_readers: "tuple[ParamReader, ...] | None" = None

    def path_params(self, path: str) -> dict[str, Any] | None:
        """The template's parameters in `path`, or None when the router would not give a GET
        of `path` to this route."""
        assert self.pattern is not None
        matched = self.pattern.match(path)
        if matched is None or any(pattern.match(path) for pattern in self.earlier):
            return None
        return {
            name: self.convertors[name].convert(value)
            for name, value in matched.groupdict().items()
        }

    async def answer(self, request: Request, path_params: Mapping[str, Any]) -> Response:
        context = context_of(request)
        context.route = self.template
        outcome = await request.scope["state"]["gateway"].chain.run(context, self.rule)
        resolved = {} if self.principal_name is None else {self.principal_name: outcome.principal}
        for name, dependency in self.dependencies:
            result = await dependency(request)
            if name is not None:
                resolved[name] = result
        values, errors = _read(self.path, self.path_readers, path_params)
        query: Mapping[str, Any]
        if not self.query:
            query = {}
        elif self.query_readers is None:
            query = request.query_params
        else:
            # What `QueryParams.get` would find (the last value of a name), without the
            # multi-dict a plain reader has no use for.
            query = dict(
                parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True)
            )
        query_values, query_errors = _read(self.query, self.query_readers, query)
        values.update(query_values)
        errors += query_errors
        if errors:
            raise RequestValidationError(errors)
        if self.request_name is not None:
            values[self.request_name] = request
        values.update(resolved)
        result = await self.endpoint(**values)
        if self.serialize is None or isinstance(result, Response):
            return result
        return await self.serialize(result)


@dataclass(frozen=True, slots=True)
class ParamReader:
    """One plain parameter (one value, one name, no model, no JSON) as
    `request_params_to_args` reads it: the value under `key`, absent when missing, validated
    by FastAPI for `field`, errors located at `loc`."""

    field: ModelField
    key: str
    loc: tuple[str, str]


def param_readers(fields: Sequence[ModelField]) -> tuple[ParamReader, ...] | None:
    """Readers for `fields`, when every one is plain (else None)."""
    readers = []
    for model_field in fields:
        if (
            _get_param_model(model_field) is not None
            or _is_json_field(model_field)
            or field_annotation_is_sequence(model_field.field_info.annotation)
        ):
            return None
        info = model_field.field_info
        aliases = _get_param_aliases(model_field)
        if not isinstance(info, params.Param) or len(aliases) != 1:
            return None
        key = aliases[0][1]
        readers.append(ParamReader(model_field, key, (info.in_.value, key)))
    return tuple(readers)


def _read(
    fields: Sequence[ModelField],
    readers: tuple[ParamReader, ...] | None,
    received: Mapping[str, Any],
) -> tuple[dict[str, Any], list[Any]]:
    if readers is None:
        return request_params_to_args(fields, received)
    values: dict[str, Any] = {}
    errors: list[Any] = []
    for reader in readers:
        value = received.get(reader.key)
        valid, found = _validate_value_with_model_field(
            field=reader.field,
            value=Undefined if value is None else value,
            values=values,
            loc=reader.loc,
        )
        if found:
            errors.extend(found)
        else:
            values[reader.field.name] = valid
    return values, errors


class DirectRoutes:
    """ASGI layer in front of FastAPI's routing: a GET of a direct route is answered here,
    everything else goes on to the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Built from the app's routes and exception handlers on first use (the app is
        # complete by then, as Starlette's own middleware stack is built at first call).
        self._literal: dict[str, DirectRoute] | None = None
        self._templates: tuple[DirectRoute, ...] = ()
        self._handlers: ExceptionHandlers | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        gateway = scope["app"]
        literal = self._literal
        if literal is None:
            routes = direct_routes(gateway.routes)
            literal = self._literal = {
                template: route for template, route in routes.items() if route.pattern is None
            }
            self._templates = tuple(route for route in routes.values() if route.pattern)
            self._handlers = ExceptionHandlers(gateway.exception_handlers)
        found = self._route(literal, scope["path"])
        if found is None or getattr(gateway, "dependency_overrides", None):
            await self.app(scope, receive, send)
            return
        route, path_params = found
        request = Request(scope, receive, send)
        try:
            response = await route.answer(request, path_params)
        except Exception as exc:
            assert self._handlers is not None
            handler = self._handlers.for_error(exc)
            if handler is None:
                raise
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
        if route.finish is not None:
            route.finish(request, response)
        await response(scope, receive, send)

    def _route(
        self, literal: dict[str, DirectRoute], path: str
    ) -> tuple[DirectRoute, Mapping[str, Any]] | None:
        route = literal.get(path)
        if route is not None:
            return route, {}
        for template in self._templates:
            path_params = template.path_params(path)
            if path_params is not None:
                return template, path_params
        return None


class ExceptionHandlers:
    """The app's exception handlers, looked up as Starlette's `ExceptionMiddleware` does: an
    `HTTPException` by its status first, then by the exception's classes, nearest first.
    `Exception` itself (and 500) belong to the outermost error middleware, not here."""

    def __init__(self, handlers: dict[Any, ExceptionHandler]) -> None:
        self._by_status = {
            key: handler for key, handler in handlers.items() if isinstance(key, int)
        }
        self._by_class = {
            key: handler
            for key, handler in handlers.items()
            if isinstance(key, type) and key is not Exception
        }
        self._by_status.pop(500, None)

    def for_error(self, exc: Exception) -> ExceptionHandler | None:
        if isinstance(exc, HTTPException) and exc.status_code in self._by_status:
            return self._by_status[exc.status_code]
        for kind in type(exc).__mro__:
            if kind in self._by_class:
                return self._by_class[kind]
        return None


def direct_routes(routes: Sequence[BaseRoute]) -> dict[str, DirectRoute]:
    """The app's routes that qualify, by template, each the route FastAPI's router would
    choose for a GET of its paths: a literal path no route before it takes; a template's
    path is checked against the routes before it that might take it, when it is asked."""
    found: dict[str, DirectRoute] = {}
    earlier: list[RouteContext] = []
    for context in iter_route_contexts(routes):
        direct = _direct_route(context)
        if direct is not None and direct.pattern is None:
            if not any(_takes_get(seen, direct.template) for seen in earlier):
                found[direct.template] = direct
        elif direct is not None:
            before = [seen for seen in earlier if _may_take_get(seen, direct.template)]
            patterns: list[re.Pattern[str] | None] = [
                getattr(seen, "path_regex", None) for seen in before
            ]
            readable = [pattern for pattern in patterns if pattern is not None]
            # A route whose match cannot be read from a pattern might take any path.
            if len(readable) == len(patterns):
                found[direct.template] = replace(direct, earlier=tuple(readable))
        earlier.append(context)
    return found


def _takes_get(context: RouteContext, path: str) -> bool:
    """Whether the router would give a GET of `path` to this route (a route of other
    methods at the path matches only partly, and the router looks further)."""
    path_regex = getattr(context, "path_regex", None)
    methods = context.methods
    # A route whose match cannot be read from a pattern might take the path: assume it does.
    return (path_regex is None or path_regex.match(path) is not None) and (
        not methods or "GET" in methods
    )


def _may_take_get(context: RouteContext, template: str) -> bool:
    """Whether this route might take a GET of a path of `template`: it takes GETs, and the
    literal starts of the two templates (up to their first parameter) do not rule it out."""
    methods = context.methods
    if methods and "GET" not in methods:
        return False
    other = context.path_format or context.path
    if other is None:
        return True
    mine, theirs = template.split("{", 1)[0], other.split("{", 1)[0]
    return mine.startswith(theirs) or theirs.startswith(mine)


def _direct_route(context: RouteContext) -> DirectRoute | None:
    """The direct route for a FastAPI route, if it qualifies:
    - an `APIRoute` for GET, of its own class or of one whose handler is `APIRoute`'s and
      then its `finish` on the answer (`app.frontends.versions`' superseded routes);
    - its first dependency its access rule (`RouteAccess`, which takes the request alone),
      each other one a coroutine function of the request alone (none of them twice: FastAPI
      would call it once), no `yield`;
    - its own parameters path and query parameters, the request and those dependencies;
    - its endpoint a coroutine function that returns a `Response` (sent as it is) or a value
      of its response model, serialized to JSON as FastAPI serializes it (the default
      response class, a 200)."""
    route = context.original_route
    path = context.path_format
    finish: Callable[[Request, Response], None] | None = getattr(route, "finish", None)
    if not isinstance(route, APIRoute) or not path:
        return None
    if type(route) is not APIRoute and finish is None:
        return None
    if "GET" not in (context.methods or ()):
        return None
    dependant: Dependant = context.dependant
    if not dependant.dependencies or not _takes_only(dependant, params=True):
        return None
    access, *others = dependant.dependencies
    if not isinstance(access.call, RouteAccess) or not _takes_only(access, params=False):
        return None
    if not all(_of_the_request_alone(other) for other in others):
        return None
    if len({id(other.call) for other in dependant.dependencies}) != len(dependant.dependencies):
        return None
    endpoint = dependant.call
    if not inspect.iscoroutinefunction(endpoint):
        return None
    serialize = None
    if not _returns_response(endpoint):
        serialize = _serializer(route)
        if serialize is None:
            return None
    template = "{" in path
    return DirectRoute(
        template=path,
        rule=access.call.rule,
        path=list(dependant.path_params),
        query=list(dependant.query_params),
        path_readers=param_readers(dependant.path_params),
        query_readers=param_readers(dependant.query_params),
        endpoint=endpoint,
        request_name=dependant.request_param_name,
        principal_name=access.name,
        dependencies=tuple((other.name, other.call) for other in others),  # type: ignore[misc]
        serialize=serialize,
        finish=finish,
        pattern=context.path_regex if template else None,
        convertors=dict(context.param_convertors) if template else {},
    )


def _of_the_request_alone(dependant: Dependant) -> bool:
    """A dependency that is a coroutine function taking the request, or nothing at all."""
    return (
        inspect.iscoroutinefunction(dependant.call)
        and _takes_only(dependant, params=False)
        and not dependant.dependencies
    )


def _serializer(route: APIRoute) -> Callable[[Any], Awaitable[Response]] | None:
    """The route's answer from a value of its response model, as FastAPI's request handler
    makes it with the default response class: FastAPI's own `serialize_response`, straight
    to JSON bytes. None for a route without a response model, with a response class of its
    own, or with a status other than 200."""
    if (
        route.response_field is None
        or not isinstance(route.response_class, DefaultPlaceholder)
        or route.status_code not in (None, 200)
    ):
        return None
    field = route.response_field

    async def serialize(content: Any) -> Response:
        body = await serialize_response(
            field=field,
            response_content=content,
            include=route.response_model_include,
            exclude=route.response_model_exclude,
            by_alias=route.response_model_by_alias,
            exclude_unset=route.response_model_exclude_unset,
            exclude_defaults=route.response_model_exclude_defaults,
            exclude_none=route.response_model_exclude_none,
            is_coroutine=True,
            dump_json=True,
        )
        return Response(content=body, media_type="application/json")

    return serialize


def _takes_only(dependant: Dependant, *, params: bool) -> bool:
    """Whether `dependant` takes nothing but the request (and, with `params`, path and query
    parameters and its sub-dependencies)."""
    return not (
        dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or (dependant.path_params and not params)
        or (dependant.query_params and not params)
        or (dependant.dependencies and not params)
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
    )


def _returns_response(endpoint: Callable[..., Any]) -> bool:
    returned = get_type_hints(endpoint).get("return")
    return isinstance(returned, type) and issubclass(returned, Response)
