"""POST /web/v1/batch: sub-requests run through the whole policy chain, each answered in order."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.settings import BatchSettings, RateLimitSettings, Settings
from backends.launcher import Platform
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import bearer_headers
from tests.fixtures.platform_control import PlatformControl, platform_control
from tests.fixtures.problems import assert_problem, field_errors

BATCH = "/web/v1/batch"
BACKEND_ORDERS = "POST /accounts/ACC-1001/orders"
RESTING_BUY = {"symbol": "AAPL", "side": "buy", "type": "limit", "quantity": 1, "limit_price": 1.0}


async def _signed_in(settings: Settings, platform: Platform) -> AsyncIterator[RunningGateway]:
    async with running_gateway(settings) as running:
        running.client.headers.update(await bearer_headers(platform, username="alice"))
        yield running


@pytest.fixture
async def alice(settings: Settings, platform: Platform) -> AsyncIterator[RunningGateway]:
    async for running in _signed_in(settings, platform):
        yield running


@pytest.fixture
async def control(platform: Platform) -> AsyncIterator[PlatformControl]:
    async with platform_control(platform) as steering:
        yield steering


def get(path: str, **headers: str) -> dict[str, Any]:
    return {"method": "GET", "path": path, "headers": headers}


def order(key: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "method": "POST",
        "path": "/web/v1/orders",
        "headers": {"Idempotency-Key": key},
        "body": RESTING_BUY if body is None else body,
    }


async def test_mixed_outcomes_each_answered_in_order(
    alice: RunningGateway, control: PlatformControl
) -> None:
    key = f"batch-{uuid.uuid4()}"
    batch = {
        "requests": [
            get("/web/v1/symbols/AAPL"),
            get("/web/v1/symbols/ZZZZ"),
            get("/web/v1/orders?status=done"),
            order(key),
            get("/web/v2/orders?status=open&limit=2"),
        ]
    }
    await control.reset_stats("orders")

    response = await alice.client.post(BATCH, json=batch)

    assert response.status_code == 200, response.text
    answers = response.json()["responses"]
    assert [a["status"] for a in answers] == [200, 404, 422, 201, 200]
    assert answers[0]["body"]["symbol"] == "AAPL"
    assert answers[0]["headers"]["content-type"] == "application/json"
    assert answers[1]["body"]["status"] == 404
    assert answers[1]["headers"]["content-type"] == "application/problem+json"
    assert answers[2]["body"]["errors"][0]["field"] == "query.status"
    placed = answers[3]["body"]
    assert placed["status"] == "open" and placed["symbol"] == "AAPL"
    assert answers[4]["body"]["items"] and len(answers[4]["body"]["items"]) <= 2
    # Each sub-request is a request of its own: its id names the batch's, its limits apply.
    batch_id = response.headers["x-request-id"]
    assert [a["headers"]["x-request-id"] for a in answers] == [f"{batch_id}.{i}" for i in range(5)]
    assert all("ratelimit" in a["headers"] for a in answers)
    # v1 routes say they are superseded, inside a batch too.
    assert "successor-version" in answers[0]["headers"]["link"]

    # The batch retried with the same key places nothing more: the first order is replayed.
    again = await alice.client.post(BATCH, json=batch)
    replayed = again.json()["responses"][3]
    assert replayed["status"] == 201
    assert replayed["headers"]["idempotent-replayed"] == "true"
    assert replayed["body"] == placed
    assert (await control.requests("orders"))[BACKEND_ORDERS] == 1


async def test_an_order_without_its_key_fails_alone(
    alice: RunningGateway, control: PlatformControl
) -> None:
    await control.reset_stats("orders")
    keyless = {"method": "POST", "path": "/web/v1/orders", "body": RESTING_BUY}

    response = await alice.client.post(BATCH, json={"requests": [keyless, get("/web/v1/bots")]})

    answers = response.json()["responses"]
    assert [a["status"] for a in answers] == [422, 200]
    assert answers[0]["body"]["errors"][0]["field"] == "header.Idempotency-Key"
    assert BACKEND_ORDERS not in await control.requests("orders")


async def test_each_sub_request_counts_against_the_limits(
    settings: Settings, platform: Platform
) -> None:
    # Five requests a minute per user: the batch itself is one, so four of its eight run.
    limited = settings.model_copy(
        update={"rate_limit": RateLimitSettings(user_limit=5, user_period_s=60)}
    )
    async for alice in _signed_in(limited, platform):
        batch = {"requests": [get("/web/v2/bots")] * 8}

        response = await alice.client.post(BATCH, json=batch)

        assert response.status_code == 200, response.text
        statuses = [a["status"] for a in response.json()["responses"]]
        assert sorted(statuses) == [200] * 4 + [429] * 4
        refused = next(a for a in response.json()["responses"] if a["status"] == 429)
        assert int(refused["headers"]["retry-after"]) >= 1
        assert refused["body"]["status"] == 429
        # The limit is spent: the next plain request is refused too.
        assert (await alice.client.get("/web/v2/bots")).status_code == 429


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/admin/v1/services", "path"),
        ("GET", "/auth/whoami", "path"),
        ("GET", "/web/v1/openapi.json", "path"),
        ("POST", "/web/v1/batch", "path"),
        ("GET", "/web/v2/batch", "path"),
        ("GET", "/web/v1/stream/quotes?symbols=AAPL", "path"),
        ("GET", "/mobile/v1/home", "path"),
        ("GET", "/web/v1/../../admin/v1/services", "path"),
        ("GET", "/partner/v1/quotes?symbols=AAPL", "path"),
        ("POST", "/web/v1/bots/bot-momentum-1/start", "method"),
    ],
)
async def test_what_a_batch_cannot_reach_refuses_it_whole(
    alice: RunningGateway, control: PlatformControl, method: str, path: str, field: str
) -> None:
    await control.reset_stats("orders")
    batch = {
        "requests": [order(f"batch-{uuid.uuid4()}"), {"method": method, "path": path, "body": {}}]
    }

    problem = assert_problem(await alice.client.post(BATCH, json=batch), 422)

    assert field_errors(problem) == {f"body.requests.1.{field}"}
    # Nothing ran: no order was sent.
    assert BACKEND_ORDERS not in await control.requests("orders")


async def test_a_batch_over_the_size_limit_is_a_422(settings: Settings, platform: Platform) -> None:
    small = settings.model_copy(update={"batch": BatchSettings(max_requests=3, concurrency=2)})
    async for alice in _signed_in(small, platform):
        over = await alice.client.post(BATCH, json={"requests": [get("/web/v1/bots")] * 4})
        problem = assert_problem(over, 422)
        assert field_errors(problem) == {"body.requests"}
        assert "at most 3" in problem["detail"]

        within = await alice.client.post(BATCH, json={"requests": [get("/web/v1/bots")] * 3})
        assert [a["status"] for a in within.json()["responses"]] == [200] * 3

        empty = await alice.client.post(BATCH, json={"requests": []})
        assert_problem(empty, 422)


async def test_a_batch_needs_credentials(gateway: RunningGateway) -> None:
    response = await gateway.client.post(BATCH, json={"requests": [get("/web/v1/bots")]})

    assert_problem(response, 401)


async def test_the_mobile_app_batches_its_own_routes(alice: RunningGateway) -> None:
    batch = {"requests": [get("/mobile/v1/home"), get("/mobile/v1/quotes?symbols=AAPL,MSFT")]}

    response = await alice.client.post("/mobile/v1/batch", json=batch)

    assert response.status_code == 200, response.text
    answers = response.json()["responses"]
    assert [a["status"] for a in answers] == [200, 200]
    assert {q["symbol"] for q in answers[1]["body"]["quotes"]} == {"AAPL", "MSFT"}
    # The web routes are the web batch's.
    web = await alice.client.post("/mobile/v1/batch", json={"requests": [get("/web/v2/bots")]})
    assert field_errors(assert_problem(web, 422)) == {"body.requests.0.path"}


async def test_credentials_are_the_batch_s_never_a_sub_request_s(
    alice: RunningGateway, platform: Platform
) -> None:
    bob = await bearer_headers(platform, username="bob")
    batch = {"requests": [get("/web/v2/orders?limit=1", Authorization=bob["Authorization"])]}

    answers = (await alice.client.post(BATCH, json=batch)).json()["responses"]
    alices = (await alice.client.get("/web/v2/orders", params={"limit": 1})).json()

    assert answers[0]["status"] == 200
    assert answers[0]["body"]["items"] == alices["items"]
