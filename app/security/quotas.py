"""Per-consumer request quotas per calendar day and month (UTC).

With Redis every process shares one counter per consumer and period: one Lua script checks
both periods and increments both, so a request is either counted in both or refused without
being counted. Each counter's key names its period and expires when the period ends.
Without Redis the counters live in this process.

A request past a quota is refused with 429 and `Retry-After` = the seconds until the
exhausted period resets.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.errors import ServiceUnavailable, TooManyRequests
from app.observability.access_log import record_rate_limit_refusal
from app.observability.metrics import quota_refusals
from app.shared.redis import RedisUnavailable, SharedRedis, delete_keys
from app.store.snapshot import PlanConfig

logger = logging.getLogger("gateway.security")

# KEYS: day counter, month counter. ARGV: day limit, month limit (-1 = none), and the
# epoch seconds at which each counter expires. Returns {allowed, day count, month count,
# exhausted period (0 none, 1 day, 2 month)}.
_CONSUME = """
local day = tonumber(redis.call('GET', KEYS[1]) or '0')
local month = tonumber(redis.call('GET', KEYS[2]) or '0')
local day_limit = tonumber(ARGV[1])
local month_limit = tonumber(ARGV[2])
if month_limit >= 0 and month >= month_limit then return {0, day, month, 2} end
if day_limit >= 0 and day >= day_limit then return {0, day, month, 1} end
day = redis.call('INCR', KEYS[1])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
month = redis.call('INCR', KEYS[2])
redis.call('EXPIREAT', KEYS[2], ARGV[4])
return {1, day, month, 0}
"""


@dataclass(frozen=True, slots=True)
class QuotaPeriods:
    """The current day and month and when each ends, in UTC."""

    day: str
    month: str
    day_resets_at: datetime
    month_resets_at: datetime

    @classmethod
    def at(cls, now: datetime) -> "QuotaPeriods":
        now = now.astimezone(UTC)
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        month_start = day_start.replace(day=1)
        next_month = (month_start + timedelta(days=32)).replace(day=1)
        return cls(
            day=day_start.strftime("%Y%m%d"),
            month=month_start.strftime("%Y%m"),
            day_resets_at=day_start + timedelta(days=1),
            month_resets_at=next_month,
        )


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    used_today: int
    used_this_month: int
    periods: QuotaPeriods


def _retry_after(resets_at: datetime, now: datetime) -> str:
    return str(max(1, int((resets_at - now).total_seconds() + 0.999)))


class QuotaCounter:
    """Counts a consumer's requests against its plan's day and month quotas."""

    def __init__(self, redis: SharedRedis | None, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.client.register_script(_CONSUME) if redis is not None else None
        # In-process counters: (consumer, period) -> count, for the current periods only.
        self._local: dict[tuple[int, str], int] = {}

    def _base(self, consumer_id: int) -> str:
        # The hash tag keeps both counters of a consumer in one Redis Cluster slot.
        return f"{self._prefix}quota:{{c{consumer_id}}}"

    def _keys(self, consumer_id: int, periods: QuotaPeriods) -> tuple[str, str]:
        base = self._base(consumer_id)
        return f"{base}:d:{periods.day}", f"{base}:m:{periods.month}"

    async def consume(self, consumer_id: int, plan: PlanConfig) -> QuotaUsage | None:
        """Count one request; raise 429 when a quota is exhausted. None when unmetered."""
        if plan.quota_per_day is None and plan.quota_per_month is None:
            return None
        now = datetime.now(UTC)
        periods = QuotaPeriods.at(now)
        day_limit = plan.quota_per_day if plan.quota_per_day is not None else -1
        month_limit = plan.quota_per_month if plan.quota_per_month is not None else -1
        if self._script is not None and self._redis is not None:
            try:
                async with self._redis.answering():
                    allowed, day, month, exhausted = await self._script(
                        keys=list(self._keys(consumer_id, periods)),
                        args=[
                            day_limit,
                            month_limit,
                            int(periods.day_resets_at.timestamp()),
                            int(periods.month_resets_at.timestamp()),
                        ],
                    )
            except RedisUnavailable as exc:
                # A quota is a commercial limit, not a protection: an outage lets calls pass.
                logger.warning("quota counter unavailable, request not counted: %s", exc)
                return None
        else:
            allowed, day, month, exhausted = self._consume_locally(
                consumer_id, periods, day_limit=day_limit, month_limit=month_limit
            )
        if not allowed:
            period, resets_at, limit = (
                ("monthly", periods.month_resets_at, month_limit)
                if exhausted == 2
                else ("daily", periods.day_resets_at, day_limit)
            )
            quota_refusals.labels(plan.name).inc()
            record_rate_limit_refusal(f"quota:{period}")
            raise TooManyRequests(
                f"The {period} quota of {limit} requests of plan {plan.name!r} is used up.",
                headers={"Retry-After": _retry_after(resets_at, now)},
                extra={"quota": period, "limit": limit, "resets_at": resets_at.isoformat()},
            )
        return QuotaUsage(used_today=int(day), used_this_month=int(month), periods=periods)

    def _consume_locally(
        self, consumer_id: int, periods: QuotaPeriods, *, day_limit: int, month_limit: int
    ) -> tuple[int, int, int, int]:
        day_key, month_key = (consumer_id, "d" + periods.day), (consumer_id, "m" + periods.month)
        if day_key not in self._local:
            self._forget_past_periods(periods)
        day = self._local.get(day_key, 0)
        month = self._local.get(month_key, 0)
        if month_limit >= 0 and month >= month_limit:
            return 0, day, month, 2
        if day_limit >= 0 and day >= day_limit:
            return 0, day, month, 1
        self._local[day_key] = day + 1
        self._local[month_key] = month + 1
        return 1, day + 1, month + 1, 0

    def _forget_past_periods(self, periods: QuotaPeriods) -> None:
        current = {"d" + periods.day, "m" + periods.month}
        for key in [k for k in self._local if k[1] not in current]:
            del self._local[key]

    async def forget(self, consumer_id: int) -> None:
        """Delete a deleted consumer's counters, in this process and in Redis;
        `RedisUnavailable` when Redis does not answer (they then end with their period)."""
        for key in [k for k in self._local if k[0] == consumer_id]:
            del self._local[key]
        if self._redis is not None:
            async with self._redis.answering() as client:
                await delete_keys(client, prefixes=[self._base(consumer_id) + ":"])

    async def usage(self, consumer_id: int) -> QuotaUsage:
        """How much of the current day and month a consumer has used."""
        periods = QuotaPeriods.at(datetime.now(UTC))
        if self._redis is None:
            return QuotaUsage(
                used_today=self._local.get((consumer_id, "d" + periods.day), 0),
                used_this_month=self._local.get((consumer_id, "m" + periods.month), 0),
                periods=periods,
            )
        try:
            async with self._redis.answering() as client:
                day, month = await client.mget(list(self._keys(consumer_id, periods)))
        except RedisUnavailable as exc:
            logger.warning("quota counters unavailable: %s", exc)
            raise ServiceUnavailable(
                "Quota usage cannot be read right now; retry shortly.",
                headers={"Retry-After": "1"},
            ) from None
        return QuotaUsage(
            used_today=int(day or 0), used_this_month=int(month or 0), periods=periods
        )
