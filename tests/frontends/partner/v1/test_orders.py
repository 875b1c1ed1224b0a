"""POST /partner/v1/orders: order entry in the partner's linked accounts only."""

import uuid
from typing import Any

import pytest

from tests.fixtures.gateway import RunningGateway
from tests.fixtures.platform_control import PlatformControl
from tests.fixtures.problems import assert_problem, field_errors

ORDERS = "/partner/v1/orders"
ORDER = {
    "account_id": "ACC-2001",
    "symbol": "MSFT",
    "side": "buy",
    "type": "limit",
    "quantity": 5,
    "limit_price": 300.0,
}


def idempotency_key() -> dict[str, str]:
    return {"Idempotency-Key": f"partner-{uuid.uuid4()}"}


async def test_order_in_a_linked_account(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    await backends.reset_stats("orders")
    key = idempotency_key()

    response = await gateway.client.post(ORDERS, json=ORDER, headers=key)

    assert response.status_code == 201, response.text
    order = response.json()
    assert order["account_id"] == "ACC-2001"
    assert (order["symbol"], order["side"], order["type"], order["quantity"]) == (
        "MSFT",
        "buy",
        "limit",
        5,
    )
    assert order["status"] in {"open", "filled"}
    assert await backends.requests("orders") == {"POST /accounts/ACC-2001/orders": 1}
    held = await backends.get("orders", "/accounts/ACC-2001/orders")
    assert order["order_id"] in {o["order_id"] for o in held["orders"]}


async def test_replay_returns_the_same_order(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    key = idempotency_key()
    order = {**ORDER, "account_id": "ACC-2002", "symbol": "NVDA", "limit_price": 90.0}

    first = await gateway.client.post(ORDERS, json=order, headers=key)
    again = await gateway.client.post(ORDERS, json=order, headers=key)

    assert first.status_code == again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    held = await backends.get("orders", "/accounts/ACC-2002/orders")
    assert [o["order_id"] for o in held["orders"]].count(first.json()["order_id"]) == 1


async def test_foreign_account_is_forbidden(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    await backends.reset_stats("orders")

    response = await gateway.client.post(
        ORDERS, json={**ORDER, "account_id": "ACC-1001"}, headers=idempotency_key()
    )

    problem = assert_problem(response, 403)
    assert "ACC-1001" in problem["detail"]
    assert await backends.requests("orders") == {}


async def test_missing_idempotency_key_is_refused(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    await backends.reset_stats("orders")

    response = await gateway.client.post(ORDERS, json=ORDER)

    assert field_errors(assert_problem(response, 422)) == {"header.Idempotency-Key"}
    assert await backends.requests("orders") == {}


async def test_malformed_account_id_is_refused(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    await backends.reset_stats("orders")

    response = await gateway.client.post(
        ORDERS, json={**ORDER, "account_id": "2001"}, headers=idempotency_key()
    )

    assert field_errors(assert_problem(response, 422)) == {"body.account_id"}
    assert await backends.requests("orders") == {}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "market", "limit_price": None, "quantity": True}, "body.quantity"),
        ({"quantity": "5"}, "body.quantity"),
        ({"limit_price": True}, "body.limit_price"),
        ({"limit_price": "300.0"}, "body.limit_price"),
        ({"account_id": 2001}, "body.account_id"),
    ],
)
async def test_wrong_json_types_are_refused(
    gateway: RunningGateway, backends: PlatformControl, change: dict[str, Any], field: str
) -> None:
    await backends.reset_stats("orders")
    order = {k: v for k, v in {**ORDER, **change}.items() if v is not None}

    response = await gateway.client.post(ORDERS, json=order, headers=idempotency_key())

    assert field_errors(assert_problem(response, 422)) == {field}
    assert await backends.requests("orders") == {}
