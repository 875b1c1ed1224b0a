"""Level-1 quotes derived from the price walk: last, bid/ask, day open/high/low, volume."""

from dataclasses import dataclass
from math import ceil, floor

from pydantic import BaseModel

from backends.candles import bar_volume
from backends.clock import DAY_SECONDS, day_start, iso_utc
from backends.price_walk import PriceWalk

# The day's high/low is tracked from samples this far apart, plus the live price.
_RANGE_SAMPLE_SECONDS = 900
# Half the bid/ask spread as a fraction of price (about 2 bp wide), never under half a cent.
_HALF_SPREAD_FRACTION = 0.0001
_MIN_HALF_SPREAD = 0.005


class Quote(BaseModel):
    """A snapshot quote as served by ``GET /quotes``."""

    symbol: str
    price: float
    change: float
    change_pct: float
    bid: float
    ask: float
    open: float
    high: float
    low: float
    prev_close: float
    volume: int
    timestamp: str


@dataclass(slots=True)
class _DayRange:
    """Running high/low of one symbol over the sampled part of one UTC day."""

    day: int
    sampled_until: int
    high: float
    low: float


class QuoteBoard:
    """Builds quotes; the only state is a cache of each symbol's intraday range."""

    def __init__(self, walk: PriceWalk) -> None:
        self._walk = walk
        self._day_ranges: dict[str, _DayRange] = {}

    def quote(self, symbol: str, step: int) -> Quote:
        """The quote for a catalog symbol at ``step``."""
        today = day_start(step)
        price = self._walk.price(symbol, step)
        open_price = self._walk.price(symbol, today)
        prev_close = round(self._walk.price(symbol, today - 1), 2)
        high, low = self._day_range(symbol, today, step)
        half_spread = max(price * _HALF_SPREAD_FRACTION, _MIN_HALF_SPREAD)
        last = round(price, 2)
        change = round(last - prev_close, 2)
        return Quote(
            symbol=symbol,
            price=last,
            change=change,
            change_pct=round(change / prev_close * 100, 2),
            # Round outwards so the quoted spread never collapses to zero at cent precision.
            bid=floor((price - half_spread) * 100) / 100,
            ask=ceil((price + half_spread) * 100) / 100,
            open=round(open_price, 2),
            high=round(max(high, price), 2),
            low=round(min(low, price), 2),
            prev_close=prev_close,
            # The same figure as today's daily candle, so the two views never disagree.
            volume=bar_volume(self._walk.seed, symbol, DAY_SECONDS, today, step),
            timestamp=iso_utc(step),
        )

    def _day_range(self, symbol: str, today: int, step: int) -> tuple[float, float]:
        cached = self._day_ranges.get(symbol)
        if cached is None or cached.day != today:
            opening = self._walk.price(symbol, today)
            cached = _DayRange(day=today, sampled_until=today, high=opening, low=opening)
            self._day_ranges[symbol] = cached
        # Extend incrementally so a busy quote endpoint only ever samples new time.
        while cached.sampled_until + _RANGE_SAMPLE_SECONDS <= step:
            cached.sampled_until += _RANGE_SAMPLE_SECONDS
            sample = self._walk.price(symbol, cached.sampled_until)
            cached.high = max(cached.high, sample)
            cached.low = min(cached.low, sample)
        return cached.high, cached.low
