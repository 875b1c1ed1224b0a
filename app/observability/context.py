"""Per-request context that code anywhere in a request may read (request id, deadline)."""

from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


def current_request_id() -> str:
    """The id of the request being handled, or "-" outside a request."""
    return request_id_var.get()
