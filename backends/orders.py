"""Orders service: list (a page at a time), place (idempotently) and cancel orders."""

from typing import Annotated, Literal

from fastapi import FastAPI, Header, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from backends.catalog import INSTRUMENTS
from backends.order_book import (
    IdempotencyConflict,
    Order,
    OrderBook,
    OrderNotCancellable,
    OrderNotFound,
    OrderRequest,
)
from backends.price_walk import PriceWalk
from backends.service_app import account_or_404, create_service_app

SERVICE_NAME = "orders"

StatusFilter = Literal["open", "filled", "cancelled", "rejected", "all"]


# The most orders one page may hold.
MAX_PAGE = 500


class OrderList(BaseModel):
    orders: list[Order]
    total: int
    next_after: str | None


class OpenOrderSeed(BaseModel):
    """How many resting orders to add to an account, in which symbol."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=100_000, strict=True)
    symbol: str = "AAPL"

    @field_validator("symbol")
    @classmethod
    def known_symbol(cls, symbol: str) -> str:
        if symbol not in INSTRUMENTS:
            raise ValueError(f"Unknown symbol: {symbol}")
        return symbol


class SeededOrders(BaseModel):
    open: int


def create_app(*, instance: str, seed: int) -> FastAPI:
    """The orders ASGI app, with a few historical orders per demo account."""
    app = create_service_app(SERVICE_NAME, instance)
    book = OrderBook(PriceWalk(seed))
    book.seed_demo_orders(seed)

    @app.get("/accounts/{account_id}/orders", response_model=OrderList)
    async def list_orders(
        account_id: str,
        status: StatusFilter = "all",
        symbol: Annotated[str | None, Query(min_length=1, max_length=16)] = None,
        limit: Annotated[int | None, Query(ge=1, le=MAX_PAGE)] = None,
        after: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    ) -> OrderList:
        """Orders of one account, newest first: all of them, or with `limit` one page.

        A page holds the orders after order `after` (the previous page's `next_after`);
        `total` counts every order matching `status` and `symbol`. An `after` that names
        no order of the account is a 422.
        """
        account_or_404(account_id)
        try:
            page = book.page(
                account_id,
                status=None if status == "all" else status,
                symbol=symbol,
                after=after,
                limit=limit,
            )
        except OrderNotFound as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return OrderList(orders=page.orders, total=page.total, next_after=page.next_after)

    # Development and tests only, so not in the service's documented contract.
    @app.post(
        "/__seed/accounts/{account_id}/open-orders",
        response_model=SeededOrders,
        status_code=201,
        include_in_schema=False,
    )
    async def seed_open_orders(account_id: str, seed: OpenOrderSeed) -> SeededOrders:
        """Rest many open orders in an account at once, e.g. to load a busy trader's views."""
        account_or_404(account_id)
        return SeededOrders(
            open=book.rest_open_orders(account_id, count=seed.count, symbol=seed.symbol)
        )

    @app.post("/accounts/{account_id}/orders", response_model=Order, status_code=201)
    async def place_order(
        account_id: str,
        request: OrderRequest,
        response: Response,
        idempotency_key: Annotated[
            str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
        ] = None,
    ) -> Order:
        """Place an order; a repeated Idempotency-Key returns the original order with 200."""
        account_or_404(account_id)
        try:
            placement = book.place(account_id, request, idempotency_key)
        except IdempotencyConflict as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        if placement.replayed:
            response.status_code = 200
            response.headers["Idempotent-Replayed"] = "true"
        return placement.order

    @app.delete("/accounts/{account_id}/orders/{order_id}", response_model=Order)
    async def cancel_order(account_id: str, order_id: str) -> Order:
        """Cancel an open order."""
        account_or_404(account_id)
        try:
            return book.cancel(account_id, order_id)
        except OrderNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        except OrderNotCancellable as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc

    return app
