"""Circuit breakers, one per upstream instance.

closed -> open when N calls in a row failed, or when the failure ratio over a rolling window
(with a minimum number of calls) reached the threshold. An open circuit refuses calls at once
until its cool-down has passed; then it is half-open and lets a few probes through. A probe
that succeeds closes the circuit; one that fails opens it again for another cool-down.
"""

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from app.errors import UpstreamUnavailable
from app.observability.metrics import breaker_state, breaker_transitions
from app.traffic.service_policy import BreakerPolicy

Clock = Callable[[], float]
logger = logging.getLogger("gateway.breaker")
# The rolling window is kept as this many buckets, so old calls leave it in steps.
_BUCKETS = 10


class CircuitState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


class CircuitOpen(UpstreamUnavailable):
    """Every instance of the service has an open circuit: answered at once, without a call."""

    def __init__(self, service: str) -> None:
        super().__init__(f"{service} is unavailable: circuit open.", service=service)
        self.extra["reason"] = "circuit-open"


class _RollingWindow:
    """Calls and failures over the last `window_s` seconds, in buckets."""

    def __init__(self, window_s: float, clock: Clock) -> None:
        self._width = window_s / _BUCKETS
        self._clock = clock
        self._buckets: dict[int, list[int]] = {}

    def add(self, *, failed: bool) -> None:
        index = int(self._clock() / self._width)
        bucket = self._buckets.get(index)
        if bucket is None:
            bucket = self._buckets[index] = [0, 0]
            if len(self._buckets) > _BUCKETS:
                self._expire(index)
        bucket[0] += 1
        bucket[1] += failed

    def totals(self) -> tuple[int, int]:
        index = int(self._clock() / self._width)
        self._expire(index)
        calls = sum(b[0] for b in self._buckets.values())
        failures = sum(b[1] for b in self._buckets.values())
        return calls, failures

    def clear(self) -> None:
        self._buckets.clear()

    def _expire(self, index: int) -> None:
        oldest = index - _BUCKETS + 1
        for key in [k for k in self._buckets if k < oldest]:
            del self._buckets[key]


class CircuitBreaker:
    def __init__(
        self,
        policy: BreakerPolicy,
        *,
        clock: Clock = time.monotonic,
        service: str = "",
        url: str = "",
    ) -> None:
        self.policy = policy
        # Who it guards, as its events and metrics name it.
        self.service = service
        self.url = url
        if service:
            breaker_state.labels(service, url).set(0)
        self._clock = clock
        self._state = CircuitState.closed
        self._window = _RollingWindow(policy.window_s, clock)
        self._opened_at = 0.0
        self._probes_in_flight = 0
        self.consecutive_failures = 0
        self.since = datetime.now(UTC)

    @property
    def state(self) -> CircuitState:
        if (
            self._state is CircuitState.open
            and self._clock() - self._opened_at >= self.policy.cool_down_ms / 1000
        ):
            self._move(CircuitState.half_open)
        return self._state

    def available(self) -> bool:
        """Whether a call could be let through now, without claiming it."""
        state = self.state
        if state is CircuitState.open:
            return False
        return not (
            state is CircuitState.half_open
            and self._probes_in_flight >= self.policy.half_open_probes
        )

    def try_acquire(self) -> bool:
        """Claim the right to make one call; the caller must then record its outcome."""
        if self._state is CircuitState.closed:
            # Nearly every call: nothing to check, and no clock to read.
            return True
        if not self.available():
            return False
        if self._state is CircuitState.half_open:
            self._probes_in_flight += 1
        return True

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self._window.add(failed=False)
        if self._state is CircuitState.half_open:
            self._probes_in_flight = max(self._probes_in_flight - 1, 0)
            self._move(CircuitState.closed)

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        self._window.add(failed=True)
        if self._state is CircuitState.half_open:
            self._probes_in_flight = max(self._probes_in_flight - 1, 0)
            self._trip()
        elif self._state is CircuitState.closed and self._should_trip():
            self._trip()

    def release(self) -> None:
        """A claimed call ended without saying anything about the instance (e.g. cancelled)."""
        if self._state is CircuitState.half_open:
            self._probes_in_flight = max(self._probes_in_flight - 1, 0)

    def window(self) -> tuple[int, int]:
        """(calls, failures) in the rolling window."""
        return self._window.totals()

    def _should_trip(self) -> bool:
        if self.consecutive_failures >= self.policy.consecutive_failures:
            return True
        calls, failures = self._window.totals()
        return calls >= self.policy.minimum_calls and failures / calls >= self.policy.failure_ratio

    def _trip(self) -> None:
        self._opened_at = self._clock()
        self._move(CircuitState.open)

    def _move(self, state: CircuitState) -> None:
        if state is self._state:
            return
        previous, self._state = self._state, state
        self.since = datetime.now(UTC)
        _announce(self, previous)
        if state is not CircuitState.half_open:
            self._probes_in_flight = 0
        if state is CircuitState.closed:
            # A fresh start: the failures that opened the circuit are history.
            self._window.clear()
            self.consecutive_failures = 0


_STATE_VALUES = {CircuitState.closed: 0, CircuitState.half_open: 1, CircuitState.open: 2}


def _announce(breaker: CircuitBreaker, previous: CircuitState) -> None:
    """A state change: the `breaker_state` event (with the ids of the request whose call
    caused it) and the breaker metrics."""
    state = breaker._state
    breaker_state.labels(breaker.service, breaker.url).set(_STATE_VALUES[state])
    breaker_transitions.labels(breaker.service, breaker.url, state.value).inc()
    log = logger.info if state is CircuitState.closed else logger.warning
    log(
        "breaker_state",
        extra={
            "fields": {
                "service": breaker.service,
                "instance": breaker.url,
                "from": previous.value,
                "to": state.value,
                "consecutive_failures": breaker.consecutive_failures,
            }
        },
    )


@dataclass(frozen=True, slots=True)
class BreakerEntry:
    service: str
    url: str
    breaker: CircuitBreaker


class BreakerBoard:
    """Every instance's breaker in this process, created on first use."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}

    def breaker(self, service: str, url: str, policy: BreakerPolicy) -> CircuitBreaker:
        key = (service, url)
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = CircuitBreaker(
                policy, clock=self._clock, service=service, url=url
            )
        elif breaker.policy is not policy:
            # A new snapshot (the policy may have changed): its thresholds apply from the next
            # call. Kept by identity, so the hot path compares no fields.
            breaker.policy = policy
        return breaker

    def get(self, service: str, url: str) -> CircuitBreaker | None:
        return self._breakers.get((service, url))

    def __iter__(self) -> Iterator[BreakerEntry]:
        for (service, url), breaker in sorted(self._breakers.items()):
            yield BreakerEntry(service, url, breaker)
