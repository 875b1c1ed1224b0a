"""When a failed upstream call may be tried again, after how long, and how many retries overall.

Only requests that are safe to repeat are retried: the idempotent methods, and a POST that
carries an `Idempotency-Key` (the service dedupes on it, so a retry never places a second
order). Retries are capped per service by a budget so that a failing service is not hit with
`attempts` times its normal load: retries may add `budget_ratio` of the calls, plus a small
per-second minimum so a quiet service can still retry.

Where a retry goes (`app.upstreams.caller`): preferably an instance not tried yet. After a
timeout, never back to the instance that timed out: it is slow now, and a second try doubles
both its load and the caller's wait; with no other instance the timeout is final. After a
connection error (refused, reset, a pooled connection that had died) the same instance may be
tried again after the backoff: such a failure is quick and often passing (a restart, a stale
connection), and its breaker and passive health check still count it.
"""

import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from app.traffic.service_policy import RetryPolicy

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
IDEMPOTENCY_KEY = "idempotency-key"


def is_repeatable(method: str, headers: Mapping[str, str] | None) -> bool:
    """Whether sending this request twice has the effect of sending it once."""
    method = method.upper()
    if method in IDEMPOTENT_METHODS:
        return True
    return method == "POST" and any(
        name.lower() == IDEMPOTENCY_KEY and value for name, value in (headers or {}).items()
    )


def backoff_s(policy: RetryPolicy, retry: int, *, chooser: random.Random | None = None) -> float:
    """Exponential backoff with full jitter before retry number `retry` (1 for the first)."""
    ceiling = min(policy.max_backoff_ms, policy.base_backoff_ms * 2 ** (retry - 1))
    return (chooser or random).uniform(0, ceiling) / 1000


def retry_after_s(value: str | None) -> float | None:
    """A `Retry-After` header (seconds or an HTTP date) as seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - datetime.now(UTC)).total_seconds(), 0.0)


class RetryBudget:
    """Token bucket of retries: each call earns `ratio` of a retry, each retry spends one.

    A second, small reserve refills with time at `min_per_s` and holds at most
    `max(min_per_s, 1)`, so over any run:
    retries <= ratio x calls + max(min_per_s, 1) + min_per_s x seconds elapsed.
    """

    def __init__(
        self, *, ratio: float, min_per_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ratio = ratio
        self.min_per_s = min_per_s
        self._clock = clock
        # Earned from calls; capped so a long healthy spell cannot fund a retry storm.
        self._earned = 0.0
        self._cap = max(10.0, ratio * 100)
        self._reserve_cap = max(min_per_s, 1.0) if min_per_s > 0 else 0.0
        self._reserve = self._reserve_cap
        self._refilled_at = clock()
        self.calls = 0
        self.retries = 0
        self.refused = 0

    def record_call(self) -> None:
        self.calls += 1
        self._earned = min(self._earned + self.ratio, self._cap)

    def try_spend(self) -> bool:
        """Take one retry from the budget; False when there is none left."""
        now = self._clock()
        refill = (now - self._refilled_at) * self.min_per_s
        self._reserve = min(self._reserve + refill, self._reserve_cap)
        self._refilled_at = now
        if self._earned >= 1:
            self._earned -= 1
        elif self._reserve >= 1:
            self._reserve -= 1
        else:
            self.refused += 1
            return False
        self.retries += 1
        return True


class RetryBudgets:
    """One budget per service in this process."""

    def __init__(self) -> None:
        self._budgets: dict[str, RetryBudget] = {}

    def budget(self, service: str, policy: RetryPolicy) -> RetryBudget:
        budget = self._budgets.get(service)
        if (
            budget is None
            or budget.ratio != policy.budget_ratio
            or budget.min_per_s != policy.budget_min_per_s
        ):
            budget = self._budgets[service] = RetryBudget(
                ratio=policy.budget_ratio, min_per_s=policy.budget_min_per_s
            )
        return budget
