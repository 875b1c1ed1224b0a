"""The one per-request context: what the policy chain needs to know about a request, and what
it decided.

The edge (`app.middleware.edge`) creates it once per HTTP request; FastAPI routes reach it
through one dependency (`app.deps.request_context`), and entry points outside FastAPI (the
pass-through handler, batch sub-requests, MCP tool calls, stream connects) build or receive
one and hand it to the chain (`app.policy.chain`). No stage leaves anything for another in
the ASGI scope or `request.state`: what one stage tells another is a typed field here.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import Scope

from app.observability.access_log import AccessRecord
from app.security.principal import Principal
from app.traffic.deadline import Deadline
from app.traffic.gcra import RateLimit

# The context's one place in the ASGI scope; only the edge and `app.deps` use it.
CONTEXT_SCOPE_KEY = "gateway.context"


def peer_address(scope: Scope) -> str:
    """The address of the connection's other end."""
    client = scope.get("client")
    return client[0] if client else "unknown"


class RequestHeaders(Headers):
    """The request's headers (Starlette's: read-only, case-insensitive) with a `get` that
    does not raise and catch a `KeyError` for an absent header, as `Mapping.get` does: most
    lookups on the request's way (cookie, authorization, API key, accept) ask for one the
    request does not carry."""

    def get(self, key: str, default: Any = None) -> Any:
        wanted = key.lower().encode("latin-1")
        for name, value in self._list:
            if name == wanted:
                return value.decode("latin-1")
        return default


@dataclass(frozen=True, slots=True)
class Admission:
    """What admission decided for an admitted request: the `RateLimit` headers for its
    response, and how to give back the in-flight slot it holds (None: it holds none)."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    release: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class RouteLimit:
    """A rate limit the matched route declares (a pass-through route): counted under `key`
    per `key_by` (consumer, user, address, or route: once for every caller)."""

    key: str
    key_by: str
    limit: RateLimit


@dataclass(frozen=True, slots=True)
class PolicyOutcome:
    """What the chain returns for a request it lets through."""

    principal: "Principal"
    admission: Admission


@dataclass(slots=True)
class RequestContext:
    method: str
    path: str
    client_address: str
    headers: Headers
    deadline: Deadline
    request_id: str = "-"
    # The matched route's template (e.g. `/web/v1/orders/{order_id}`), once known.
    route: str | None = None
    # The matched route's own rate limits, admitted with the rest (pass-through routes).
    route_limits: tuple[RouteLimit, ...] = ()
    # Set by the chain, each once per request.
    identified: bool = False
    principal: Principal | None = None
    admission: Admission | None = None
    quota_counted: bool = False
    # The request's access record, when the access log is on (set by the edge): its
    # `cache_status`, upstream calls and rate-limit outcome are filled in as it goes.
    access: AccessRecord | None = None
    _cookies: dict[str, str] | None = None

    @classmethod
    def of_scope(
        cls,
        scope: Scope,
        *,
        deadline: Deadline,
        request_id: str,
        client_address: str | None = None,
    ) -> "RequestContext":
        """The context of the request in `scope`; `client_address` when the edge derived it
        from trusted proxies' `X-Forwarded-For`, otherwise the connection's peer."""
        return cls(
            method=scope.get("method", "GET"),
            path=scope["path"],
            client_address=client_address or peer_address(scope),
            headers=RequestHeaders(scope=scope),
            deadline=deadline,
            request_id=request_id,
        )

    @property
    def cookies(self) -> dict[str, str]:
        if self._cookies is None:
            cookie = self.headers.get("cookie")
            self._cookies = cookie_parser(cookie) if cookie else {}
        return self._cookies

    def release(self) -> None:
        """Give back the in-flight slot admission claimed, if any (once)."""
        admission = self.admission
        if admission is not None and admission.release is not None:
            self.admission = Admission(headers=admission.headers)
            admission.release()
