"""One deadline per request, shared by every upstream call the request makes.

The budget is the route's (`resilience.route_deadlines_ms`, longest path prefix wins) or
`resilience.default_deadline_ms`; a client may shorten it, never lengthen it, by sending
`X-Request-Deadline: <milliseconds>` - a relative budget, since clocks differ between hosts;
a malformed value is a 400 problem. The edge (`app.middleware.edge`) starts it.
Each upstream call gets `min(service timeout, time left)` and carries the same header with
the milliseconds left, so the service can give up when the gateway will have.
"""

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from app.errors import BadRequest

DEADLINE_HEADER = "x-request-deadline"
DEADLINE_HEADER_BYTES = DEADLINE_HEADER.encode()
# Deadlines beyond ten minutes are a client's typo, not a plan.
MAX_DEADLINE_MS = 600_000
# int() refuses thousands of digits with a ValueError; no sane deadline needs ten.
_MAX_DIGITS = 9


# What an optional part of a request (a view's news section) may take of its deadline when
# nothing else is configured (`resilience.optional_section_ms`).
DEFAULT_OPTIONAL_S = 0.8


# Not frozen: made for every request, and a frozen dataclass's constructor costs four times
# a plain one's (each field set through `object.__setattr__`). Nothing changes one.
@dataclass(slots=True)
class Deadline:
    expires_at: float
    budget_ms: int
    # The most an optional part of the request waits, well inside the deadline.
    optional_s: float = DEFAULT_OPTIONAL_S

    @classmethod
    def after_ms(cls, ms: int, *, optional_s: float = DEFAULT_OPTIONAL_S) -> "Deadline":
        return cls(expires_at=time.monotonic() + ms / 1000, budget_ms=ms, optional_s=optional_s)

    def remaining_s(self) -> float:
        return self.expires_at - time.monotonic()

    def remaining_ms(self) -> int:
        return max(int(self.remaining_s() * 1000), 0)


deadline_var: ContextVar[Deadline | None] = ContextVar("deadline", default=None)


def current_deadline() -> Deadline | None:
    """The deadline of the request being handled; None outside a request."""
    return deadline_var.get()


@contextmanager
def deadline_scope(ms: int) -> Iterator[Deadline]:
    """Run a block under a deadline of `ms` milliseconds (background jobs, tests)."""
    deadline = Deadline.after_ms(ms)
    token = deadline_var.set(deadline)
    try:
        yield deadline
    finally:
        deadline_var.reset(token)


def route_budget_ms(path: str, *, default_ms: int, route_ms: Mapping[str, int]) -> int:
    """The configured deadline for `path`: the longest matching prefix, else the default."""
    best, budget = -1, default_ms
    for prefix, ms in route_ms.items():
        if path.startswith(prefix) and len(prefix) > best:
            best, budget = len(prefix), ms
    return budget


def client_budget_ms(value: bytes) -> int:
    """The budget the client asks for; BadRequest unless it is 0 to MAX_DEADLINE_MS."""
    asked = value.strip()
    if not asked.isdigit() or len(asked) > _MAX_DIGITS or int(asked) > MAX_DEADLINE_MS:
        raise BadRequest(
            "X-Request-Deadline must be a whole number of milliseconds from 0 to "
            f"{MAX_DEADLINE_MS}, not {value.decode('latin-1')[:40]!r}."
        )
    return int(asked)
