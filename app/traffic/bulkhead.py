"""Bulkheads: a bounded number of calls in flight per upstream service.

A slow service then ties up at most `max_concurrent` of the process's calls, and everything
else (other services, other routes) keeps its share. A call that cannot get a slot within
`max_wait_ms` fails at once with 503 rather than queueing without bound.
"""

import asyncio
from collections import deque

from app.errors import UpstreamUnavailable
from app.observability.metrics import bulkhead_rejections
from app.traffic.service_policy import BulkheadPolicy


class BulkheadFull(UpstreamUnavailable):
    """The service already has as many calls in flight as its bulkhead allows."""

    def __init__(self, service: str, limit: int) -> None:
        super().__init__(
            f"{service} has {limit} call(s) in flight, its limit; try again shortly.",
            service=service,
        )
        self.extra["reason"] = "bulkhead-full"


class Bulkhead:
    """A count of the calls in flight and a queue of those waiting, rather than an
    `asyncio.Semaphore`: a call that finds a free slot takes it without a coroutine
    (`try_enter`), and only a full bulkhead makes one wait (`enter`)."""

    def __init__(self, service: str, policy: BulkheadPolicy) -> None:
        self.service = service
        self.policy = policy
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.in_flight = 0
        self.waiting = 0
        self.rejected = 0

    def slot(self, *, max_wait_s: float | None = None) -> "_Slot":
        """Hold one slot for the duration of a call (`async with`); `max_wait_s` may
        shorten the wait."""
        return _Slot(self, max_wait_s)

    def try_enter(self) -> bool:
        """Take a slot if one is free and nobody waits for it; then `leave()` after."""
        if self.in_flight < self.policy.max_concurrent and not self._waiters:
            self.in_flight += 1
            return True
        return False

    async def enter(self, *, max_wait_s: float | None = None) -> None:
        """Take a slot, waiting in turn at most `max_wait_ms` (or `max_wait_s`, when
        shorter); BulkheadFull when none came free. Then `leave()` after."""
        if self.try_enter():
            return
        wait = self.policy.max_wait_ms / 1000
        if max_wait_s is not None:
            wait = max(min(wait, max_wait_s), 0.0)
        if wait <= 0:
            self._reject()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.waiting += 1
        try:
            async with asyncio.timeout(wait):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over just as time ran out or the caller went away.
                if isinstance(exc, TimeoutError):
                    return
                self.leave()
                raise
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                self._reject()
            raise
        finally:
            self.waiting -= 1

    def leave(self) -> None:
        """Give the slot back: to the first call waiting, else free."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_flight -= 1

    def _reject(self) -> None:
        self.rejected += 1
        bulkhead_rejections.labels(self.service).inc()
        raise BulkheadFull(self.service, self.policy.max_concurrent)


class _Slot:
    """`Bulkhead.slot`'s context."""

    __slots__ = ("_bulkhead", "_max_wait_s")

    def __init__(self, bulkhead: Bulkhead, max_wait_s: float | None) -> None:
        self._bulkhead = bulkhead
        self._max_wait_s = max_wait_s

    async def __aenter__(self) -> None:
        await self._bulkhead.enter(max_wait_s=self._max_wait_s)

    async def __aexit__(self, *exc_info: object) -> None:
        self._bulkhead.leave()


class Bulkheads:
    """One bulkhead per service in this process; replaced when its policy changes."""

    def __init__(self) -> None:
        self._bulkheads: dict[str, Bulkhead] = {}

    def bulkhead(self, service: str, policy: BulkheadPolicy) -> Bulkhead:
        bulkhead = self._bulkheads.get(service)
        if bulkhead is not None and bulkhead.policy is not policy and bulkhead.policy == policy:
            # A new snapshot with the same policy: keep the slots, and compare by identity
            # from now on.
            bulkhead.policy = policy
        elif bulkhead is None or bulkhead.policy is not policy:
            # Calls holding a slot of the old one release it there; new calls use the new limit.
            bulkhead = self._bulkheads[service] = Bulkhead(service, policy)
        return bulkhead

    def get(self, service: str) -> Bulkhead | None:
        return self._bulkheads.get(service)
