"""The lean request path of pass-through routes: a plain ASGI handler, no FastAPI routing or
dependency solving.

The edge (`app.middleware.edge`) hands it every request under the pass-through prefix
(`passthrough.prefix`, default `/api/`), with the request's context. Per request: check the
path (`app.passthrough.proxy`), match a route of the snapshot the request started on
(`app.passthrough.matcher`), record its template on the context (access log, metrics), run
the one policy chain (identify, admit with the route's own limits, authorize, quota), check
the query and body against the route's schemas (422, nothing forwarded), apply the request
transforms, and stream to the service through the resilient caller; the response streams
back through the response transforms, or comes from the response cache for a cached route.
A `GatewayError` on the way is answered as problem+json by the edge; once the upstream
answered, its status and body are the client's, 4xx and 5xx alike.
"""

from collections.abc import AsyncIterable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import orjson
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from app.cache.policy import CacheRequest, OriginResponse
from app.deps import context_of_scope
from app.errors import Forbidden, NotFound, UpstreamError
from app.frontends.formats import CSV_MEDIA_TYPE, ListFormat, encode_csv, negotiate
from app.passthrough.compiled import CompiledRoute, CompiledRoutes, RouteCompiler
from app.passthrough.matcher import MatchedPath
from app.passthrough.openapi import routes_document
from app.passthrough.proxy import (
    MethodNotAllowed,
    RawHeaders,
    checked_segments,
    forwarded_headers,
    read_body,
    request_body,
    returned_headers,
    rewrite_location,
    upstream_path,
)
from app.policy.context import RequestContext
from app.settings import Settings
from app.state import GatewayState
from app.upstreams.caller import UpstreamResponse

_JSON_TYPES = (b"application/json", b"application/problem+json")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
_CACHED_METHODS = frozenset({"GET", "HEAD"})


def _is_json(headers: RawHeaders) -> bool:
    for name, value in headers:
        if name == b"content-type":
            media = value.partition(b";")[0].strip().lower()
            return media in _JSON_TYPES or media.endswith(b"+json")
    return False


class PassthroughHandler:
    """Serves the config-driven routes under the pass-through prefix."""

    def __init__(self, settings: Settings) -> None:
        passthrough = settings.passthrough
        self.prefix = passthrough.prefix
        self.document_path = self.prefix + "openapi.json"
        self.max_body_bytes = passthrough.max_body_bytes
        self.max_json_body_bytes = passthrough.max_json_body_bytes
        self.via = f"1.1 {passthrough.via}".encode()
        self.compiler = RouteCompiler(prefix=self.prefix)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: GatewayState = scope["state"]["gateway"]
        context = context_of_scope(scope)
        path: str = scope["path"]
        # The snapshot this request started on, to its end.
        compiled = self.compiler.routes(state.config.current)
        if path == self.document_path and context.method in {"GET", "HEAD"}:
            await self._document(send, compiled.routes.values())
            return
        relative = path[len(self.prefix) - 1 :]
        checked_segments(relative, scope.get("raw_path"))
        headers = context.headers
        matched, allowed = compiled.table.match(
            method=context.method, path=relative, host=headers.get("host", ""), headers=headers
        )
        if matched is None:
            if allowed:
                raise MethodNotAllowed(
                    f"{context.method} is not allowed here.",
                    headers={"Allow": ", ".join(sorted(allowed))},
                )
            raise NotFound(f"No route answers {path}.")
        route = compiled.routes[matched.route.route_id]
        context.route = route.template
        context.route_limits = route.limits
        await self._authorize(state, context, route)
        # A list route answers JSON or CSV; an Accept it cannot serve is a 406 before anything
        # is forwarded.
        wants_csv = (
            route.declaration.list_rows is not None
            and negotiate(headers.get("accept")) is ListFormat.csv
        )

        query = scope.get("query_string", b"").decode("latin-1")
        if route.validation is not None or route.request_query is not None:
            pairs = parse_qsl(query, keep_blank_values=True)
            if route.validation is not None:
                route.validation.check_query(pairs)
            if route.request_query is not None:
                query = urlencode(route.request_query.apply(pairs), quote_via=quote)

        first = await receive()
        if first["type"] == "http.disconnect":
            return
        chunk: bytes = first.get("body", b"")
        more: bool = first.get("more_body", False)
        body: bytes | AsyncIterable[bytes] | None
        if route.reads_request_body:
            body = await read_body(receive, chunk, more, limit=self.max_json_body_bytes)
            if route.validation is not None:
                route.validation.check_body(body)
            if route.request_body is not None and body:
                body = route.request_body.apply_bytes(body) or body
        elif more:
            body = request_body(receive, chunk)
        else:
            body = chunk
        if isinstance(body, bytes) and not body and context.method in _BODYLESS:
            body = None

        outgoing = forwarded_headers(
            scope["headers"], peer=_peer(scope), scheme=scope.get("scheme", "http"), via=self.via
        )
        if isinstance(body, bytes):
            outgoing["content-length"] = str(len(body))
        elif body is not None and "content-length" in headers:
            outgoing["content-length"] = headers["content-length"]
        if route.request_headers is not None:
            raw = route.request_headers.apply(
                [(k.encode("latin-1"), v.encode("latin-1")) for k, v in outgoing.items()]
            )
            outgoing = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}
        if route.response_body is not None or wants_csv:
            # The body is mapped here: it has to arrive uncompressed.
            outgoing.pop("accept-encoding", None)
        if wants_csv:
            outgoing["accept"] = "application/json"
        target = route.upstream_target or upstream_path(
            route.declaration, parameters=matched.parameters, rest=matched.rest, path=relative
        )
        if query:
            target += "?" + query

        if route.cache_policy is not None and context.method in _CACHED_METHODS and body is None:
            await self._cached(
                state, scope, send, context, route, matched, target, outgoing, wants_csv=wants_csv
            )
            return
        response = await self._call(state, route, context.method, target, body, outgoing)
        if context.method not in _CACHED_METHODS and self._caches_gets(compiled, relative, headers):
            # RFC 9111 section 4.4: a successful unsafe method makes the URL's stored GETs stale.
            await state.cache.invalidate_after_unsafe(
                CacheRequest(
                    method=context.method,
                    path=path,
                    query=scope.get("query_string", b"").decode("latin-1"),
                    headers={},
                ),
                status=response.status,
            )
        try:
            await self._relay(state, scope, send, route, matched, response, wants_csv=wants_csv)
        finally:
            response.release()

    @staticmethod
    def _caches_gets(compiled: CompiledRoutes, relative: str, headers: Headers) -> bool:
        """Whether the route answering GET on this path keeps a cache."""
        matched, _ = compiled.table.match(
            method="GET", path=relative, host=headers.get("host", ""), headers=headers
        )
        return (
            matched is not None and compiled.routes[matched.route.route_id].cache_policy is not None
        )

    async def _authorize(
        self, state: GatewayState, context: RequestContext, route: CompiledRoute
    ) -> None:
        if route.rule is None:
            await state.chain.admit(context)
            return
        outcome = await state.chain.run(context, route.rule)
        if route.roles and not route.roles <= outcome.principal.roles:
            missing = sorted(route.roles - outcome.principal.roles)
            raise Forbidden(
                f"The caller lacks the role(s) this route needs: {', '.join(missing)}.",
                extra={"missing_roles": missing},
            )

    async def _call(
        self,
        state: GatewayState,
        route: CompiledRoute,
        method: str,
        target: str,
        body: bytes | AsyncIterable[bytes] | None,
        headers: dict[str, str],
    ) -> UpstreamResponse:
        declaration = route.declaration
        return await state.caller.stream(
            declaration.upstream.service,
            method,
            target,
            body=body,
            headers=headers,
            timeout_s=declaration.timeout_ms / 1000 if declaration.timeout_ms else None,
            attempts=declaration.retries + 1 if declaration.retries is not None else None,
        )

    def _response_headers(
        self,
        state: GatewayState,
        scope: Scope,
        route: CompiledRoute,
        matched: MatchedPath,
        response: UpstreamResponse,
        *,
        keep_length: bool,
    ) -> RawHeaders:
        assert response.stream is not None
        headers = returned_headers(
            response.stream.raw_headers, via=self.via, keep_length=keep_length
        )
        if response.status in _REDIRECTS:
            headers = [
                (name, self._location(state, scope, route, value) if name == b"location" else value)
                for name, value in headers
            ]
        if route.response_headers is not None:
            headers = route.response_headers.apply(headers)
        return headers

    def _location(
        self, state: GatewayState, scope: Scope, route: CompiledRoute, value: bytes
    ) -> bytes:
        declaration = route.declaration
        match = declaration.match
        instances = [i.url for i in state.registry.routable(declaration.upstream.service)]
        host = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
        public_base = upstream_base = None
        if match.path_prefix is not None:
            public_base = self.prefix.rstrip("/") + match.path_prefix.rstrip("/")
            upstream_base = declaration.upstream.path or match.path_prefix
        elif "{" not in (match.path or "{"):
            public_base = self.prefix.rstrip("/") + (match.path or "")
            upstream_base = declaration.upstream.path or match.path
        return rewrite_location(
            value.decode("latin-1"),
            instances=instances,
            gateway_origin=f"{scope.get('scheme', 'http')}://{host}",
            upstream_base=upstream_base,
            public_base=public_base,
        ).encode("latin-1")

    async def _relay(
        self,
        state: GatewayState,
        scope: Scope,
        send: Send,
        route: CompiledRoute,
        matched: MatchedPath,
        response: UpstreamResponse,
        *,
        wants_csv: bool,
    ) -> None:
        """Send the upstream's answer on: streamed as it arrives, or, for a route that maps
        the JSON body (or answers it as CSV), read whole, mapped and sent."""
        stream = response.stream
        assert stream is not None
        mapped = (route.response_body is not None or wants_csv) and _is_json(
            [(k.lower(), v) for k, v in stream.raw_headers]
        )
        headers = self._response_headers(
            state, scope, route, matched, response, keep_length=not mapped
        )
        if route.declaration.list_rows is not None:
            headers.append((b"vary", b"Accept"))
        if mapped:
            body = await self._read_whole(response)
            if route.response_body is not None:
                body = route.response_body.apply_bytes(body) or body
            if wants_csv and 200 <= response.status < 300:
                headers, body = _as_csv(route, headers, body)
            headers.append((b"content-length", str(len(body)).encode()))
            await send(
                {"type": "http.response.start", "status": response.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": body})
            return
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        # Each chunk as it arrives; the last one says so itself, so a small answer that came
        # in one read is one body message.
        content = stream.content
        chunk = await content.readany()
        while chunk:
            last = content.at_eof()
            await send({"type": "http.response.body", "body": chunk, "more_body": not last})
            if last:
                return
            chunk = await content.readany()
        await send({"type": "http.response.body", "body": b""})

    async def _cached(
        self,
        state: GatewayState,
        scope: Scope,
        send: Send,
        context: RequestContext,
        route: CompiledRoute,
        matched: MatchedPath,
        target: str,
        headers: dict[str, str],
        *,
        wants_csv: bool,
    ) -> None:
        policy = route.cache_policy
        assert policy is not None
        principal = context.principal
        request = CacheRequest(
            method=context.method,
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            # A CSV answer is made from the JSON entry, which has to come uncompressed.
            headers=(
                {k: v for k, v in context.headers.items() if k != "accept-encoding"}
                if wants_csv
                else context.headers
            ),
            principal=principal.subject if principal is not None else None,
            # The route authorized the caller before the lookup: an entry is shared by the
            # callers the route admits (per caller for user routes, see `_cache_policy`).
            credentialed=principal is not None,
        )
        upstream_headers = {
            k: v
            for k, v in headers.items()
            if k not in {"if-none-match", "if-modified-since", "cache-control", "pragma"}
        }

        async def fetch(validators: dict[str, str]) -> OriginResponse:
            response = await self._call(
                state, route, "GET", target, None, {**upstream_headers, **validators}
            )
            try:
                stream = response.stream
                assert stream is not None
                body = await self._read_whole(response)
                returned = self._response_headers(
                    state, scope, route, matched, response, keep_length=False
                )
            finally:
                response.release()
            if route.response_body is not None and _is_json(returned):
                body = route.response_body.apply_bytes(body) or body
            return OriginResponse(
                response.status,
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in returned],
                body,
            )

        answer = await state.cache.serve(request, policy, fetch)
        if context.access is not None:
            context.access.set_cache_status(answer.result)
        out: RawHeaders = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in answer.headers
            if k.lower() != "content-length"
        ]
        body = answer.body
        if route.declaration.list_rows is not None:
            out.append((b"vary", b"Accept"))
        if wants_csv and 200 <= answer.status < 300 and _is_json(out):
            out, body = _as_csv(route, out, body)
        out.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": out})
        await send({"type": "http.response.body", "body": body})

    async def _read_whole(self, response: UpstreamResponse) -> bytes:
        """An answer the route maps, converts or caches, read whole: at most
        `passthrough.max_json_body_bytes`, else a 502 (the gateway cannot do what the route
        declares)."""
        assert response.stream is not None
        limit = self.max_json_body_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.stream.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise UpstreamError(
                    f"{response.service} answered more than the {limit} bytes this route "
                    "reads whole (to map, convert or cache it).",
                    service=response.service,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def _document(self, send: Send, routes: Any) -> None:
        body = orjson.dumps(routes_document(routes, prefix=self.prefix))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _as_csv(route: CompiledRoute, headers: RawHeaders, body: bytes) -> tuple[RawHeaders, bytes]:
    """A list answer's rows as CSV (`app.frontends.formats`); a body without a list where the
    route says its rows are is sent as it is."""
    try:
        document: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return headers, body
    rows_at = route.declaration.list_rows or ""
    for name in rows_at.split(".") if rows_at else ():
        document = document.get(name) if isinstance(document, dict) else None
    if not isinstance(document, list) or not all(isinstance(row, dict) for row in document):
        return headers, body
    kept = [(k, v) for k, v in headers if k not in {b"content-type", b"etag", b"content-encoding"}]
    kept.append((b"content-type", CSV_MEDIA_TYPE.encode()))
    return kept, encode_csv(document)


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"
