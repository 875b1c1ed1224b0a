"""A client-credentials token of an OAuth client linked to a consumer (`oauth_client_id`)
acts as that consumer: its plan's rate limits, its quota and its accounts apply."""

from datetime import UTC, datetime
from typing import Any

import pytest

from app.security.quotas import QuotaPeriods
from app.settings import Settings
from backends.launcher import Platform
from tests.fixtures.consumers import ADMIN, PartnerKey, create_partner
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import bearer_headers
from tests.fixtures.problems import assert_problem
from tests.fixtures.redis import prefixed_redis

QUOTES = "/partner/v1/quotes?symbols=AAPL"
CLIENT = "partner-acme"
# What the provider's token for partner-acme claims, and what the consumer is linked to.
CLAIMED_ACCOUNTS = ["ACC-2001", "ACC-2002"]
CONSUMER_ACCOUNTS = ["ACC-2001"]


async def link(gateway: RunningGateway, partner: PartnerKey, client_id: str | None) -> None:
    response = await gateway.client.patch(
        f"/admin/v1/consumers/{partner.consumer_id}",
        json={"oauth_client_id": client_id},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    assert response.json()["oauth_client_id"] == client_id


async def linked_partner(
    gateway: RunningGateway, *, plan: dict[str, Any] | None = None
) -> PartnerKey:
    partner = await create_partner(gateway.client, plan=plan, account_ids=tuple(CONSUMER_ACCOUNTS))
    await link(gateway, partner, CLIENT)
    return partner


async def token(platform: Platform, scope: str | None = None) -> dict[str, str]:
    return await bearer_headers(platform, client_id=CLIENT, scope=scope)


def seconds_until(moment: datetime) -> float:
    return (moment - datetime.now(UTC)).total_seconds()


@pytest.mark.parametrize("store", ["in-process", pytest.param("redis", marks=pytest.mark.redis)])
async def test_the_token_counts_against_its_consumers_daily_quota(
    settings: Settings, platform: Platform, store: str
) -> None:
    async with prefixed_redis() as redis:
        if store == "redis":
            settings = settings.model_copy(
                update={"redis_url": redis.url, "redis_prefix": redis.prefix}
            )
        async with running_gateway(settings) as gateway:
            partner = await linked_partner(gateway, plan={"quota_per_day": 2})
            headers = await token(platform)
            first = await gateway.client.get(QUOTES, headers=headers)
            second = await gateway.client.get(QUOTES, headers=headers)
            refused = await gateway.client.get(QUOTES, headers=headers)
            # The consumer's API key draws on the same, now exhausted, quota.
            by_key = await gateway.client.get(QUOTES, headers=partner.headers)
            usage = await gateway.client.get("/partner/v1/usage", headers=headers)
            if store == "redis":
                periods = QuotaPeriods.at(datetime.now(UTC))
                day_key = f"{redis.prefix}quota:{{c{partner.consumer_id}}}:d:{periods.day}"
                assert int(await redis.client.get(day_key)) == 2

    assert (first.status_code, second.status_code) == (200, 200), first.text
    problem = assert_problem(refused, 429)
    assert problem["quota"] == "daily" and problem["limit"] == 2
    resets_at = QuotaPeriods.at(datetime.now(UTC)).day_resets_at
    assert abs(int(refused.headers["retry-after"]) - seconds_until(resets_at)) <= 5
    assert_problem(by_key, 429)

    assert usage.status_code == 200, usage.text
    body = usage.json()
    assert body["consumer"] == partner.consumer
    assert (body["consumer_id"], body["plan"]) == (partner.consumer_id, partner.plan)
    assert body["account_ids"] == CONSUMER_ACCOUNTS
    assert (body["day"]["limit"], body["day"]["used"], body["day"]["remaining"]) == (2, 2, 0)
    assert body["month"]["used"] == 2


async def test_the_token_is_limited_by_its_consumers_plan_rate(
    gateway: RunningGateway, platform: Platform
) -> None:
    await linked_partner(gateway, plan={"rate_per_minute": 3})
    headers = await token(platform)

    responses = [await gateway.client.get(QUOTES, headers=headers) for _ in range(4)]

    for response in responses[:3]:
        assert response.status_code == 200, response.text
        assert response.headers["ratelimit-policy"] == '"consumer-minute";q=3;w=60'
    refused = assert_problem(responses[3], 429)
    assert refused["limit"] == "consumer-minute"
    assert responses[3].headers["ratelimit"] == '"consumer-minute";r=0;t=60'


async def test_the_token_keeps_its_scopes_and_takes_the_consumers_accounts(
    gateway: RunningGateway, platform: Platform
) -> None:
    # The plan grants all partner scopes; the token was granted quotes:read only.
    await linked_partner(gateway)
    headers = await token(platform, scope="quotes:read")

    whoami = await gateway.client.get("/auth/whoami", headers=headers)
    candles = await gateway.client.get("/partner/v1/candles/AAPL", headers=headers)

    assert whoami.status_code == 200, whoami.text
    assert whoami.json()["kind"] == "consumer"
    assert whoami.json()["scopes"] == ["quotes:read"]
    assert whoami.json()["account_ids"] == CONSUMER_ACCOUNTS
    assert assert_problem(candles, 403)["missing_scopes"] == ["candles:read"]


async def test_the_plan_bounds_what_the_token_may_do(
    gateway: RunningGateway, platform: Platform
) -> None:
    # The token was granted every partner scope; the plan grants quotes only.
    partner = await create_partner(gateway.client, scopes=("quotes:read",))
    await link(gateway, partner, CLIENT)
    headers = await token(platform)

    whoami = await gateway.client.get("/auth/whoami", headers=headers)
    quotes = await gateway.client.get("/partner/v1/quotes?symbols=AAPL", headers=headers)
    candles = await gateway.client.get("/partner/v1/candles/AAPL", headers=headers)

    assert whoami.json()["scopes"] == ["quotes:read"]
    assert quotes.status_code == 200, quotes.text
    assert assert_problem(candles, 403)["missing_scopes"] == ["candles:read"]


async def test_an_unlinked_clients_token_is_refused_naming_the_missing_link(
    gateway: RunningGateway, platform: Platform
) -> None:
    headers = await token(platform)

    unlinked = await gateway.client.get(QUOTES, headers=headers)
    usage = await gateway.client.get("/partner/v1/usage", headers=headers)
    whoami = await gateway.client.get("/auth/whoami", headers=headers)
    partner = await linked_partner(gateway)
    linked = await gateway.client.get(QUOTES, headers=headers)
    linked_usage = await gateway.client.get("/partner/v1/usage", headers=headers)

    problem = assert_problem(unlinked, 403)
    assert problem["detail"] == (
        "The OAuth client 'partner-acme' is not linked to a partner consumer; an admin links it "
        'with PATCH /admin/v1/consumers/{id} {"oauth_client_id": "partner-acme"}.'
    )
    assert (problem["missing_link"], problem["client_id"]) == ("consumer", CLIENT)
    assert assert_problem(usage, 403)["missing_link"] == "consumer"
    # Who the token is stays visible, so the caller can tell an admin which client to link.
    assert whoami.status_code == 200, whoami.text
    assert (whoami.json()["subject"], whoami.json()["kind"]) == (CLIENT, "consumer")
    assert linked.status_code == 200, linked.text
    assert linked_usage.json()["consumer_id"] == partner.consumer_id


async def test_unlinking_refuses_the_token_again(
    gateway: RunningGateway, platform: Platform
) -> None:
    partner = await linked_partner(gateway, plan={"rate_per_minute": 100, "quota_per_day": 5})
    headers = await token(platform)
    linked = await gateway.client.get(QUOTES, headers=headers)
    assert linked.headers["ratelimit-policy"] == '"consumer-minute";q=100;w=60'

    await link(gateway, partner, None)
    unlinked = await gateway.client.get(QUOTES, headers=headers)
    by_key = await gateway.client.get("/partner/v1/usage", headers=partner.headers)

    assert assert_problem(unlinked, 403)["missing_link"] == "consumer"
    # Only the call made while linked was counted against the consumer.
    assert by_key.json()["day"]["used"] == 1


async def test_a_disabled_linked_consumer_refuses_the_token(
    gateway: RunningGateway, platform: Platform
) -> None:
    partner = await linked_partner(gateway)
    disabled = await gateway.client.patch(
        f"/admin/v1/consumers/{partner.consumer_id}", json={"enabled": False}, headers=ADMIN
    )
    assert disabled.status_code == 200, disabled.text
    headers = await token(platform)

    response = await gateway.client.get(QUOTES, headers=headers)

    problem = assert_problem(response, 401)
    assert "consumer is disabled" in problem["detail"]
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert headers["Authorization"].split()[1] not in response.text


async def test_a_token_of_another_client_is_not_the_consumer(
    gateway: RunningGateway, platform: Platform
) -> None:
    partner = await create_partner(gateway.client, plan={"quota_per_day": 1})
    await link(gateway, partner, "some-other-client")
    headers = await token(platform)

    quotes = await gateway.client.get(QUOTES, headers=headers)
    usage = await gateway.client.get("/partner/v1/usage", headers=partner.headers)

    assert assert_problem(quotes, 403)["client_id"] == CLIENT
    assert usage.json()["day"]["used"] == 0


async def test_a_users_token_through_a_linked_client_stays_the_user(
    gateway: RunningGateway, platform: Platform
) -> None:
    # alice's token names the web client, but its subject is alice: not a client-credentials
    # token, so the consumer linked to that client does not apply.
    partner = await create_partner(gateway.client, account_ids=tuple(CONSUMER_ACCOUNTS))
    await link(gateway, partner, "stockbot-web")
    headers = await bearer_headers(platform, username="alice")

    whoami = await gateway.client.get("/auth/whoami", headers=headers)

    assert whoami.status_code == 200, whoami.text
    assert (whoami.json()["subject"], whoami.json()["kind"]) == ("alice", "user")
    assert whoami.json()["account_ids"] == ["ACC-1001"]
