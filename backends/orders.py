"""Orders service: list, place (idempotently) and cancel orders."""

from typing import Annotated, Literal

from fastapi import FastAPI, Header, HTTPException, Response
from pydantic import BaseModel

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


class OrderList(BaseModel):
    orders: list[Order]


def create_app(*, instance: str, seed: int) -> FastAPI:
    """The orders ASGI app, with a few historical orders per demo account."""
    app = create_service_app(SERVICE_NAME, instance)
    book = OrderBook(PriceWalk(seed))
    book.seed_demo_orders(seed)

    @app.get("/accounts/{account_id}/orders", response_model=OrderList)
    async def list_orders(account_id: str, status: StatusFilter = "all") -> OrderList:
        """Orders of one account, newest first."""
        account_or_404(account_id)
        return OrderList(orders=book.orders(account_id, None if status == "all" else status))

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
