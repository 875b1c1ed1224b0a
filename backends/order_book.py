"""The order book behind the orders service: validation rules, fills, cancels, idempotency."""

import json
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator, model_validator

from backends.catalog import ACCOUNTS, INSTRUMENTS, DemoAccount
from backends.clock import DAY_SECONDS, iso_utc
from backends.determinism import stable_seed
from backends.price_walk import PriceWalk
from backends.quotes import QuoteBoard

OrderSide = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop", "stop_limit"]
TimeInForce = Literal["day", "gtc", "ioc", "fok"]
OrderStatus = Literal["open", "filled", "cancelled", "rejected"]

IDEMPOTENCY_CONFLICT = "Idempotency-Key reused with a different request"
_LIMIT_TYPES = frozenset({"limit", "stop_limit"})
_STOP_TYPES = frozenset({"stop", "stop_limit"})


def _whole_as_int(value: float) -> int | float:
    # Clients see 10, not 10.0, for whole shares; fractional quantities stay floats.
    return int(value) if value.is_integer() else value


# Strict: a JSON string such as "10" or a boolean is a client bug, not a quantity.
ShareQuantity = Annotated[
    float, Field(ge=0, le=1_000_000, strict=True), PlainSerializer(_whole_as_int)
]
Price = Annotated[float, Field(gt=0, le=1_000_000, strict=True)]


class OrderRequest(BaseModel):
    """Body of ``POST /accounts/{account_id}/orders``."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True)

    symbol: str = Field(min_length=1, max_length=16)
    side: OrderSide
    order_type: OrderType = Field(alias="type")
    quantity: Annotated[ShareQuantity, Field(gt=0)]
    limit_price: Price | None = None
    stop_price: Price | None = None
    time_in_force: TimeInForce = "day"

    @field_validator("symbol")
    @classmethod
    def known_symbol(cls, symbol: str) -> str:
        ticker = symbol.strip().upper()
        if ticker not in INSTRUMENTS:
            raise ValueError(f"Unknown symbol: {symbol}")
        return ticker

    @model_validator(mode="after")
    def prices_match_order_type(self) -> Self:
        wants_limit = self.order_type in _LIMIT_TYPES
        wants_stop = self.order_type in _STOP_TYPES
        if wants_limit and self.limit_price is None:
            raise ValueError(f"limit_price is required for {self.order_type} orders")
        if not wants_limit and self.limit_price is not None:
            raise ValueError(f"limit_price is not allowed for {self.order_type} orders")
        if wants_stop and self.stop_price is None:
            raise ValueError(f"stop_price is required for {self.order_type} orders")
        if not wants_stop and self.stop_price is not None:
            raise ValueError(f"stop_price is not allowed for {self.order_type} orders")
        return self

    def fingerprint(self) -> str:
        """Canonical form used to tell an idempotent replay from a different request."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


class Order(BaseModel):
    """An order as the platform reports it."""

    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)

    order_id: str
    account_id: str
    symbol: str
    side: OrderSide
    order_type: OrderType = Field(alias="type")
    quantity: ShareQuantity
    limit_price: float | None
    stop_price: float | None
    time_in_force: TimeInForce
    status: OrderStatus
    filled_quantity: ShareQuantity
    average_fill_price: float | None
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class Placement:
    """Outcome of placing an order: the order and whether it was an idempotent replay."""

    order: Order
    replayed: bool


@dataclass(frozen=True, slots=True)
class OrderPage:
    """Orders of one page, newest first, and where the next page starts."""

    orders: list[Order]
    # Every order matching the filter, on whichever page.
    total: int
    # The id to pass as `after` for the next page; None on the last page.
    next_after: str | None


class OrderNotFound(LookupError):
    """No such order in this account."""


class OrderNotCancellable(Exception):
    """The order already reached a final state."""


class IdempotencyConflict(Exception):
    """An Idempotency-Key was reused with a different request body."""


class OrderBook:
    """In-memory orders per account.

    Every method is synchronous on purpose: on a single event loop, the
    idempotency check and the insert in ``place`` can never interleave with a
    concurrent duplicate request, so no lock is needed.
    """

    def __init__(self, walk: PriceWalk, clock: Callable[[], float] = time.time) -> None:
        self._quotes = QuoteBoard(walk)
        self._clock = clock
        # Insertion order is chronological, so newest-first is a reversal.
        self._orders: dict[str, dict[str, Order]] = {account_id: {} for account_id in ACCOUNTS}
        self._by_idempotency_key: dict[tuple[str, str], tuple[str, str]] = {}

    def orders(self, account_id: str, status: OrderStatus | None = None) -> list[Order]:
        """Orders of an account, newest first, optionally only those in ``status``."""
        return self.page(account_id, status=status).orders

    def page(
        self,
        account_id: str,
        *,
        status: OrderStatus | None = None,
        symbol: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> OrderPage:
        """Matching orders newest first, those placed before order ``after``, at most ``limit``.

        A page starts at a place in the book, not at a time or an offset: orders placed
        while a client pages sort before ``after``, and a cancelled order keeps its place,
        so paging shows every order that was there from the start exactly once.
        """
        book = self._orders[account_id]
        if after is not None and after not in book:
            raise OrderNotFound(f"after: no order {after} in account {account_id}")

        def wanted(order: Order) -> bool:
            return (status is None or order.status == status) and (
                symbol is None or order.symbol == symbol
            )

        total = sum(1 for order in book.values() if wanted(order))
        newest_first = iter(reversed(book.items()))
        if after is not None:
            for order_id, _ in newest_first:
                if order_id == after:
                    break
        matching = (order for _, order in newest_first if wanted(order))
        if limit is None:
            return OrderPage(orders=list(matching), total=total, next_after=None)
        orders = list(islice(matching, limit + 1))
        more = len(orders) > limit
        del orders[limit:]
        return OrderPage(
            orders=orders, total=total, next_after=orders[-1].order_id if more else None
        )

    def place(
        self, account_id: str, request: OrderRequest, idempotency_key: str | None = None
    ) -> Placement:
        """Accept an order; market orders fill at once, the rest rest on the book."""
        if idempotency_key is not None:
            previous = self._by_idempotency_key.get((account_id, idempotency_key))
            if previous is not None:
                fingerprint, order_id = previous
                if fingerprint != request.fingerprint():
                    raise IdempotencyConflict(IDEMPOTENCY_CONFLICT)
                return Placement(order=self._orders[account_id][order_id], replayed=True)
        order = self._new_order(
            account_id, request, self._clock(), order_id=f"ord_{secrets.token_hex(6)}"
        )
        self._orders[account_id][order.order_id] = order
        if idempotency_key is not None:
            self._by_idempotency_key[(account_id, idempotency_key)] = (
                request.fingerprint(),
                order.order_id,
            )
        return Placement(order=order, replayed=False)

    def cancel(self, account_id: str, order_id: str) -> Order:
        """Cancel an open order."""
        order = self._orders[account_id].get(order_id)
        if order is None:
            raise OrderNotFound(f"Order {order_id} not found")
        if order.status != "open":
            raise OrderNotCancellable(f"Order {order_id} is already {order.status}")
        cancelled = _cancelled(order, at=self._clock())
        self._orders[account_id][order_id] = cancelled
        return cancelled

    def rest_open_orders(self, account_id: str, *, count: int, symbol: str) -> int:
        """Rest ``count`` limit buys far below the market; how many orders are open now.

        Development and tests only: a book as busy as a heavy trader's, placed at once.
        """
        request = OrderRequest(
            symbol=symbol,
            side="buy",
            order_type="limit",
            quantity=1,
            limit_price=1.0,
            time_in_force="gtc",
        )
        now = self._clock()
        book = self._orders[account_id]
        for _ in range(count):
            order = self._new_order(
                account_id, request, now, order_id=f"ord_{secrets.token_hex(6)}"
            )
            book[order.order_id] = order
        return sum(1 for order in book.values() if order.status == "open")

    def seed_demo_orders(self, seed: int) -> None:
        """Give each demo account a short, plausible order history (same ids for the same seed)."""
        now = self._clock()
        for account in ACCOUNTS.values():
            rng = random.Random(stable_seed(seed, "orders", account.account_id))
            for order in self._demo_history(account, rng, now):
                self._orders[account.account_id][order.order_id] = order

    def _demo_history(self, account: DemoAccount, rng: random.Random, now: float) -> list[Order]:
        first, last = account.holdings[0].symbol, account.holdings[-1].symbol
        price_now = self._quotes.quote(first, int(now)).price

        def placed(days_ago: float) -> float:
            return now - days_ago * DAY_SECONDS - rng.uniform(0, 3_600)

        def order(placed_at: float, request: OrderRequest) -> Order:
            order_id = f"ord_{rng.getrandbits(48):012x}"
            return self._new_order(account.account_id, request, placed_at, order_id=order_id)

        stale_at = placed(1.1)
        # Priced 3% above the market of the day, so it plausibly never filled before cancelling.
        stale_limit = round(self._quotes.quote(last, int(stale_at)).price * 1.03, 2)
        return [
            order(
                placed(2.2),
                OrderRequest(symbol=first, side="buy", order_type="market", quantity=10),
            ),
            _cancelled(
                order(
                    stale_at,
                    OrderRequest(
                        symbol=last,
                        side="sell",
                        order_type="limit",
                        quantity=5,
                        limit_price=stale_limit,
                    ),
                ),
                at=stale_at + 600,
            ),
            order(
                placed(0.3),
                OrderRequest(symbol=last, side="buy", order_type="market", quantity=5),
            ),
            order(
                placed(0.2),
                OrderRequest(
                    symbol=first,
                    side="buy",
                    order_type="limit",
                    quantity=10,
                    limit_price=round(price_now * 0.95, 2),
                    time_in_force="gtc",
                ),
            ),
            order(
                placed(0.1),
                OrderRequest(
                    symbol=first,
                    side="sell",
                    order_type="stop",
                    quantity=10,
                    stop_price=round(price_now * 0.9, 2),
                    time_in_force="gtc",
                ),
            ),
        ]

    def _new_order(
        self, account_id: str, request: OrderRequest, placed_at: float, *, order_id: str
    ) -> Order:
        timestamp = iso_utc(placed_at, timespec="milliseconds")
        filled = request.order_type == "market"
        fill_price = None
        if filled:
            quote = self._quotes.quote(request.symbol, int(placed_at))
            # Market orders cross the spread: buys lift the ask, sells hit the bid.
            fill_price = quote.ask if request.side == "buy" else quote.bid
        return Order(
            order_id=order_id,
            account_id=account_id,
            symbol=request.symbol,
            side=request.side,
            order_type=request.order_type,
            quantity=request.quantity,
            limit_price=request.limit_price,
            stop_price=request.stop_price,
            time_in_force=request.time_in_force,
            status="filled" if filled else "open",
            filled_quantity=request.quantity if filled else 0,
            average_fill_price=fill_price,
            created_at=timestamp,
            updated_at=timestamp,
        )


def _cancelled(order: Order, *, at: float) -> Order:
    return order.model_copy(
        update={"status": "cancelled", "updated_at": iso_utc(at, timespec="milliseconds")}
    )
