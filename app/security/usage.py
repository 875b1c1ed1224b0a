"""What each partner consumer used: requests per hour and per day, by route and status class,
the 429s, and a latency histogram to read percentiles from. The developer portal draws it.

The hot path only counts: the edge calls `UsageMeter.record` (no I/O, a few dictionary
increments) for a request that a consumer's credential made, once its answer is done. Every
`portal.usage_flush_s` a background task adds the counts to Redis in one pipeline of
`HINCRBY`s on one hash per consumer and hour (kept two days) and per consumer and day (kept
`portal.usage_retention_days`), so every process's counts meet there. Without Redis the
counts stay in the process's memory, pruned to the same retention. A Redis failure keeps the
counts for the next flush (bounded: past `_MAX_PENDING_FIELDS` they are dropped and logged).
"""

import asyncio
import bisect
import contextlib
import functools
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

from app.settings import PortalSettings
from app.shared.redis import RedisUnavailable, SharedRedis
from app.shared.tasks import stop_tasks

logger = logging.getLogger("gateway.usage")

HOUR_S = 3600
DAY_S = 86400
HOURS_KEPT = 48
# Upper bounds of the latency histogram's buckets, in milliseconds; the last is open.
LATENCY_BOUNDS_MS: tuple[float, ...] = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
_MAX_PENDING_FIELDS = 100_000
# A route template longer than this is named by its start: a hash field stays small.
_MAX_ROUTE_CHARS = 200

Counts = dict[str, int]


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "5xx"


# The hash fields a request adds to, by what names them: a few hundred distinct tuples in a
# process (routes x statuses x latency buckets), so building them is cached.
@functools.lru_cache(maxsize=4096)
def _fields(method: str, route: str, status: int, bucket: int) -> tuple[str, ...]:
    cls = status_class(status)
    named = f"r:{method} {route[:_MAX_ROUTE_CHARS]}|{cls}"
    if status == 429:
        return ("n", "s:" + cls, "s:429", named, f"l:{bucket}")
    return ("n", "s:" + cls, named, f"l:{bucket}")


@dataclass(frozen=True, slots=True)
class UsagePeriod:
    """One hour or one day of a consumer's requests."""

    start: int  # Unix seconds
    requests: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    limited: int = 0
    latency_ms: dict[str, float | None] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.by_class.get("5xx", 0)

    @property
    def client_errors(self) -> int:
        return self.by_class.get("4xx", 0)


@dataclass(frozen=True, slots=True)
class RouteUsage:
    route: str
    by_class: dict[str, int]

    @property
    def requests(self) -> int:
        return sum(self.by_class.values())


@dataclass(frozen=True, slots=True)
class UsageReport:
    """A consumer's last 24 hours, hour by hour, and last days, day by day."""

    hours: list[UsagePeriod]
    days: list[UsagePeriod]
    # Over the days shown, busiest first.
    routes: list[RouteUsage]

    @property
    def total(self) -> UsagePeriod:
        return _merged_period(self.days, start=self.days[0].start if self.days else 0)


def percentile_ms(histogram: dict[int, int], fraction: float) -> float | None:
    """The upper bound of the bucket holding the `fraction` quantile (the open last bucket
    reads as twice the last bound); None without requests."""
    total = sum(histogram.values())
    if total == 0:
        return None
    wanted = fraction * total
    seen = 0
    for index in range(len(LATENCY_BOUNDS_MS) + 1):
        seen += histogram.get(index, 0)
        if seen >= wanted:
            return (
                LATENCY_BOUNDS_MS[index]
                if index < len(LATENCY_BOUNDS_MS)
                else LATENCY_BOUNDS_MS[-1] * 2
            )
    return LATENCY_BOUNDS_MS[-1] * 2


def _period(start: int, counts: Counts) -> UsagePeriod:
    by_class: dict[str, int] = {}
    histogram: dict[int, int] = {}
    for name, value in counts.items():
        if name.startswith("s:") and name != "s:429":
            by_class[name[2:]] = value
        elif name.startswith("l:"):
            histogram[int(name[2:])] = value
    return UsagePeriod(
        start=start,
        requests=counts.get("n", 0),
        by_class=by_class,
        limited=counts.get("s:429", 0),
        latency_ms={
            "p50": percentile_ms(histogram, 0.50),
            "p95": percentile_ms(histogram, 0.95),
            "p99": percentile_ms(histogram, 0.99),
        },
    )


def _merged_period(periods: list[UsagePeriod], *, start: int) -> UsagePeriod:
    by_class: dict[str, int] = defaultdict(int)
    for period in periods:
        for name, value in period.by_class.items():
            by_class[name] += value
    return UsagePeriod(
        start=start,
        requests=sum(p.requests for p in periods),
        by_class=dict(by_class),
        limited=sum(p.limited for p in periods),
    )


class UsageMeter:
    """Counts each consumer's requests on the hot path; keeps them in Redis or in memory."""

    def __init__(self, settings: PortalSettings, *, prefix: str) -> None:
        self._settings = settings
        self._prefix = prefix
        self._redis: SharedRedis | None = None
        # (consumer, hour start) -> field -> count, not yet flushed.
        self._pending: dict[tuple[int, int], Counts] = defaultdict(lambda: defaultdict(int))
        self._pending_fields = 0
        # Without Redis: (consumer, "h" | "d", start) -> field -> count.
        self._memory: dict[tuple[int, str, int], Counts] = {}
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()

    def record(
        self, consumer_id: int, *, method: str, route: str, status: int, seconds: float
    ) -> None:
        """Count one finished request of `consumer_id` (no I/O)."""
        if self._pending_fields >= _MAX_PENDING_FIELDS:
            return
        hour = int(time.time()) // HOUR_S * HOUR_S
        counts = self._pending[consumer_id, hour]
        bucket = bisect.bisect_left(LATENCY_BOUNDS_MS, seconds * 1000)
        for name in _fields(method, route, status, bucket):
            if name not in counts:
                self._pending_fields += 1
            counts[name] += 1

    async def start(self, redis: SharedRedis | None) -> None:
        self._redis = redis
        self._task = asyncio.create_task(self._flush_every(), name="usage-flush")

    async def stop(self) -> None:
        await stop_tasks(self._task)
        self._task = None
        with contextlib.suppress(RedisUnavailable):
            await self.flush()

    async def _flush_every(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._settings.usage_flush_s)
            try:
                await self.flush()
            except RedisUnavailable as exc:
                # Once per outage, not once a second.
                if not failing:
                    logger.warning("usage not written to Redis, kept for the next try: %s", exc)
                failing = True
                continue
            except Exception:
                logger.exception("usage flush failed")
            if failing:
                logger.info("usage written to Redis again")
            failing = False

    def _hour_key(self, consumer_id: int, start: int) -> str:
        return f"{self._prefix}usage:{consumer_id}:h:{start}"

    def _day_key(self, consumer_id: int, start: int) -> str:
        return f"{self._prefix}usage:{consumer_id}:d:{start}"

    async def flush(self) -> None:
        """Add the counts made since the last flush to the store; `RedisUnavailable` leaves
        them pending."""
        async with self._flush_lock:
            if not self._pending:
                return
            pending, self._pending = self._pending, defaultdict(lambda: defaultdict(int))
            self._pending_fields = 0
            if self._redis is None:
                self._add_to_memory(pending)
                return
            retention_s = self._settings.usage_retention_days * DAY_S
            try:
                async with self._redis.answering() as client:
                    pipe = client.pipeline(transaction=False)
                    for (consumer_id, hour), counts in pending.items():
                        day = hour // DAY_S * DAY_S
                        hour_key = self._hour_key(consumer_id, hour)
                        day_key = self._day_key(consumer_id, day)
                        for name, value in counts.items():
                            pipe.hincrby(hour_key, name, value)
                            pipe.hincrby(day_key, name, value)
                        pipe.expire(hour_key, HOURS_KEPT * HOUR_S)
                        pipe.expire(day_key, retention_s + DAY_S)
                    await pipe.execute()
            except RedisUnavailable:
                self._restore(pending)
                raise

    def _restore(self, pending: dict[tuple[int, int], Counts]) -> None:
        for key, counts in pending.items():
            kept = self._pending[key]
            for name, value in counts.items():
                if name not in kept:
                    if self._pending_fields >= _MAX_PENDING_FIELDS:
                        logger.warning("usage counts dropped: too many kept while Redis is down")
                        return
                    self._pending_fields += 1
                kept[name] += value

    def _add_to_memory(self, pending: dict[tuple[int, int], Counts]) -> None:
        for (consumer_id, hour), counts in pending.items():
            day = hour // DAY_S * DAY_S
            for key in ((consumer_id, "h", hour), (consumer_id, "d", day)):
                stored = self._memory.setdefault(key, {})
                for name, value in counts.items():
                    stored[name] = stored.get(name, 0) + value
        now = int(time.time())
        oldest_hour = now - HOURS_KEPT * HOUR_S
        oldest_day = now - (self._settings.usage_retention_days + 1) * DAY_S
        for key in [k for k in self._memory if k[2] < (oldest_hour if k[1] == "h" else oldest_day)]:
            del self._memory[key]

    async def report(self, consumer_id: int, *, days: int = 14) -> UsageReport:
        """The consumer's usage, this process's unflushed counts included;
        `RedisUnavailable` when Redis cannot be read."""
        await self.flush()
        now = int(time.time())
        this_hour = now // HOUR_S * HOUR_S
        today = now // DAY_S * DAY_S
        days = max(1, min(days, self._settings.usage_retention_days))
        hour_starts = [this_hour - i * HOUR_S for i in range(23, -1, -1)]
        day_starts = [today - i * DAY_S for i in range(days - 1, -1, -1)]
        if self._redis is None:
            hour_counts = [self._memory.get((consumer_id, "h", s), {}) for s in hour_starts]
            day_counts = [self._memory.get((consumer_id, "d", s), {}) for s in day_starts]
        else:
            async with self._redis.answering() as client:
                pipe = client.pipeline(transaction=False)
                for start in hour_starts:
                    pipe.hgetall(self._hour_key(consumer_id, start))
                for start in day_starts:
                    pipe.hgetall(self._day_key(consumer_id, start))
                answers = await pipe.execute()
            decoded = [_decoded(answer) for answer in answers]
            hour_counts, day_counts = decoded[: len(hour_starts)], decoded[len(hour_starts) :]
        routes: dict[str, dict[str, int]] = defaultdict(dict)
        for counts in day_counts:
            for name, value in counts.items():
                if name.startswith("r:"):
                    route, _, cls = name[2:].rpartition("|")
                    routes[route][cls] = routes[route].get(cls, 0) + value
        return UsageReport(
            hours=[_period(s, c) for s, c in zip(hour_starts, hour_counts, strict=True)],
            days=[_period(s, c) for s, c in zip(day_starts, day_counts, strict=True)],
            routes=sorted(
                (RouteUsage(route=r, by_class=c) for r, c in routes.items()),
                key=lambda usage: (-usage.requests, usage.route),
            ),
        )


def _decoded(answer: dict[bytes | str, bytes | str]) -> Counts:
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in (answer or {}).items()}
