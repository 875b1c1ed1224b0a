"""Start the request's deadline: the route's budget, or less when the client asks for less.

The client's `X-Request-Deadline: <milliseconds>` may shorten the budget, never lengthen it;
a malformed value is a 400 problem. See `app.traffic.deadline`.
"""

from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import BadRequest, problem_body
from app.traffic.deadline import DEADLINE_HEADER, Deadline, deadline_var, route_budget_ms

_HEADER_BYTES = DEADLINE_HEADER.encode()
# Deadlines beyond ten minutes are a client's typo, not a plan.
_MAX_MS = 600_000


class DeadlineMiddleware:
    """Sets the request's deadline; a malformed `X-Request-Deadline` is a 400 problem."""

    def __init__(self, app: ASGIApp, *, default_ms: int, route_ms: Mapping[str, int]) -> None:
        self.app = app
        self.default_ms = default_ms
        self.route_ms = dict(route_ms)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        budget = route_budget_ms(scope["path"], default_ms=self.default_ms, route_ms=self.route_ms)
        for name, value in scope["headers"]:
            if name == _HEADER_BYTES:
                asked = value.strip()
                if not asked.isdigit() or int(asked) > _MAX_MS:
                    await _reject(scope, send, value)
                    return
                budget = min(budget, int(asked))
                break
        token = deadline_var.set(Deadline.after_ms(budget))
        try:
            await self.app(scope, receive, send)
        finally:
            deadline_var.reset(token)


async def _reject(scope: Scope, send: Send, value: bytes) -> None:
    error = BadRequest(
        f"X-Request-Deadline must be a whole number of milliseconds from 0 to {_MAX_MS}, "
        f"not {value.decode('latin-1')[:40]!r}."
    )
    body = problem_body(error, instance=scope["path"])
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
