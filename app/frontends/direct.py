"""Direct dispatch of the simplest hot read routes: a FastAPI route's own endpoint, called
without FastAPI's router and dependency solving.

On partner quotes those cost as much as the endpoint itself: the walk through the nested
routers, then two dependants solved (the route and its `RouteAccess`), each with a pass over
every kind of parameter. A route whose whole request handling is "its access rule, its query
parameters, its endpoint" needs none of that. For such a route this layer takes FastAPI's
steps itself, in FastAPI's order and with FastAPI's own parts where they decide an answer:

1. the access rule through the policy chain, the route template recorded on the context
   first (the edge's access record, metrics and span name it as they would);
2. the query parameters through FastAPI's `request_params_to_args`, the same values and
   the same errors (a 422 problem naming `query.<name>`, after the rule, as FastAPI does);
3. the endpoint, whose `Response` is sent as it is;
4. an exception answered by the app's own handler for it (`app.errors`), else left to the
   edge, as from the route.

A route qualifies when nothing else stands between the request and its endpoint, checked
once from the app's routes (`_direct_route`). The FastAPI route stays registered: the OpenAPI
documents are made from it, and whatever this layer passes on (another method, a mount
under a root path, dependency overrides) reaches it.
"""

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, get_type_hints

from fastapi import Request, Response
from fastapi._compat import ModelField
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.deps import RouteAccess, context_of
from app.security.rbac import AccessRule

ExceptionHandler = Callable[[Request, Exception], Any]


@dataclass(frozen=True, slots=True)
class DirectRoute:
    """What answering one route takes: its template, rule, query fields and endpoint."""

    template: str
    rule: AccessRule
    query: Sequence[ModelField]
    endpoint: Callable[..., Awaitable[Response]]
    request_name: str | None

    async def answer(self, request: Request) -> Response:
        context = context_of(request)
        context.route = self.template
        await request.scope["state"]["gateway"].chain.run(context, self.rule)
        values, errors = request_params_to_args(self.query, request.query_params)
        if errors:
            raise RequestValidationError(errors)
        if self.request_name is not None:
            values[self.request_name] = request
        return await self.endpoint(**values)


class DirectRoutes:
    """ASGI layer in front of FastAPI's routing: a GET of a direct route is answered here,
    everything else goes on to the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Built from the app's routes and exception handlers on first use (the app is
        # complete by then, as Starlette's own middleware stack is built at first call).
        self._routes: dict[str, DirectRoute] | None = None
        self._handlers: ExceptionHandlers | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        gateway = scope["app"]
        routes = self._routes
        if routes is None:
            routes = self._routes = direct_routes(gateway.routes)
            self._handlers = ExceptionHandlers(gateway.exception_handlers)
        route = routes.get(scope["path"])
        if route is None or getattr(gateway, "dependency_overrides", None):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await route.answer(request)
        except Exception as exc:
            assert self._handlers is not None
            handler = self._handlers.for_error(exc)
            if handler is None:
                raise
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
        await response(scope, receive, send)


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
    """The app's routes that qualify, by path, each the route FastAPI's router would choose
    for a GET of its path: no route before it takes that GET."""
    found: dict[str, DirectRoute] = {}
    earlier: list[RouteContext] = []
    for context in iter_route_contexts(routes):
        direct = _direct_route(context)
        if direct is not None and not any(_takes_get(seen, direct.template) for seen in earlier):
            found[direct.template] = direct
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


def _direct_route(context: RouteContext) -> DirectRoute | None:
    """The direct route for a FastAPI route, if it qualifies: a plain `APIRoute` for GET at a
    path without parameters; its one dependency its access rule (`RouteAccess`, which takes
    the request alone); its own parameters query parameters and the request; its endpoint a
    coroutine function declared to return a `Response` (sent as it is, no response model)."""
    route = context.original_route
    path = context.path
    if type(route) is not APIRoute or path is None or "{" in path:
        return None
    if "GET" not in (context.methods or ()):
        return None
    dependant: Dependant = context.dependant
    if len(dependant.dependencies) != 1 or not _takes_only(dependant, query=True):
        return None
    access = dependant.dependencies[0]
    if not isinstance(access.call, RouteAccess) or not _takes_only(access, query=False):
        return None
    endpoint = dependant.call
    if not inspect.iscoroutinefunction(endpoint) or not _returns_response(endpoint):
        return None
    return DirectRoute(
        template=path,
        rule=access.call.rule,
        query=list(dependant.query_params),
        endpoint=endpoint,
        request_name=dependant.request_param_name,
    )


def _takes_only(dependant: Dependant, *, query: bool) -> bool:
    """Whether `dependant` takes nothing but the request (and, with `query`, query
    parameters), besides its sub-dependencies."""
    return not (
        dependant.path_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or (dependant.query_params and not query)
        or (dependant.dependencies and not query)
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
    )


def _returns_response(endpoint: Callable[..., Any]) -> bool:
    returned = get_type_hints(endpoint).get("return")
    return isinstance(returned, type) and issubclass(returned, Response)
