"""POST /mobile/v1/orders: idempotent order entry with a compact answer."""

import uuid
from typing import Any

import pytest

from tests.fixtures.gateway import RunningGateway
from tests.fixtures.platform_control import PlatformControl
from tests.fixtures.problems import assert_problem, field_errors

ORDERS = "/mobile/v1/orders"
ORDER = {"symbol": "AAPL", "side": "buy", "type": "limit", "quantity": 2, "limit_price": 150.0}


async def test_order_is_placed_and_a_replay_returns_it(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    await backends.reset_stats("orders")
    key = {"Idempotency-Key": f"mobile-{uuid.uuid4()}"}

    first = await gateway.client.post(ORDERS, json=ORDER, headers=key)
    again = await gateway.client.post(ORDERS, json=ORDER, headers=key)

    assert first.status_code == 201, first.text
    order = first.json()
    assert set(order) == {"order_id", "id", "status", "symbol", "side", "quantity", "type"}
    # `id` is the deprecated name of `order_id`, kept while clients move.
    assert order["id"] == order["order_id"]
    assert (order["symbol"], order["side"], order["type"], order["quantity"]) == (
        "AAPL",
        "buy",
        "limit",
        2,
    )
    assert "idempotent-replayed" not in first.headers
    assert again.status_code == 201, again.text
    assert again.json() == order
    assert again.headers["idempotent-replayed"] == "true"
    held = await backends.get("orders", "/accounts/ACC-1001/orders")
    assert sum(1 for o in held["orders"] if o["order_id"] == order["id"]) == 1


async def test_a_replay_by_the_orders_service_is_passed_on(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    key = f"mobile-{uuid.uuid4()}"
    # Placed earlier, e.g. through another gateway process whose answer the client missed.
    direct = await backends.client.post(
        backends.platform.urls["orders"][0] + "/accounts/ACC-1001/orders",
        json={**ORDER, "stop_price": None, "time_in_force": "day"},
        headers={"Idempotency-Key": key},
    )
    assert direct.status_code == 201, direct.text

    response = await gateway.client.post(ORDERS, json=ORDER, headers={"Idempotency-Key": key})

    assert response.status_code == 201, response.text
    assert response.json()["id"] == direct.json()["order_id"]
    assert response.headers["idempotent-replayed"] == "true"


async def test_missing_idempotency_key_is_refused(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    await backends.reset_stats("orders")

    response = await gateway.client.post(ORDERS, json=ORDER)

    assert field_errors(assert_problem(response, 422)) == {"header.Idempotency-Key"}
    assert await backends.requests("orders") == {}


async def test_invalid_order_is_refused(gateway: RunningGateway, backends: PlatformControl) -> None:
    await backends.reset_stats("orders")
    market_with_price = {**ORDER, "type": "market"}

    response = await gateway.client.post(
        ORDERS, json=market_with_price, headers={"Idempotency-Key": f"mobile-{uuid.uuid4()}"}
    )

    assert_problem(response, 422)
    assert "limit_price" in response.json()["detail"]
    assert await backends.requests("orders") == {}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "market", "limit_price": None, "quantity": True}, "body.quantity"),
        ({"quantity": "2"}, "body.quantity"),
        ({"limit_price": True}, "body.limit_price"),
        ({"limit_price": "150"}, "body.limit_price"),
    ],
)
async def test_wrong_json_types_are_refused(
    gateway: RunningGateway, backends: PlatformControl, change: dict[str, Any], field: str
) -> None:
    await backends.reset_stats("orders")
    order = {k: v for k, v in {**ORDER, **change}.items() if v is not None}

    response = await gateway.client.post(
        ORDERS, json=order, headers={"Idempotency-Key": f"mobile-{uuid.uuid4()}"}
    )

    assert field_errors(assert_problem(response, 422)) == {field}
    assert await backends.requests("orders") == {}
