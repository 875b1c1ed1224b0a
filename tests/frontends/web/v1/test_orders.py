"""Orders through /web/v1: list, place (idempotently), cancel; bad orders stop at the gateway."""

import uuid
from typing import Any

import pytest

from tests.fixtures.gateway import RunningGateway
from tests.fixtures.platform_control import PlatformControl
from tests.fixtures.problems import assert_problem, field_errors

ORDERS = "/web/v1/orders"
BACKEND_ORDERS = "POST /accounts/ACC-1001/orders"
# A buy limit far below the market rests on the book, so it stays open.
RESTING_BUY = {"symbol": "AAPL", "side": "buy", "type": "limit", "quantity": 1, "limit_price": 1.0}


def new_key() -> dict[str, str]:
    return {"Idempotency-Key": f"test-{uuid.uuid4()}"}


async def test_list_orders_by_status(alice: RunningGateway) -> None:
    everything = await alice.client.get(ORDERS)
    working = await alice.client.get(ORDERS, params={"status": "open"})

    assert everything.status_code == working.status_code == 200
    assert everything.json()["status"] == "all"
    open_orders = working.json()["orders"]
    assert open_orders and {o["status"] for o in open_orders} == {"open"}
    assert everything.json()["total"] > working.json()["total"] >= len(open_orders)


async def test_unknown_status_is_rejected(alice: RunningGateway) -> None:
    problem = assert_problem(await alice.client.get(ORDERS, params={"status": "done"}), 422)
    assert problem["errors"][0]["field"] == "query.status"


async def test_place_and_replay_one_order(alice: RunningGateway, control: PlatformControl) -> None:
    key = new_key()
    before = (await alice.client.get(ORDERS)).json()["total"]
    await control.reset_stats("orders")

    first = await alice.client.post(ORDERS, json=RESTING_BUY, headers=key)
    again = await alice.client.post(ORDERS, json=RESTING_BUY, headers=key)

    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    order = first.json()
    assert order["status"] == "open" and order["symbol"] == "AAPL"
    assert order["limit_price"] == 1.0
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == order
    assert (await control.requests("orders"))[BACKEND_ORDERS] == 1
    after = (await alice.client.get(ORDERS)).json()
    assert after["total"] == before + 1
    # Newest first: the order leads the first page, once.
    assert [o["order_id"] for o in after["orders"]].count(order["order_id"]) == 1
    assert after["orders"][0]["order_id"] == order["order_id"]
    headers = await control.last_headers("orders", BACKEND_ORDERS)
    assert headers["idempotency-key"] == key["Idempotency-Key"]


async def test_same_key_different_order_is_rejected(alice: RunningGateway) -> None:
    key = new_key()
    first = await alice.client.post(ORDERS, json=RESTING_BUY, headers=key)
    changed = await alice.client.post(ORDERS, json={**RESTING_BUY, "quantity": 2}, headers=key)

    assert first.status_code == 201
    assert_problem(changed, 422)


async def test_cancel_twice_is_a_conflict(alice: RunningGateway) -> None:
    placed = await alice.client.post(ORDERS, json=RESTING_BUY, headers=new_key())
    order_id = placed.json()["order_id"]

    cancelled = await alice.client.delete(f"{ORDERS}/{order_id}")
    again = await alice.client.delete(f"{ORDERS}/{order_id}")

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    problem = assert_problem(again, 409)
    assert order_id in problem["detail"]


async def test_cancel_unknown_order_is_a_404(alice: RunningGateway) -> None:
    assert_problem(await alice.client.delete(f"{ORDERS}/ord_000000000000"), 404)


async def test_malformed_order_id_is_a_422(alice: RunningGateway) -> None:
    problem = assert_problem(await alice.client.delete(f"{ORDERS}/bad%20id!"), 422)
    assert problem["errors"][0]["field"] == "path.order_id"


# Each change breaks one rule of a valid order; the detail must name the field it broke.
INVALID_ORDERS: list[tuple[dict[str, Any], str]] = [
    ({"symbol": "aapl"}, "symbol"),
    ({"side": "hold"}, "side"),
    ({"type": "trailing"}, "type"),
    ({"quantity": 0}, "quantity"),
    ({"quantity": 2_000_000}, "quantity"),
    ({"time_in_force": "forever"}, "time_in_force"),
    ({"limit_price": None}, "limit_price"),
    ({"type": "market"}, "limit_price"),
    ({"type": "stop", "limit_price": None}, "stop_price"),
    ({"stop_price": 2.0}, "stop_price"),
    ({"limit_price": -5}, "limit_price"),
    ({"note": "hello"}, "note"),
]


async def test_invalid_orders_never_reach_the_orders_service(
    alice: RunningGateway, control: PlatformControl
) -> None:
    await control.reset_stats("orders")

    for change, field in INVALID_ORDERS:
        response = await alice.client.post(
            ORDERS, json={**RESTING_BUY, **change}, headers=new_key()
        )
        problem = assert_problem(response, 422)
        assert field in problem["detail"], (change, problem["detail"])

    assert await control.requests("orders") == {}


MARKET_BUY = {"symbol": "AAPL", "side": "buy", "type": "market", "quantity": 1}

# JSON values of the wrong type that lax validation would convert into an order.
WRONG_TYPES: list[tuple[dict[str, Any], str]] = [
    ({**MARKET_BUY, "quantity": True}, "body.quantity"),
    ({**MARKET_BUY, "quantity": "2"}, "body.quantity"),
    ({**MARKET_BUY, "quantity": [1]}, "body.quantity"),
    ({**RESTING_BUY, "limit_price": True}, "body.limit_price"),
    ({**RESTING_BUY, "limit_price": "1.0"}, "body.limit_price"),
    ({**RESTING_BUY, "type": "stop_limit", "stop_price": False}, "body.stop_price"),
]


@pytest.mark.parametrize(("order", "field"), WRONG_TYPES)
async def test_quantities_and_prices_must_be_json_numbers(
    alice: RunningGateway, control: PlatformControl, order: dict[str, Any], field: str
) -> None:
    await control.reset_stats("orders")

    response = await alice.client.post(ORDERS, json=order, headers=new_key())

    problem = assert_problem(response, 422)
    assert field_errors(problem) == {field}
    assert field in problem["detail"]
    assert await control.requests("orders") == {}


async def test_missing_idempotency_key_is_a_422(
    alice: RunningGateway, control: PlatformControl
) -> None:
    await control.reset_stats("orders")

    response = await alice.client.post(ORDERS, json=RESTING_BUY)

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["field"] == "header.Idempotency-Key"
    assert await control.requests("orders") == {}
