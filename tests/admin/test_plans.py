"""A plan's limits: every value the admin API accepts is one the hot path serves, with the
limits counted in process or in Redis; anything outside is refused naming the field."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.settings import Settings
from app.store.models import INTEGER_MAX
from tests.fixtures.consumers import create_partner
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.problems import assert_problem, field_errors
from tests.fixtures.redis import prefixed_redis

QUOTES = "/partner/v1/quotes?symbols=AAPL"

SMALLEST = {
    "rate_per_second": 0.001,
    "rate_per_minute": 1,
    "quota_per_day": 1,
    "quota_per_month": 1,
    "max_in_flight": 1,
}
LARGEST = {
    "rate_per_second": 100_000,
    "rate_per_minute": 6_000_000,
    "quota_per_day": INTEGER_MAX,
    "quota_per_month": INTEGER_MAX,
    "max_in_flight": 10_000,
}


@pytest.fixture(params=["memory", "redis"])
async def limited(
    request: pytest.FixtureRequest, settings: Settings, store_url: str
) -> AsyncIterator[RunningGateway]:
    """A gateway on each store, counting limits in process or in Redis."""
    on_store = settings.model_copy(update={"database_url": store_url})
    if request.param == "memory":
        async with running_gateway(on_store) as gateway:
            yield gateway
        return
    async with prefixed_redis() as redis:
        shared = on_store.model_copy(update={"redis_url": redis.url, "redis_prefix": redis.prefix})
        async with running_gateway(shared) as gateway:
            yield gateway


async def _quotes(gateway: RunningGateway, key: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url, headers=key) as client:
        return await client.get(QUOTES)


async def test_the_smallest_limits_accepted_are_served(limited: RunningGateway) -> None:
    partner = await create_partner(limited.client, plan=SMALLEST)

    first = await _quotes(limited, partner.headers)
    second = await _quotes(limited, partner.headers)

    assert first.status_code == 200, first.text
    # One request per 1000 s: the next is refused for that long, not failed.
    refused = assert_problem(second, 429)
    assert 1 <= int(second.headers["retry-after"]) <= 1000
    assert refused["limit"] in {"consumer-second", "consumer-minute"}


async def test_the_largest_limits_accepted_are_served(limited: RunningGateway) -> None:
    partner = await create_partner(limited.client, plan=LARGEST)

    answers = [await _quotes(limited, partner.headers) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 200], answers[-1].text
    async with httpx.AsyncClient(base_url=limited.url, headers=partner.headers) as client:
        usage = await client.get("/partner/v1/usage")
    assert usage.status_code == 200, usage.text
    assert usage.json()["day"]["limit"] == INTEGER_MAX


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"rate_per_second": 0}, "rate_per_second"),
        ({"rate_per_second": 0.000_999}, "rate_per_second"),
        ({"rate_per_second": 1e-300}, "rate_per_second"),
        ({"rate_per_second": 5e-324}, "rate_per_second"),
        ({"rate_per_second": 100_001}, "rate_per_second"),
        ({"rate_per_minute": 0}, "rate_per_minute"),
        ({"rate_per_minute": 6_000_001}, "rate_per_minute"),
        ({"quota_per_day": INTEGER_MAX + 1}, "quota_per_day"),
        ({"quota_per_month": 99999999999999999999}, "quota_per_month"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"max_in_flight": 10_001}, "max_in_flight"),
    ],
)
async def test_limits_outside_what_is_served_are_refused(
    admin: RunningGateway, limits: dict[str, Any], field: str
) -> None:
    assert (await admin.client.post("/admin/v1/plans", json={"name": "kept"})).status_code == 201

    created = await admin.client.post("/admin/v1/plans", json={"name": "edge", **limits})
    changed = await admin.client.patch("/admin/v1/plans/kept", json=limits)

    for response in (created, changed):
        assert field_errors(assert_problem(response, 422)) == {f"body.{field}"}
    plans = (await admin.client.get("/admin/v1/plans")).json()["plans"]
    assert [(p["name"], p[field]) for p in plans] == [("kept", None)]


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e400"])
async def test_a_rate_that_is_no_finite_number_is_refused(
    admin: RunningGateway, number: str
) -> None:
    # Python's JSON parser, which reads the body, takes these; a JSON encoder never sends them.
    body = '{"name": "edge", "rate_per_second": ' + number + "}"

    response = await admin.client.post(
        "/admin/v1/plans", content=body, headers={"Content-Type": "application/json"}
    )

    assert field_errors(assert_problem(response, 422)) == {"body.rate_per_second"}
    assert (await admin.client.get("/admin/v1/plans")).json() == {"plans": []}
