"""Request collapsing: identical concurrent upstream reads share one call.

When a burst of requests asks the same service for the same thing (the dashboard's quotes
for a popular symbol), the first becomes the leader and makes the call; the others wait for
its answer and get the same bytes. The key holds everything that can change the answer,
including the headers sent upstream, so calls made on behalf of different callers (whose
account or credentials travel in headers) never share a result.

A shared call is one call wherever calls are counted (the breaker, the retry budget), and its
outcome reaches every waiter at the same moment: N waiters are held once, for that call, and
none of them tries again on its own. The caller collapses only while the service has a closed
circuit: a half-open circuit's probe is one request, which nobody else queues behind.
"""

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")

# Headers that differ per request without changing the answer.
_IGNORED_HEADERS = frozenset({"x-request-id", "x-request-deadline", "traceparent", "tracestate"})


def collapse_key(
    service: str,
    path: str,
    *,
    params: Mapping[str, str] | None,
    headers: Mapping[str, str],
) -> Hashable:
    """What two GETs must share to be answered by one call."""
    return (
        service,
        path,
        tuple(sorted((params or {}).items())),
        tuple(
            sorted(
                (name.lower(), value)
                for name, value in headers.items()
                if name.lower() not in _IGNORED_HEADERS
            )
        ),
    )


class RequestCollapser(Generic[T]):
    def __init__(self) -> None:
        self._in_flight: dict[Hashable, asyncio.Future[T]] = {}
        self.leaders = 0
        self.followers = 0

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """The result of `call`, or of the identical call already in flight."""
        shared = self._in_flight.get(key)
        if shared is None:
            self.leaders += 1
            # A task of its own: a leader whose client goes away must not cancel the followers.
            shared = asyncio.ensure_future(call())
            self._in_flight[key] = shared
            shared.add_done_callback(lambda _: self._forget(key, shared))
        else:
            self.followers += 1
        return await asyncio.shield(shared)

    def _forget(self, key: Hashable, done: "asyncio.Future[T]") -> None:
        if self._in_flight.get(key) is done:
            del self._in_flight[key]
        if not done.cancelled():
            # Mark the exception retrieved: when every waiter was cancelled, nobody else will.
            done.exception()

    def __len__(self) -> int:
        return len(self._in_flight)
