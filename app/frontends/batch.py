"""Request batching: several of a frontend's calls in one round trip (`POST /web/v1/batch`).

Each sub-request is dispatched in process as an HTTP request of its own into the gateway's
whole app, edge included, so it runs exactly as if it had come over the wire: request id,
deadline, the in-flight cap and the access log line at the edge; the route's policy chain
(its own rate-limit, in-flight and quota accounting), validation, caching and, for an order,
the idempotency ledger (its `Idempotency-Key` is required as on the order route). It carries
the batch's credentials (`Authorization`, the session cookie and its CSRF token, `X-API-Key`)
and never its own. At most `batch.concurrency` run at once, each within what is left of the
batch's deadline. Each answer is listed in order with its status, headers and body; one
failing sub-request fails nothing else.

Only the frontend's own GET routes and order entry can be batched. A batch holding anything
else (the admin API, login, documents, streams, another batch, too many sub-requests) is
refused as a whole with a 422 naming the sub-request, before any of them runs.
"""

import asyncio
import json
import re
from collections.abc import Sequence
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.config import JsonDict
from starlette.types import ASGIApp

from app.errors import GatewayError, InvalidRequest, problem_body, problem_responses
from app.frontends.mcp.gateway_call import call_in_process
from app.observability.request_id import request_id_var
from app.settings import Settings
from app.traffic.deadline import DEADLINE_HEADER, current_deadline

# A path (no percent-encoding, no dot segments: what is checked is what is served) and an
# optional query string.
_PATH_PATTERN = r"^/[A-Za-z0-9._~:@!$&'()*+,;=/-]*(\?[^\s#]*)?$"
# The credentials and client facts of the batch, which every sub-request carries instead of
# its own.
INHERITED_HEADERS = frozenset(
    {"authorization", "cookie", "x-api-key", "x-csrf-token", "x-forwarded-for", "user-agent"}
)
# Set by the batch for each sub-request, or meaningless inside one.
_DROPPED_HEADERS = INHERITED_HEADERS | {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "accept-encoding",
    "forwarded",
    "x-request-id",
    "content-type",
    DEADLINE_HEADER,
}
# Headers every answer carries alike; a sub-response does not repeat them.
_OMITTED_RESPONSE_HEADERS = frozenset(
    {
        "content-length",
        "vary",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "strict-transport-security",
    }
)
# Paths under a frontend's prefix that a batch cannot reach: documents, streams, batches.
_UNBATCHABLE = re.compile(r"^/[^/]+/[^/]+/(batch|openapi\.json|stream|ws)(/|$)")
# The one POST a batch carries: order entry.
_BATCHABLE_POSTS = ("/orders",)

_SUB_REQUEST_EXAMPLE: JsonDict = {
    "method": "POST",
    "path": "/web/v1/orders",
    "headers": {"Idempotency-Key": "3f1c2a9e-order-1"},
    "body": {"symbol": "AAPL", "side": "buy", "type": "limit", "quantity": 1, "limit_price": 150},
}


class SubRequest(BaseModel):
    """One call inside a batch."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [_SUB_REQUEST_EXAMPLE]}
    )

    method: Literal["GET", "POST"] = Field(description="GET any read route; POST order entry")
    path: str = Field(
        max_length=2048,
        pattern=_PATH_PATTERN,
        description=(
            "The route's path with its query string, under this frontend's prefixes "
            "(e.g. `/web/v1/symbols/AAPL?range=5d`)"
        ),
        examples=["/web/v2/orders?status=open"],
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        max_length=32,
        description=(
            "The sub-request's own headers (e.g. `Idempotency-Key`, `If-None-Match`); "
            "credentials are the batch's, any sent here are ignored"
        ),
    )
    body: JsonValue = Field(None, description="The JSON body of a POST; null for a GET")


class BatchRequest(BaseModel):
    """The sub-requests of a batch, answered in this order."""

    model_config = ConfigDict(extra="forbid")

    requests: list[SubRequest] = Field(
        min_length=1, description="At most `batch.max_requests` (20 by default)"
    )


_SUB_RESPONSE_EXAMPLE: JsonDict = {
    "status": 201,
    "headers": {"content-type": "application/json", "x-request-id": "9b2c0f-1"},
    "body": {"order_id": "ord_3f9a1c2b7d4e", "status": "open"},
}


class SubResponse(BaseModel):
    """The answer to one sub-request, as the route would have given it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_SUB_RESPONSE_EXAMPLE]})

    status: int = Field(description="Its HTTP status (a 4xx or 5xx body is a problem)")
    headers: dict[str, str] = Field(
        description=(
            "Its headers (lower-case names), e.g. `content-type`, `ratelimit`, "
            "`retry-after`, `idempotent-replayed`, `x-request-id`"
        )
    )
    body: JsonValue = Field(description="Its JSON body; a string for any other content")


class BatchResponse(BaseModel):
    """Every sub-request's answer, in the order they were asked."""

    responses: list[SubResponse] = Field(description="One per sub-request, in order")


def _refused(index: int, field: str, message: str) -> InvalidRequest:
    where = f"body.requests.{index}.{field}" if field else "body.requests"
    return InvalidRequest(
        f"{where}: {message}", extra={"errors": [{"field": where, "message": message}]}
    )


def check_batch(batch: BatchRequest, *, prefixes: Sequence[str], max_requests: int) -> None:
    """422 naming the first sub-request a batch cannot carry, or the batch's size."""
    if len(batch.requests) > max_requests:
        raise _refused(
            0, "", f"at most {max_requests} sub-requests per batch, not {len(batch.requests)}"
        )
    allowed = ", ".join(f"{prefix}/..." for prefix in prefixes)
    for index, sub in enumerate(batch.requests):
        path = sub.path.partition("?")[0]
        segments = path.split("/")[1:]
        if not any(path.startswith(prefix + "/") for prefix in prefixes) or any(
            segment in ("", ".", "..") for segment in segments
        ):
            raise _refused(index, "path", f"only this frontend's routes ({allowed}) can be batched")
        if _UNBATCHABLE.match(path):
            raise _refused(index, "path", "documents, streams and batches cannot be batched")
        if sub.method == "POST":
            if not path.endswith(_BATCHABLE_POSTS) or path.count("/") != 3:
                raise _refused(index, "method", "POST is for order entry (`.../orders`) only")
        elif sub.body is not None:
            raise _refused(index, "body", "a GET has no body")


def _own_headers(sub: SubRequest) -> list[tuple[bytes, bytes]]:
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in sub.headers.items()
        if name.lower() not in _DROPPED_HEADERS
    ]


def _response_headers(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name_bytes, value_bytes in raw:
        name = name_bytes.decode("latin-1").lower()
        if name in _OMITTED_RESPONSE_HEADERS:
            continue
        value = value_bytes.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _decoded_body(body: bytes, content_type: str) -> JsonValue:
    if not body:
        return None
    if "json" in content_type:
        try:
            decoded: JsonValue = json.loads(body)
            return decoded
        except ValueError:
            pass
    return body.decode("utf-8", errors="replace")


class _Unstarted(GatewayError):
    status, slug, title = 504, "batch-deadline", "Not run before the batch's deadline"


def _problem_answer(error: GatewayError, *, path: str) -> SubResponse:
    return SubResponse(
        status=error.status,
        headers={"content-type": "application/problem+json"},
        body=json.loads(problem_body(error, instance=path)),
    )


async def run_batch(
    request: Request, batch: BatchRequest, *, prefixes: Sequence[str]
) -> BatchResponse:
    """Check the batch, then run its sub-requests, at most `batch.concurrency` at once."""
    settings: Settings = request.state.gateway.settings
    check_batch(batch, prefixes=prefixes, max_requests=settings.batch.max_requests)
    deadline = current_deadline()
    limit = asyncio.Semaphore(settings.batch.concurrency)
    inherited = [
        (name, value)
        for name, value in request.scope["headers"]
        if name.decode("latin-1") in INHERITED_HEADERS
    ]
    batch_id = request_id_var.get()
    app: ASGIApp = request.app

    async def one(index: int, sub: SubRequest) -> SubResponse:
        remaining_s = deadline.remaining_s() if deadline is not None else 30.0
        try:
            async with asyncio.timeout(remaining_s):
                await limit.acquire()
        except TimeoutError:
            return _problem_answer(
                _Unstarted("The batch's deadline passed before this sub-request could start."),
                path=sub.path,
            )
        try:
            left_ms = deadline.remaining_ms() if deadline is not None else 30_000
            extra = [(DEADLINE_HEADER.encode(), str(left_ms).encode())]
            if batch_id:
                # The sub-request's id names its batch, in its answer and the access log.
                extra.append((b"x-request-id", f"{batch_id}.{index}".encode()[:128]))
            body = b"" if sub.body is None else json.dumps(sub.body).encode()
            if sub.body is not None:
                extra.append((b"content-type", b"application/json"))
            path, _, query = sub.path.partition("?")
            answer = await call_in_process(
                app,
                parent=request.scope,
                method=sub.method,
                raw_path=path,
                query=query.encode(),
                headers=[*_own_headers(sub), *inherited, *extra],
                body=body,
            )
            headers = _response_headers(answer.headers.raw)
            return SubResponse(
                status=answer.status,
                headers=headers,
                body=_decoded_body(answer.body, headers.get("content-type", "")),
            )
        finally:
            limit.release()

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(index, sub)) for index, sub in enumerate(batch.requests)]
    return BatchResponse(responses=[task.result() for task in tasks])


def add_batch_route(router: APIRouter, *, reach: Sequence[str]) -> None:
    """`POST <prefix>/batch` on a frontend's router; its sub-requests may reach the routes
    under the prefixes in `reach` (e.g. `/web/v1`, `/web/v2`)."""

    async def batch(request: Request, requests: BatchRequest) -> BatchResponse:
        """Several GET calls and orders in one round trip, each run as a request of its own."""
        return await run_batch(request, requests, prefixes=reach)

    router.add_api_route(
        "/batch",
        batch,
        methods=["POST"],
        response_model=BatchResponse,
        responses=problem_responses(422),
        name="batch",
    )
