"""A credential that fails to authenticate counts against the client address's limits before
its 401 is answered: guessing API keys or tokens is rate limited like anonymous calls."""

from collections.abc import AsyncIterator

import pytest

from backends.launcher import Platform
from tests.fixtures.consumers import ADMIN
from tests.fixtures.gateway import RunningGateway
from tests.fixtures.identity import TokenForge, bearer_headers
from tests.fixtures.problems import assert_problem

QUOTES = "/partner/v1/quotes?symbols=AAPL"
RULE = {"name": "per-address", "key_by": "address", "limit": 3, "period_s": 60}


@pytest.fixture
async def limited(gateway: RunningGateway) -> AsyncIterator[RunningGateway]:
    """The gateway with an address rule of 3 calls a minute, made through the admin API."""
    created = await gateway.client.post("/admin/v1/rate-limits", json=RULE, headers=ADMIN)
    assert created.status_code == 201, created.text
    yield gateway


async def _unsigned_token(platform: Platform) -> str:
    # Well formed and signed, but with a key the provider never published.
    return TokenForge(issuer=platform.urls["identity"][0]).sign()


@pytest.mark.parametrize(
    "credential",
    ["none", "garbage api key", "unknown api key", "garbage bearer", "forged bearer"],
)
async def test_failed_credentials_are_limited_per_address(
    limited: RunningGateway, platform: Platform, credential: str
) -> None:
    headers = {
        "none": {},
        "garbage api key": {"X-API-Key": "garbage"},
        "unknown api key": {"X-API-Key": "sbk_000000000000_" + "x" * 43},
        "garbage bearer": {"Authorization": "Bearer garbage"},
        "forged bearer": {"Authorization": f"Bearer {await _unsigned_token(platform)}"},
    }[credential]

    answers = [await limited.client.get(QUOTES, headers=headers) for _ in range(5)]

    assert [answer.status_code for answer in answers] == [401, 401, 401, 429, 429]
    for answer in answers[:3]:
        assert_problem(answer, 401)
        assert '"per-address";q=3;w=60' in answer.headers["ratelimit-policy"]
    refused = assert_problem(answers[3], 429)
    assert refused["limit"] == "per-address"
    assert 0 < int(answers[3].headers["retry-after"]) <= 60


async def test_a_valid_credential_from_a_limited_address_is_limited_too(
    limited: RunningGateway, platform: Platform
) -> None:
    # The guesses used up the address: the rule counts every caller from it, found or not.
    for _ in range(3):
        guess = await limited.client.get(QUOTES, headers={"X-API-Key": "garbage"})
        assert guess.status_code == 401
    alice = await bearer_headers(platform, username="alice")

    after = await limited.client.get("/web/v1/dashboard", headers=alice)

    assert assert_problem(after, 429)["limit"] == "per-address"
