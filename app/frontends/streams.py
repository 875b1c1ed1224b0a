"""Live quote streams for the web and mobile frontends (`app.streams` does the work).

- `GET {web,mobile}/v1/stream/quotes?symbols=`: Server-Sent Events, added to each
  frontend's router (`add_quote_stream`), so its access rule (a signed-in user with `read`)
  runs the policy chain at connect like any of its routes;
- `/web/v1/ws/quotes`: a WebSocket with subscribe/unsubscribe messages. WebSocket routes
  cannot take the frontends' HTTP dependencies, so it is a non-FastAPI entry: it takes the
  `RequestContext` the edge made for the connect (request id, the client's address through
  trusted proxies) and runs the chain itself, and a refusal is answered as an HTTP problem
  before the handshake completes;
- `GET /asyncapi/quotes.json`: the streams' AsyncAPI document (message schemas).

Both connect paths admit the caller (connect attempts count against its rate limits), then
open a stream in the hub within the caps (429 per caller, 503 per process) and give back the
in-flight slot: an open stream is not a request in flight.
"""

from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response
from starlette.websockets import WebSocket

from app.deps import ContextDep, context_of_scope
from app.errors import PROBLEM_MEDIA_TYPE, Forbidden, GatewayError, problem_body, problem_responses
from app.frontends.routing import FrontendRouter
from app.frontends.symbols import SymbolList
from app.observability.request_id import request_id_var
from app.policy.context import RequestContext
from app.security.principal import Principal
from app.security.rbac import user_rule
from app.state import GatewayState
from app.streams.asyncapi import ASYNCAPI_PATH, quotes_document
from app.streams.credentials import StreamCredential
from app.streams.hub import QuoteHub
from app.streams.sse import EVENT_STREAM, EventStreamResponse, last_event_step
from app.streams.subscriber import Subscriber
from app.streams.websocket import serve_socket
from app.traffic.deadline import Deadline

STREAM_RULE = user_rule("read")
SOCKET_PATH = "/web/v1/ws/quotes"
# The connect's own deadline (identify, admit); the stream itself has none.
_CONNECT_DEADLINE_MS = 5_000

_SSE_DESCRIPTION = (
    "`text/event-stream`: first `retry:`, then `event: quote` (`id:` the tick in epoch "
    "seconds, `data:` a StreamQuote) for each symbol as it moves, `event: status` when the "
    "upstream goes `reconnecting` or `live` again or the stream is `closing` (with a reason), "
    "and a `: heartbeat` comment every 15 s. Messages are described in the AsyncAPI document "
    f"at `{ASYNCAPI_PATH}`."
)


def principal_key(principal: Principal) -> str:
    return f"{principal.kind}:{principal.subject}"


async def _open(
    hub: QuoteHub,
    context: RequestContext,
    principal: Principal,
    symbols: list[str],
    since: int | None,
) -> Subscriber:
    subscriber = hub.open(
        StreamCredential.of(context, principal), principal_key=principal_key(principal)
    )
    try:
        await hub.subscribe(subscriber, symbols, since_step=since)
    except BaseException:
        await hub.leave(subscriber)
        raise
    return subscriber


async def stream_quotes(
    request: Request,
    symbols: SymbolList,
    context: ContextDep,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="The last event id seen: resume with the latest quote of each symbol "
            "newer than it",
        ),
    ] = None,
) -> Response:
    """Live quotes for the listed symbols as Server-Sent Events."""
    state: GatewayState = request.state.gateway
    outcome = await state.chain.run(context, STREAM_RULE)
    subscriber = await _open(
        state.streams,
        context,
        outcome.principal,
        symbols.split(","),
        last_event_step(last_event_id),
    )
    context.release()
    return EventStreamResponse(state.streams, subscriber)


def add_quote_stream(router: FrontendRouter) -> None:
    """`GET <prefix>/stream/quotes` on a frontend's router."""
    router.add_api_route(
        "/stream/quotes",
        stream_quotes,
        methods=["GET"],
        status_code=200,
        # Plain `Response` for the documents: the 200 is described as an event stream
        # below, and the problems stay problem+json.
        response_class=Response,
        responses={
            200: {
                "description": _SSE_DESCRIPTION,
                "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
            },
            **problem_responses(429, 503),
        },
    )


router = APIRouter()


@router.get(ASYNCAPI_PATH, include_in_schema=False)
async def asyncapi_document(request: Request) -> JSONResponse:
    """The AsyncAPI document of the quote streams."""
    state: GatewayState = request.state.gateway
    return JSONResponse(quotes_document(cookie_name=state.settings.identity.cookie_name))


@router.websocket(SOCKET_PATH)
async def quote_socket(websocket: WebSocket) -> None:
    """Live quotes over a WebSocket: subscribe and unsubscribe messages in, quotes out."""
    state: GatewayState = websocket.state.gateway
    # The edge named the connect and its client (trusted proxies' X-Forwarded-For); the
    # connect itself has a short deadline of its own.
    context = context_of_scope(websocket.scope)
    context.deadline = Deadline.after_ms(_CONNECT_DEADLINE_MS)
    token = request_id_var.set(context.request_id)
    context.route = SOCKET_PATH
    try:
        try:
            outcome = await state.chain.run(context, STREAM_RULE)
            _check_origin(websocket, outcome.principal, state)
            subscriber = await _open(state.streams, context, outcome.principal, [], None)
        except GatewayError as error:
            await websocket.send_denial_response(_problem(error, websocket))
            return
        finally:
            context.release()
        await websocket.accept()
        await serve_socket(websocket, state.streams, subscriber)
    finally:
        request_id_var.reset(token)


def _check_origin(websocket: WebSocket, principal: Principal, state: GatewayState) -> None:
    """A browser sends the session cookie with any site's WebSocket: with the cookie as the
    credential the socket must come from this host or an allowed CORS origin."""
    origin = websocket.headers.get("origin")
    if principal.credential != "session" or origin is None:
        return
    allowed = {str(o).rstrip("/") for o in state.settings.http.cors_origins}
    if urlsplit(origin).netloc == websocket.headers.get("host") or origin.rstrip("/") in allowed:
        return
    raise Forbidden("A WebSocket authenticated by the session cookie must come from this site.")


def _problem(error: GatewayError, websocket: WebSocket) -> Response:
    headers: dict[str, Any] = dict(error.headers)
    return Response(
        problem_body(error, instance=websocket.url.path),
        status_code=error.status,
        headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )
