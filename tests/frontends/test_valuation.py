"""P&L valuation: one rule, and the web and mobile frontends value a position identically."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app.frontends.mobile.v1.compose import position_row
from app.frontends.valuation import cents, day_change, equity, percent, value_position
from app.frontends.web.v1.compose import position_view
from app.upstreams.market_data import Quote
from app.upstreams.portfolio import Position

# (quantity, average cost, price): whole and fractional shares, gains and losses, and
# products that end on half a cent, where binary floats and decimal rounding part ways.
POSITIONS = [
    (150, 187.42, 191.27),
    (0.5, 10.005, 10.015),
    (3, 0.335, 0.895),
    (1, 2.675, 1.005),
    (12.25, 404.1, 398.765),
    (7, 33.333, 33.337),
    (1_000_000, 0.01, 0.015),
]


def _quote(symbol: str, price: float) -> Quote:
    return Quote(
        symbol=symbol,
        price=price,
        change=0.0,
        change_pct=0.0,
        bid=price,
        ask=price,
        open=price,
        high=price,
        low=price,
        prev_close=price,
        volume=1,
        timestamp=datetime(2026, 11, 26, 15, 4, 5, tzinfo=UTC),
    )


@pytest.mark.parametrize(("quantity", "average_cost", "price"), POSITIONS)
def test_web_and_mobile_value_a_position_identically(
    quantity: float, average_cost: float, price: float
) -> None:
    position = Position(symbol="AAPL", quantity=quantity, average_cost=average_cost)

    web = position_view(position, _quote("AAPL", price))
    mobile = position_row(position, price)

    assert (mobile.unrealized_pnl, mobile.unrealized_pnl_pct) == (
        web.unrealized_pnl,
        web.unrealized_pnl_pct,
    )
    assert web.unrealized_pnl is not None and web.market_value is not None


@pytest.mark.parametrize(("quantity", "average_cost", "price"), POSITIONS)
def test_the_figures_add_up_to_the_cent(quantity: float, average_cost: float, price: float) -> None:
    value = value_position(quantity=quantity, average_cost=average_cost, price=price)

    exact_cost = Decimal(str(quantity)) * Decimal(str(average_cost))
    exact_value = Decimal(str(quantity)) * Decimal(str(price))
    assert Decimal(str(value.cost_basis)) == exact_cost.quantize(Decimal("0.01"), "ROUND_HALF_UP")
    assert Decimal(str(value.market_value)) == exact_value.quantize(
        Decimal("0.01"), "ROUND_HALF_UP"
    )
    assert Decimal(str(value.unrealized_pnl)) == Decimal(str(value.market_value)) - Decimal(
        str(value.cost_basis)
    )


def test_halves_round_up_at_their_decimal_value() -> None:
    # As binary floats, 2.675 and 1.005 lie just below the half: round() takes them down.
    assert (round(2.675, 2), round(1.005, 2)) == (2.67, 1.0)
    assert (cents(2.675), cents(1.005), cents(-2.675)) == (2.68, 1.01, -2.68)
    assert percent(1, 8) == 12.5
    assert percent(1, 0) is None


def test_a_missing_quote_values_nothing() -> None:
    position = Position(symbol="MSFT", quantity=10, average_cost=410.0)

    web = position_view(position, None)
    mobile = position_row(position, None)

    assert web.cost_basis == 4100.0
    assert web.price is web.market_value is web.unrealized_pnl is web.unrealized_pnl_pct is None
    assert mobile.price is mobile.unrealized_pnl is mobile.unrealized_pnl_pct is None


def test_no_cost_basis_has_no_percentage() -> None:
    value = value_position(quantity=5, average_cost=0.0, price=12.5)

    assert (value.market_value, value.unrealized_pnl, value.unrealized_pnl_pct) == (
        62.5,
        62.5,
        None,
    )


def test_equity_and_day_change() -> None:
    assert equity(1000.005, [0.1, 0.2]) == 1000.31
    today = day_change(1000.31, 1000.0)
    assert (today.pnl, today.pnl_pct) == (0.31, 0.03)
    assert day_change(10.0, 0.0).pnl_pct is None
