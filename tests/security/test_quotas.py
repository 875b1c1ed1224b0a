"""Consumer quotas per UTC day and month: counted per request, 429 with Retry-After past them,
shared between gateway processes through Redis."""

import asyncio
from datetime import UTC, datetime

import pytest

from app.errors import TooManyRequests
from app.security.quotas import QuotaCounter, QuotaPeriods
from app.settings import Settings
from app.store.snapshot import PlanConfig
from tests.fixtures.consumers import create_partner
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.redis import prefixed_redis

QUOTES = "/partner/v1/quotes?symbols=AAPL"


def seconds_until(moment: datetime) -> float:
    return (moment - datetime.now(UTC)).total_seconds()


async def test_daily_quota_exhaustion_is_429_until_midnight(gateway: RunningGateway) -> None:
    partner = await create_partner(gateway.client, plan={"quota_per_day": 3})
    for _ in range(3):
        response = await gateway.client.get(QUOTES, headers=partner.headers)
        assert response.status_code == 200, response.text
    refused = await gateway.client.get(QUOTES, headers=partner.headers)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["quota"] == "daily" and body["limit"] == 3
    resets_at = QuotaPeriods.at(datetime.now(UTC)).day_resets_at
    assert body["resets_at"] == resets_at.isoformat()
    retry_after = int(refused.headers["retry-after"])
    assert abs(retry_after - seconds_until(resets_at)) <= 5
    assert partner.key not in refused.text

    usage = await gateway.client.get("/partner/v1/usage", headers=partner.headers)
    assert usage.status_code == 200
    day = usage.json()["day"]
    assert (day["limit"], day["used"], day["remaining"]) == (3, 3, 0)
    assert datetime.fromisoformat(day["resets_at"]) == resets_at
    # A refused request is not counted, and asking for usage is free.
    assert usage.json()["month"]["used"] == 3
    assert usage.json()["month"]["limit"] is None


async def test_monthly_quota_points_retry_after_to_the_next_month(
    gateway: RunningGateway,
) -> None:
    partner = await create_partner(
        gateway.client, plan={"quota_per_day": 100, "quota_per_month": 1}
    )
    assert (await gateway.client.get(QUOTES, headers=partner.headers)).status_code == 200
    refused = await gateway.client.get(QUOTES, headers=partner.headers)
    assert refused.status_code == 429
    assert refused.json()["quota"] == "monthly"
    resets_at = QuotaPeriods.at(datetime.now(UTC)).month_resets_at
    assert abs(int(refused.headers["retry-after"]) - seconds_until(resets_at)) <= 5


async def test_usage_shows_plan_rates(gateway: RunningGateway) -> None:
    partner = await create_partner(
        gateway.client,
        plan={"rate_per_second": 5, "rate_per_minute": 200, "quota_per_month": 1000},
    )
    body = (await gateway.client.get("/partner/v1/usage", headers=partner.headers)).json()
    assert body["consumer"] == partner.consumer and body["plan"] == partner.plan
    assert body["rates"]["rate_per_second"] == 5 and body["rates"]["rate_per_minute"] == 200
    assert body["month"] == {
        "limit": 1000,
        "used": 0,
        "remaining": 1000,
        "resets_at": body["month"]["resets_at"],
    }


async def test_raising_the_quota_takes_effect_at_once(gateway: RunningGateway) -> None:
    partner = await create_partner(gateway.client, plan={"quota_per_day": 1})
    assert (await gateway.client.get(QUOTES, headers=partner.headers)).status_code == 200
    assert (await gateway.client.get(QUOTES, headers=partner.headers)).status_code == 429
    raised = await gateway.client.patch(
        f"/admin/v1/plans/{partner.plan}",
        json={"quota_per_day": 2},
        headers={"Authorization": "Bearer test-admin-token"},
    )
    assert raised.status_code == 200
    assert (await gateway.client.get(QUOTES, headers=partner.headers)).status_code == 200


@pytest.mark.redis
async def test_quota_is_shared_by_processes(settings: Settings) -> None:
    async with prefixed_redis() as redis:
        shared = settings.model_copy(update={"redis_url": redis.url, "redis_prefix": redis.prefix})
        async with running_gateway(shared) as first, running_gateway(shared) as second:
            partner = await create_partner(first.client, plan={"quota_per_day": 2})
            assert (await first.client.get(QUOTES, headers=partner.headers)).status_code == 200
            # The second process may still be reloading after the change notice.
            for _ in range(100):
                response = await second.client.get(QUOTES, headers=partner.headers)
                if response.status_code != 401:
                    break
                await asyncio.sleep(0.05)
            assert response.status_code == 200, response.text
            assert (await first.client.get(QUOTES, headers=partner.headers)).status_code == 429
            assert (await second.client.get(QUOTES, headers=partner.headers)).status_code == 429
            periods = QuotaPeriods.at(datetime.now(UTC))
            day_key = f"{redis.prefix}quota:{{c{partner.consumer_id}}}:d:{periods.day}"
            assert int(await redis.client.get(day_key)) == 2
            # The counter disappears when its day is over.
            ttl = await redis.client.ttl(day_key)
            assert 0 < ttl <= seconds_until(periods.day_resets_at) + 1


def test_periods_roll_over_at_month_and_year_end() -> None:
    periods = QuotaPeriods.at(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert periods.day == "20261231" and periods.month == "202612"
    assert periods.day_resets_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert periods.month_resets_at == datetime(2027, 1, 1, tzinfo=UTC)
    february = QuotaPeriods.at(datetime(2028, 2, 29, 12, tzinfo=UTC))
    assert february.month_resets_at == datetime(2028, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize("store", ["redis", "in-process"])
async def test_a_deleted_consumers_counters_are_forgotten(store: str) -> None:
    plan = PlanConfig("p", None, None, 1, 5, None, frozenset())
    async with prefixed_redis() as redis:
        counter = QuotaCounter(redis.shared if store == "redis" else None, prefix=redis.prefix)
        for consumer_id in (7, 70):
            assert await counter.consume(consumer_id, plan) is not None
            with pytest.raises(TooManyRequests):
                await counter.consume(consumer_id, plan)

        await counter.forget(7)

        again = await counter.consume(7, plan)
        assert again is not None and (again.used_today, again.used_this_month) == (1, 1)
        with pytest.raises(TooManyRequests):
            await counter.consume(70, plan)
        if store == "redis":
            left = [key async for key in redis.client.scan_iter(match=redis.prefix + "quota:*")]
            assert sorted(k.decode().split(":")[-3] for k in left) == [
                "{c70}",
                "{c70}",
                "{c7}",
                "{c7}",
            ]
