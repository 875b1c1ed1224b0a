"""Request ids: the client's `X-Request-ID` when it sent a sane one, otherwise a new one;
and the id of the request being handled, for code anywhere in it (logs, upstream calls)."""

import os
import re
from contextvars import ContextVar

REQUEST_ID_HEADER = b"x-request-id"
_SANE_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


def current_request_id() -> str:
    """The id of the request being handled, or "-" outside a request."""
    return request_id_var.get()


def request_id_for(sent: bytes | None) -> str:
    """The id the client sent when it is sane, otherwise a new one."""
    if sent is not None and _SANE_ID.match(sent):
        return sent.decode()
    # 128 random bits as hex, like uuid4().hex without building a UUID (~6x cheaper).
    return os.urandom(16).hex()
