"""Timeouts for many concurrent awaits on one event-loop timer.

`asyncio.timeout` arms a timer of its own for each await it bounds, and under uvloop a timer
is a libuv handle made and closed each time: about 27 k instructions per use, measured, as
much as a tenth of the caller's whole cost of an upstream call. The caller bounds every try,
and nearly every try ends well before its bound, so here the bounds wait in a heap and one
timer is set for the earliest bound still armed. A new bound later than that one (every
try of a service shares its timeout, so nearly all are) costs a heap push and no timer.
Finished bounds stay in the heap until they reach its top or are swept out in bulk.

A bound that expires cancels its task, and its block ends in `TimeoutError`, exactly as
with `asyncio.timeout` (a cancellation from elsewhere stays a cancellation).
"""

import asyncio
import heapq
import itertools
from math import inf
from types import TracebackType

# Finished bounds are swept out of the heap once they are this many and the greater part
# of it: memory stays in proportion to the bounds armed, at a constant cost per bound.
_SWEEP_AT = 1024
# Bounds this close to their time when the timer fires are expired then, rather than by
# another turn of the loop (event-loop timers are kept in milliseconds).
_RESOLUTION_S = 0.001


class Bound:
    """One bounded block (`with timer.bound(seconds):`)."""

    __slots__ = ("_cancelling", "_expired", "_task", "_timer", "armed", "when")

    def __init__(self, timer: "SharedTimer", when: float, task: asyncio.Task[object]) -> None:
        self._timer = timer
        self._task = task
        self._cancelling = task.cancelling()
        self._expired = False
        self.armed = True
        self.when = when

    def __enter__(self) -> "Bound":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.armed:
            self.armed = False
            self._timer.finished += 1
        elif self._expired:
            # As `asyncio.timeout` does: the cancellation it caused becomes a TimeoutError,
            # unless the task was also cancelled for another reason.
            self._expired = False
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def expire(self) -> None:
        self.armed = False
        self._expired = True
        self._task.cancel()


class _Unbounded:
    """What `SharedTimer.bound(None)` gives: a block without a bound."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


_UNBOUNDED = _Unbounded()


class SharedTimer:
    """The bounds of one event loop's awaits, on one of its timers at a time."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._heap: list[tuple[float, int, Bound]] = []
        self._order = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._handle_at = inf
        # Bounds that ended before their time and are still in the heap.
        self.finished = 0

    def bound(self, delay_s: float | None) -> Bound | _Unbounded:
        """A bound of `delay_s` seconds from now on the current task, to use in `with`;
        None: no bound."""
        if delay_s is None:
            return _UNBOUNDED
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._restart(loop)
        task = asyncio.current_task(loop)
        assert task is not None, "a bound needs a task to cancel"
        when = loop.time() + delay_s
        bound = Bound(self, when, task)
        heapq.heappush(self._heap, (when, next(self._order), bound))
        if when < self._handle_at:
            self._set_timer(loop, when)
        if self.finished >= _SWEEP_AT and self.finished * 2 > len(self._heap):
            self._sweep()
        return bound

    def pending(self) -> int:
        """How many bounds are armed."""
        return len(self._heap) - self.finished

    def _fire(self) -> None:
        self._handle, self._handle_at = None, inf
        loop = self._loop
        assert loop is not None
        now = loop.time() + _RESOLUTION_S
        heap = self._heap
        while heap:
            when, _, bound = heap[0]
            if bound.armed:
                if when > now:
                    self._set_timer(loop, when)
                    return
                heapq.heappop(heap)
                bound.expire()
            else:
                heapq.heappop(heap)
                self.finished -= 1

    def _set_timer(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self._handle_at = loop.call_at(when, self._fire), when

    def _sweep(self) -> None:
        self._heap = [entry for entry in self._heap if entry[2].armed]
        heapq.heapify(self._heap)
        self.finished = 0

    def _restart(self, loop: asyncio.AbstractEventLoop) -> None:
        """First use on `loop` (tests run one loop each): what another loop left is dropped."""
        if self._handle is not None:
            self._handle.cancel()
        self._loop, self._heap, self._handle, self._handle_at = loop, [], None, inf
        self.finished = 0
