"""Typed client of the orders service."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from app.errors import UpstreamRejected
from app.upstreams.caller import UpstreamCaller

SERVICE = "orders"


class OrderSide(StrEnum):
    buy = "buy"
    sell = "sell"


class OrderType(StrEnum):
    market = "market"
    limit = "limit"
    stop = "stop"
    stop_limit = "stop_limit"


class TimeInForce(StrEnum):
    day = "day"
    gtc = "gtc"
    ioc = "ioc"
    fok = "fok"


class OrderStatus(StrEnum):
    open = "open"
    filled = "filled"
    cancelled = "cancelled"
    rejected = "rejected"


class Order(BaseModel):
    order_id: str
    account_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    quantity: float
    limit_price: float | None = None
    stop_price: float | None = None
    time_in_force: TimeInForce
    status: OrderStatus
    filled_quantity: float
    average_fill_price: float | None = None
    created_at: datetime
    updated_at: datetime


class PlacedOrder(BaseModel):
    """The order, and whether the orders service replayed an earlier result for the key."""

    order: Order
    replayed: bool


class _Orders(BaseModel):
    orders: list[Order]


class OrdersClient:
    def __init__(self, caller: UpstreamCaller) -> None:
        self._caller = caller

    async def orders(self, account_id: str, *, status: str = "all") -> list[Order]:
        path = f"/accounts/{account_id}/orders"
        params = {"status": status}
        return (await self._caller.fetch(SERVICE, "GET", path, _Orders, params=params)).orders

    async def place(
        self, account_id: str, order: dict[str, Any], *, idempotency_key: str
    ) -> PlacedOrder:
        """Place an order; the key makes a repeat return the first order, not a second one."""
        response = await self._caller.request(
            SERVICE,
            "POST",
            f"/accounts/{account_id}/orders",
            json_body=order,
            headers={"idempotency-key": idempotency_key},
        )
        if response.status >= 400:
            raise UpstreamRejected(response.detail(), status=response.status, service=SERVICE)
        replayed = response.headers.get("idempotent-replayed", "").lower() == "true"
        return PlacedOrder(order=response.model(Order), replayed=replayed)

    async def cancel(self, account_id: str, order_id: str) -> Order:
        path = f"/accounts/{account_id}/orders/{order_id}"
        return await self._caller.fetch(SERVICE, "DELETE", path, Order)
