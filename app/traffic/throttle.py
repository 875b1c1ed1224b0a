"""Caps on requests in flight: per consumer by plan tier, and for the whole gateway process.

A consumer over its plan's `max_in_flight` waits a short, bounded time for one of its own
requests to finish, then gets 429: one partner's slow burst cannot take every connection
the gateway has upstream. The gateway-wide cap protects the process itself and answers
503, since it is the gateway that is overloaded, not the caller that misbehaves.

With Redis, a consumer's slots are shared by every gateway process (claimed in Redis in the
same round trip as the rate limits; see `app.policy.admission`) and this in-process gate
serves only without Redis or while it is down and the limiter fails open. The gateway-wide
cap protects this process's own resources (connections, memory, event-loop time), so it
counts this process's requests only.
"""

import asyncio
from collections import deque
from collections.abc import Callable, Hashable


class _Gate:
    __slots__ = ("in_flight", "waiters")

    def __init__(self) -> None:
        self.in_flight = 0
        self.waiters: deque[asyncio.Future[None]] = deque()


class ConsumerThrottle:
    """At most `limit` requests in flight per key; above it a bounded wait, first come first
    served, then refusal. A finished request hands its slot straight to the oldest waiter."""

    def __init__(self) -> None:
        self._gates: dict[Hashable, _Gate] = {}

    def in_flight(self, key: Hashable) -> int:
        gate = self._gates.get(key)
        return gate.in_flight if gate is not None else 0

    async def acquire(
        self, key: Hashable, *, limit: int, wait_s: float
    ) -> Callable[[], None] | None:
        """A release callback when a slot is granted, None when refused after waiting."""
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = _Gate()
        if gate.in_flight < limit and not gate.waiters:
            gate.in_flight += 1
            return self._releaser(key, gate)
        if wait_s <= 0:
            self._forget_if_idle(key, gate)
            return None
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gate.waiters.append(waiter)
        try:
            async with asyncio.timeout(wait_s):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over just as time ran out or the client went away.
                if isinstance(exc, TimeoutError):
                    return self._releaser(key, gate)
                self._release(key, gate)
                raise
            if waiter in gate.waiters:
                gate.waiters.remove(waiter)
            self._forget_if_idle(key, gate)
            if isinstance(exc, TimeoutError):
                return None
            raise
        return self._releaser(key, gate)

    def _releaser(self, key: Hashable, gate: _Gate) -> Callable[[], None]:
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._release(key, gate)

        return release

    def _release(self, key: Hashable, gate: _Gate) -> None:
        while gate.waiters:
            waiter = gate.waiters.popleft()
            if not waiter.done():
                # The slot passes to the waiter: in_flight stays as it is.
                waiter.set_result(None)
                return
        gate.in_flight -= 1
        self._forget_if_idle(key, gate)

    def _forget_if_idle(self, key: Hashable, gate: _Gate) -> None:
        if gate.in_flight <= 0 and not gate.waiters and self._gates.get(key) is gate:
            del self._gates[key]


class GatewayLoad:
    """The process's requests in flight, against the cap above which it sheds load."""

    __slots__ = ("cap", "in_flight")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.in_flight = 0

    def enter(self) -> bool:
        if self.in_flight >= self.cap:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1
