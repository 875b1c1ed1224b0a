"""One structured access record per request: who asked what, what was answered, how long it
took, and which upstream calls it made.

The edge creates the request's `AccessRecord`, keeps it in a context variable for the
request's code anywhere (the upstream caller adds its calls, the cache its status, admission
its refusal) and on the `RequestContext` (`context.access`), and writes it when the response
is done. Entries outside FastAPI (pass-through routes, streams, batch, MCP) get the edge's
record with the edge's context; they set `context.route` to their route template.

Never logged: the query string, header values, bodies. The principal is named by its subject
(a user id or `consumer:<name>`) and, for an API key, the key's public prefix.
"""

import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass, field

from app.observability.logging import write_access_line

logger = logging.getLogger("gateway.access")

# Cache-Status outcomes (RFC 9211) the record takes, e.g. "hit", "miss", "stale", "bypass".
CacheStatus = str


@dataclass(slots=True)
class UpstreamCall:
    """One logical upstream call, with every try it took."""

    service: str
    method: str
    # The instance of the last try; None when no instance could be tried (circuit open...).
    instance: str | None
    # The last try's status; None when it got none (timeout, connection failure).
    status: int | None
    duration_ms: float
    retries: int
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        entry: dict[str, object] = {
            "service": self.service,
            "method": self.method,
            "instance": self.instance,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "retries": self.retries,
        }
        if self.error is not None:
            entry["error"] = self.error
        return entry


@dataclass(slots=True)
class AccessRecord:
    """What the access log says about one request; filled in as the request goes."""

    request_id: str
    method: str
    path: str
    client: str
    started: float = field(default_factory=time.perf_counter)
    trace_id: str | None = None
    # Set from the route when the request ends (the context's template, else FastAPI's).
    route: str | None = None
    status: int = 500
    bytes_in: int = 0
    bytes_out: int = 0
    # e.g. "admitted", "unlimited", "refused" (then `rate_limit_policy` names the limit).
    rate_limit: str | None = None
    rate_limit_policy: str | None = None
    cache_status: CacheStatus | None = None
    # The MCP tool a `/mcp` request called (`app.frontends.mcp`).
    mcp_tool: str | None = None
    upstream: list[UpstreamCall] = field(default_factory=list)

    def set_cache_status(self, status: CacheStatus) -> None:
        """The response cache's outcome for this request (hit, miss, stale, ...)."""
        self.cache_status = status

    def add_upstream_call(self, call: UpstreamCall) -> None:
        self.upstream.append(call)


access_record_var: ContextVar[AccessRecord | None] = ContextVar("access_record", default=None)


def current_access_record() -> AccessRecord | None:
    """The record of the request being handled, or None outside a request (background
    work) or with the access log and its figures off."""
    return access_record_var.get()


def set_cache_status(status: CacheStatus) -> None:
    """Record the response cache's outcome on the request being handled, if any."""
    record = access_record_var.get()
    if record is not None:
        record.cache_status = status


def record_rate_limit_refusal(policy: str) -> None:
    """Record on the request being handled that `policy` (a limit's name, `in-flight`,
    `quota:daily`...) refused it."""
    record = access_record_var.get()
    if record is not None:
        record.rate_limit = "refused"
        record.rate_limit_policy = policy


def access_logged() -> bool:
    """Whether a request's record would be written (the access logger takes INFO)."""
    return logger.isEnabledFor(logging.INFO)


def frontend_of(path: str) -> str:
    """The frontend a path belongs to, from a fixed set (so it is a bounded label)."""
    first = path[1:].partition("/")[0]
    return first if first in _FRONTENDS else "other"


_FRONTENDS = frozenset({"web", "mobile", "partner", "api", "admin", "auth", "mcp", "metrics"})


def write_access_record(
    record: AccessRecord,
    *,
    principal: str | None,
    key_prefix: str | None,
    duration_s: float,
) -> None:
    """Write `record` as one line (`gateway.access`, message "access", fields in `extra`)."""
    fields: dict[str, object] = {
        "request_id": record.request_id,
        "trace_id": record.trace_id,
        "frontend": frontend_of(record.path),
        "route": record.route,
        "method": record.method,
        "status": record.status,
        "duration_ms": round(duration_s * 1000, 2),
        "bytes_in": record.bytes_in,
        "bytes_out": record.bytes_out,
        "principal": principal,
        "client": record.client,
        "rate_limit": record.rate_limit,
        "cache": record.cache_status,
        "upstream": [call.as_dict() for call in record.upstream],
    }
    if key_prefix is not None:
        fields["key_prefix"] = key_prefix
    if record.mcp_tool is not None:
        fields["mcp_tool"] = record.mcp_tool
    if record.rate_limit_policy is not None:
        fields["rate_limit_policy"] = record.rate_limit_policy
    if record.route is None:
        # No template to name it by (a 404, or answered before routing): the path, without
        # its query, is all there is.
        fields["path"] = record.path
    if not write_access_line(fields):
        logger.info("access", extra={"fields": fields})
