"""What a position is worth and what it has gained, valued the same way by every frontend.

The rule: inputs are taken at their decimal value (`Decimal(str(x))`, so 2.675 is 2.675, not
the binary float just below it), each money figure is rounded once to cents, halves away
from zero, and percentages to two decimals. Unrealised P&L is the market value minus the cost
basis *as shown*, so the figures on a screen add up to the cent. Without a price there is
no market value and no P&L: they are null, never valued at a stand-in price.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

_CENT = Decimal("0.01")
_HUNDRED = Decimal(100)


def _exact(value: float | Decimal) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _to_cents(value: float | Decimal) -> Decimal:
    return _exact(value).quantize(_CENT, rounding=ROUND_HALF_UP)


def cents(value: float | Decimal) -> float:
    """A money figure rounded to cents."""
    return float(_to_cents(value))


def percent(part: float | Decimal, whole: float | Decimal) -> float | None:
    """`part` as a percentage of `whole`, to two decimals; None when `whole` is zero."""
    whole = _exact(whole)
    if not whole:
        return None
    return float((_exact(part) / whole * _HUNDRED).quantize(_CENT, rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class PositionValue:
    """A position valued at a price; the price-derived figures are None without one."""

    cost_basis: float
    market_value: float | None
    unrealized_pnl: float | None
    unrealized_pnl_pct: float | None


def value_position(*, quantity: float, average_cost: float, price: float | None) -> PositionValue:
    """Cost basis, market value and unrealised P&L of `quantity` shares bought at
    `average_cost`, at `price` (None when there is no quote)."""
    shares = _exact(quantity)
    cost_basis = _to_cents(shares * _exact(average_cost))
    if price is None:
        return PositionValue(
            cost_basis=float(cost_basis),
            market_value=None,
            unrealized_pnl=None,
            unrealized_pnl_pct=None,
        )
    market_value = _to_cents(shares * _exact(price))
    pnl = market_value - cost_basis
    return PositionValue(
        cost_basis=float(cost_basis),
        market_value=float(market_value),
        unrealized_pnl=float(pnl),
        unrealized_pnl_pct=percent(pnl, cost_basis),
    )


def equity(cash: float, holdings: Iterable[float]) -> float:
    """Cash plus the holdings' values as shown, to cents."""
    return float(_to_cents(_exact(cash) + sum((_exact(h) for h in holdings), Decimal(0))))


@dataclass(frozen=True, slots=True)
class DayChange:
    """Equity's change since the previous close."""

    pnl: float
    pnl_pct: float | None


def day_change(equity_now: float, prev_close_equity: float) -> DayChange:
    """Today's P&L of an account: its equity now minus at the previous close."""
    pnl = _to_cents(_exact(equity_now) - _exact(prev_close_equity))
    return DayChange(pnl=float(pnl), pnl_pct=percent(pnl, prev_close_equity))
