"""One request to the gateway's own ASGI app, in process.

The request enters where a request from the network does, at the outermost middleware, so
it passes the edge (request id, deadline, in-flight cap, access log, response headers), the
route's access rule (the policy chain: identity, rate limits, in-flight caps, authorization,
quota) and the handler, exactly as the same HTTP call would, and counts against the same
limits. It keeps the connection facts of the request it is made for (client address, server,
scheme, the lifespan state), so the edge derives the same client address from them.
"""

import asyncio
from dataclasses import dataclass
from urllib.parse import unquote

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Scope


@dataclass(frozen=True, slots=True)
class InProcessAnswer:
    status: int
    headers: Headers
    body: bytes


async def call_in_process(
    app: ASGIApp,
    *,
    parent: Scope,
    method: str,
    raw_path: str,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> InProcessAnswer:
    """Run `method raw_path?query` through `app` for the request in `parent`; its answer,
    read whole (the partner API's answers are bounded)."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": parent.get("http_version", "1.1"),
        "method": method,
        "scheme": parent.get("scheme", "http"),
        "path": unquote(raw_path),
        "raw_path": raw_path.encode(),
        "root_path": parent.get("root_path", ""),
        "query_string": query,
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
        "client": parent.get("client"),
        "server": parent.get("server"),
        # The lifespan state, as the server hands every request a shallow copy of it.
        "state": dict(parent.get("state", {})),
    }
    answered = asyncio.Event()
    delivered = False
    status = 500
    response_headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        # Nothing more to read: a handler listening for a disconnect hears of one once the
        # answer is complete.
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, response_headers
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers = list(message.get("headers", ()))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                answered.set()

    try:
        await app(scope, receive, send)
    finally:
        answered.set()
    return InProcessAnswer(
        status=status, headers=Headers(raw=response_headers), body=b"".join(chunks)
    )
