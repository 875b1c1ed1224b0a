"""The MCP endpoint: `/mcp` over Streamable HTTP, the partner API's operations as tools.

Built on the official SDK's low-level `Server` and its `StreamableHTTPSessionManager`, run in
the gateway's lifespan (`McpFrontend.running`). Stateless: every POST stands alone (no
session kept in a process), so any worker process can answer any request, and the SDK's
Host/Origin allow-list (DNS rebinding protection) comes from `settings.mcp`.

Who may call: every request to `/mcp` carries a partner credential (API key or a linked
client's client-credentials token), identified by the policy chain as for `/auth/whoami`
(an API key confirmed not revoked); without one it is a 401 problem before the SDK sees it.
`tools/list` lists the tools whose scopes the caller holds.

A tool call is the partner HTTP call it stands for, made in process through the gateway's
own app (`gateway_call`) with the caller's credential: the edge, the route's access rule
(rate limits, in-flight caps, quota, metrics, access log) and the handler run exactly as for
the HTTP call, and count against the same limits. Its JSON body is the tool's structured
content; a problem (422, 401/403, 429, 502/503/504, ...) is a tool error carrying the
problem's type, status, detail and `retry_after_s`, never a transport failure.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import mcp_types as types
import orjson
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.deps import context_of
from app.errors import PROBLEM_BASE, GatewayError, ServiceUnavailable, Unauthorized, problem_body
from app.frontends.mcp.gateway_call import InProcessAnswer, call_in_process
from app.frontends.mcp.tools import ToolCatalogue, ToolOperation, tool_catalogue
from app.security.apikeys import API_KEY_HEADER
from app.security.jwt import confirm_linked_client
from app.security.principal import Principal
from app.security.rbac import PARTNERS, authorize, granted_scopes, partner_rule
from app.settings import McpSettings

MCP_PATH = "/mcp"
SERVER_NAME = "stock-bot"
INSTRUCTIONS = (
    "The stock-bot partner API as tools: quotes, candles, order entry in the partner's linked "
    "accounts, and the caller's plan and usage. Every call counts against the partner's rate "
    "limits and quota like the HTTP call. A failed call is a tool error whose structured "
    "content is an RFC 9457 problem (type, status, detail); on a 429 or 503 wait "
    "`retry_after_s` seconds before trying again. Placing an order needs an `idempotency_key`: "
    "send the same key when retrying, and the first order comes back instead of a second one."
)
# What a tool call's partner request carries over from the MCP request: the credential, and
# what the edge derives the client's address and deadline from.
_FORWARDED_HEADERS = frozenset(
    {
        b"authorization",
        API_KEY_HEADER.lower().encode(),
        b"x-forwarded-for",
        b"x-request-deadline",
        b"user-agent",
        b"host",
    }
)
_JSON_ACCEPT = (b"accept", b"application/json")
# Only for a request without a valid credential, which it refuses after admission.
_PARTNER_CALLER = partner_rule(metered=False)


class McpFrontend:
    """The `/mcp` ASGI endpoint, its SDK server, and the session manager run in the lifespan.

    `gateway` is the gateway's own app (tool calls enter it as partner requests);
    `partner_document` builds the partner API's OpenAPI document the tools are made from,
    once the app's routes are all in place (at start-up).
    """

    def __init__(
        self,
        *,
        gateway: ASGIApp,
        settings: McpSettings,
        partner_document: Callable[[], Mapping[str, Any]],
        max_body_bytes: int,
        version: str,
    ) -> None:
        self._gateway = gateway
        self._settings = settings
        self._partner_document = partner_document
        self._max_body_bytes = max_body_bytes
        self._catalogue = ToolCatalogue([])
        self._sessions: StreamableHTTPSessionManager | None = None
        self.server: Server[Any] = Server(
            SERVER_NAME,
            version=version,
            title="stock-bot partner API",
            instructions=INSTRUCTIONS,
            get_tool_input_schema=self._input_schema,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )

    @property
    def catalogue(self) -> ToolCatalogue:
        return self._catalogue

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Serve `/mcp` for as long as the block runs (the gateway's lifespan)."""
        self._catalogue = tool_catalogue(self._partner_document(), name_prefix="partner_")
        hosts = self._settings.allowed_hosts
        sessions = StreamableHTTPSessionManager(
            app=self.server,
            stateless=True,
            json_response=self._settings.json_response,
            security_settings=TransportSecuritySettings(
                enable_dns_rebinding_protection="*" not in hosts,
                allowed_hosts=list(hosts),
                allowed_origins=list(self._settings.allowed_origins),
            ),
            max_request_body_size=self._max_body_bytes,
        )
        # The SDK's task group lives in a task of its own: a cancel scope must be left by the
        # task that entered it, and a lifespan may be entered and left by different tasks.
        started, stop = asyncio.Event(), asyncio.Event()

        async def host() -> None:
            async with sessions.run():
                self._sessions = sessions
                started.set()
                try:
                    await stop.wait()
                finally:
                    self._sessions = None

        hosting = asyncio.create_task(host(), name="mcp-sessions")
        waiting = asyncio.ensure_future(started.wait())
        await asyncio.wait({hosting, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if not started.is_set():
            waiting.cancel()
            await hosting  # raises what stopped it
        try:
            yield
        finally:
            stop.set()
            await hosting

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sessions = self._sessions
        if sessions is None:
            raise ServiceUnavailable("The MCP endpoint is not running.")
        request = Request(scope)
        context = context_of(request)
        context.route = MCP_PATH
        chain = request.state.gateway.chain
        try:
            principal = await chain.confirmed_principal(context)
        except Unauthorized:
            principal = None
        if principal is None:
            # No credential, or one that failed: the chain counts it against the client
            # address's limits, as a partner route does (guessing keys is rate limited), and
            # answers its 401 (or 429).
            principal = (await chain.run(context, _PARTNER_CALLER)).principal
        confirm_linked_client(authorize(principal, PARTNERS, ()))
        await sessions.handle_request(scope, receive, send)

    def _input_schema(self, name: str) -> dict[str, Any] | None:
        operation = self._catalogue.get(name)
        return operation.tool.input_schema if operation is not None else None

    async def _list_tools(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        granted = granted_scopes(_caller(ctx))
        # Each caller has its own list: never cached for anyone else.
        return types.ListToolsResult(
            tools=self._catalogue.listed_for(granted), ttl_ms=0, cache_scope="private"
        )

    async def _call_tool(
        self, ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        operation = self._catalogue.get(params.name)
        if operation is None:
            # Not a tool error: there is no such tool (JSON-RPC invalid params, as the spec has).
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        # A tool not listed for the caller still runs: its route answers the 403 naming the
        # missing scope, counted as the HTTP call would be.
        request: Request = ctx.request
        context = context_of(request)
        try:
            call = operation.http_call(params.arguments or {})
        except GatewayError as refused:
            problem = orjson.loads(problem_body(refused, instance=operation.path))
            problem["request_id"] = context.request_id
            return _problem_result(problem, retry_after=None)
        record = context.access
        if record is not None:
            record.mcp_tool = operation.tool.name
        answer = await call_in_process(
            self._gateway,
            parent=request.scope,
            method=call.method,
            raw_path=call.raw_path,
            query=call.query,
            headers=_forwarded(request, call.headers, tool=operation.tool.name),
            body=call.body,
        )
        return _tool_result(operation, answer)


def _caller(ctx: Any) -> Principal:
    """The principal the endpoint identified for this MCP request."""
    principal = context_of(ctx.request).principal
    assert principal is not None, "the /mcp endpoint lets no request through unidentified"
    return principal


def _forwarded(
    request: Request, headers: list[tuple[bytes, bytes]], *, tool: str
) -> list[tuple[bytes, bytes]]:
    carried = [
        (name, value) for name, value in request.scope["headers"] if name in _FORWARDED_HEADERS
    ]
    # The partner request's id names the MCP request and the tool, as a batch's sub-requests
    # are named `<batch id>.<index>`: its access log line and answer lead back to both.
    request_id = f"{context_of(request).request_id}.{tool}"[:128]
    return [*carried, (b"x-request-id", request_id.encode()), _JSON_ACCEPT, *headers]


def _tool_result(operation: ToolOperation, answer: InProcessAnswer) -> types.CallToolResult:
    document: Any = None
    if answer.body:
        try:
            document = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            document = None
    if 200 <= answer.status < 300 and isinstance(document, dict):
        meta: dict[str, Any] = {"status": answer.status}
        if answer.headers.get("idempotent-replayed") == "true":
            meta["idempotent_replayed"] = True
        return types.CallToolResult(
            content=[types.TextContent(text=answer.body.decode())],
            structured_content=document,
            _meta={"stock-bot/http": meta},
        )
    if not isinstance(document, dict) or "type" not in document:
        reason = _reason(answer.status)
        document = {
            "type": PROBLEM_BASE + "upstream-answer",
            "title": reason,
            "status": answer.status,
            "detail": f"{operation.method} {operation.path} answered {answer.status} {reason}.",
        }
    return _problem_result(document, retry_after=answer.headers.get("retry-after"))


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _problem_result(problem: dict[str, Any], *, retry_after: str | None) -> types.CallToolResult:
    """A tool error carrying the problem, and how long to wait when the answer said."""
    if retry_after is not None and retry_after.isdigit():
        problem["retry_after_s"] = int(retry_after)
    text = f"{problem.get('status')} {problem.get('title')}: {problem.get('detail')}"
    if "retry_after_s" in problem:
        text += f" Retry after {problem['retry_after_s']} s."
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=problem, is_error=True
    )
