"""Typed client of the orders service.

The service's contract for listing, as the gateway relies on it:

    GET /accounts/{account_id}/orders?status=&symbol=&limit=&after=
    -> 200 {"orders": [...], "total": <int>, "next_after": <order id> | null}

Orders come newest first, filtered by `status` (`all` by default) and `symbol` (every
symbol when left out). Without `limit` the answer holds every matching order; with `limit`
(1 to 500) it holds at most that many, those placed before order `after`, and `next_after`
names the last of them when more follow (pass it as `after` for the next page). A page
starts at the order's place in the book, so orders placed or cancelled while a client
pages neither repeat nor drop the others. `total` counts every matching order. An `after`
that names no order of the account is a 422. The gateway always asks for a page: an
account can hold tens of thousands of orders.
"""

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


class OrderPage(BaseModel):
    """One page of an account's orders, newest first."""

    orders: list[Order]
    total: int
    next_after: str | None = None


class UnknownOrderCursor(UpstreamRejected):
    """The orders service knows no order by the id a page was asked to start after."""


class OrdersClient:
    def __init__(self, caller: UpstreamCaller) -> None:
        self._caller = caller

    async def orders(self, account_id: str, *, status: str = "all") -> list[Order]:
        """Every matching order, however many: for tools and tests; views ask for a `page`."""
        path = f"/accounts/{account_id}/orders"
        params = {"status": status}
        return (await self._caller.fetch(SERVICE, "GET", path, OrderPage, params=params)).orders

    async def page(
        self,
        account_id: str,
        *,
        limit: int,
        status: str = "all",
        symbol: str | None = None,
        after: str | None = None,
    ) -> OrderPage:
        """At most `limit` matching orders, newest first, those placed before order `after`."""
        params = {"status": status, "limit": str(limit)}
        if symbol is not None:
            params["symbol"] = symbol
        if after is not None:
            params["after"] = after
        response = await self._caller.request(
            SERVICE, "GET", f"/accounts/{account_id}/orders", params=params
        )
        if response.status == 422 and after is not None:
            # The gateway checks every other parameter itself, so the 422 is about `after`.
            raise UnknownOrderCursor(response.detail(), status=422, service=SERVICE)
        if response.status >= 400:
            raise UpstreamRejected(response.detail(), status=response.status, service=SERVICE)
        return response.model(OrderPage)

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
