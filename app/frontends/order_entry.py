"""Order entry shared by every frontend: the validated request and the one way to place it.

Each frontend exposes `POST /orders` with its own response model, but the rules of a valid
order and the path to the orders service are the same, so they live here once.
"""

from typing import Annotated, Any

from fastapi import Header
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, ValidationInfo, field_validator

from app.domain import SYMBOL_PATTERN
from app.errors import UpstreamRejected
from app.policy.idempotency import IdempotencyScope, Outcome, fingerprint
from app.upstreams.orders import (
    Order,
    OrdersClient,
    OrderSide,
    OrderType,
    PlacedOrder,
    TimeInForce,
)

IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9_\-:.]{8,128}$"

Symbol = Annotated[
    str,
    Field(pattern=SYMBOL_PATTERN, description="Ticker symbol, upper case", examples=["AAPL"]),
]

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description=(
            "Unique per intended order (8-128 characters). A repeat with the same key and "
            "body returns the first result instead of placing a second order."
        ),
        examples=["3f1c9b7e-4a2d-4b8e-9c1f-2e7d5a6b8c90"],
    ),
]


_PRICED_BY_TYPE = {
    "limit_price": frozenset({OrderType.limit, OrderType.stop_limit}),
    "stop_price": frozenset({OrderType.stop, OrderType.stop_limit}),
}
# The prices each order type requires; every other price is not allowed. The OpenAPI
# documents split an order request by `type` along these lines (`app.openapi`).
PRICES_BY_TYPE: dict[OrderType, frozenset[str]] = {
    order_type: frozenset(price for price, types in _PRICED_BY_TYPE.items() if order_type in types)
    for order_type in OrderType
}


PLACED_ORDER_RESPONSE: dict[str, Any] = {
    "description": "The order; on a replay of the same key, the first order again",
    "headers": {
        "Idempotent-Replayed": {
            "description": "`true` when the order was placed by an earlier request "
            "with the same Idempotency-Key",
            "schema": {"type": "string", "enum": ["true"]},
        }
    },
}


class OrderRequest(BaseModel):
    """A new order. Prices are required or forbidden according to the order type."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "symbol": "AAPL",
                    "side": "buy",
                    "type": "limit",
                    "quantity": 10,
                    "limit_price": 187.5,
                    "time_in_force": "day",
                }
            ]
        },
    )

    symbol: Symbol
    side: OrderSide
    type: OrderType
    # Strict: a JSON number only. Lax validation would take `true` as one share and "2" as two.
    quantity: StrictFloat = Field(gt=0, le=1_000_000, description="Shares; fractions allowed")
    limit_price: StrictFloat | None = Field(
        None, gt=0, le=1_000_000, validate_default=True, description="Required for limit orders"
    )
    stop_price: StrictFloat | None = Field(
        None, gt=0, le=1_000_000, validate_default=True, description="Required for stop orders"
    )
    time_in_force: TimeInForce = TimeInForce.day

    @field_validator("limit_price", "stop_price")
    @classmethod
    def _price_matches_type(cls, price: float | None, info: ValidationInfo) -> float | None:
        """Checked per field, so the error names `limit_price` or `stop_price` itself."""
        order_type = info.data.get("type")
        if order_type is None:  # the type failed validation; its own error says enough
            return price
        needed = order_type in _PRICED_BY_TYPE[info.field_name or ""]
        if needed and price is None:
            raise ValueError(f"{info.field_name} is required for {order_type.value} orders")
        if not needed and price is not None:
            raise ValueError(f"{info.field_name} is not allowed for {order_type.value} orders")
        return price


# Upstream refusals that say "not now" rather than "no": the key is released for a retry.
_RETRYABLE_REJECTIONS = frozenset({408, 425, 429})


async def place_order(
    orders: OrdersClient,
    *,
    account_id: str,
    order: OrderRequest,
    idempotency_key: str,
    idempotency: IdempotencyScope,
) -> PlacedOrder:
    """Place the order at most once per idempotency key, replaying the first outcome.

    The key is also forwarded to the orders service, which deduplicates on it too.
    """
    body = order.model_dump(mode="json")
    # The orders service may itself replay (a retry after an ambiguous failure).
    upstream_replayed = False

    async def attempt() -> Outcome:
        nonlocal upstream_replayed
        try:
            placed = await orders.place(account_id, body, idempotency_key=idempotency_key)
            upstream_replayed = placed.replayed
        except UpstreamRejected as exc:
            if exc.status in _RETRYABLE_REJECTIONS:
                raise
            return Outcome(status=exc.status, body={"detail": exc.detail, "service": exc.service})
        return Outcome(status=201, body=placed.order.model_dump(mode="json"))

    outcome, replayed = await idempotency.ledger.run(
        scope=f"{idempotency.caller}\x00{account_id}",
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint(body),
        attempt=attempt,
    )
    if outcome.status >= 400:
        raise UpstreamRejected(
            str(outcome.body.get("detail", "The orders service refused the order.")),
            status=outcome.status,
            service=str(outcome.body.get("service", "orders")),
        )
    return PlacedOrder(
        order=Order.model_validate(outcome.body), replayed=replayed or upstream_replayed
    )
