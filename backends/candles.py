"""OHLCV candles and sparklines sampled from the price walk."""

from functools import lru_cache
from typing import Literal

from pydantic import BaseModel

from backends.catalog import INSTRUMENTS
from backends.clock import DAY_SECONDS, day_start, iso_utc
from backends.determinism import stable_seed, unit_float
from backends.price_walk import PriceWalk

CandleInterval = Literal["1m", "5m", "15m", "1h", "1d"]
CandleRange = Literal["1d", "5d", "1mo", "3mo", "6mo", "1y"]

INTERVAL_SECONDS: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3_600, "1d": DAY_SECONDS}
RANGE_SECONDS: dict[str, int] = {
    "1d": DAY_SECONDS,
    "5d": 5 * DAY_SECONDS,
    "1mo": 30 * DAY_SECONDS,
    "3mo": 91 * DAY_SECONDS,
    "6mo": 182 * DAY_SECONDS,
    "1y": 365 * DAY_SECONDS,
}
MAX_CANDLES = 500
# Interior samples per candle used to find its high and low.
_EXTREME_SAMPLES = 6
# Sparkline samples sit on a whole-minute grid so repeated requests hit the price cache.
_SPARKLINE_GRID_SECONDS = 60


class Candle(BaseModel):
    """One OHLCV bar; ``t`` is the bar's opening time."""

    t: str
    o: float
    h: float
    l: float  # noqa: E741 - the contract's field name
    c: float
    v: int


def bar_volume(seed: int, symbol: str, width: int, start: int, end: int) -> int:
    """Shares traded in the bar opened at ``start`` up to ``end``; grows while the bar is live."""
    # Each bar trades 60%-160% of its share of the average daily volume, accruing evenly.
    activity = 0.6 + unit_float(stable_seed(seed, "bar-volume", symbol, width, start))
    expected = INSTRUMENTS[symbol].average_daily_volume * width / DAY_SECONDS
    elapsed_fraction = min((end - start + 1) / width, 1.0)
    return int(expected * activity * elapsed_fraction)


class CandleChart:
    """Candles for any symbol, interval and range; completed bars are cached (they never change)."""

    def __init__(self, walk: PriceWalk) -> None:
        self._walk = walk
        self._completed_candle = lru_cache(maxsize=100_000)(self._build_candle)

    def candles(
        self, symbol: str, interval: CandleInterval, span: CandleRange, now: int
    ) -> list[Candle]:
        """The latest bars covering ``span`` (at most MAX_CANDLES), oldest first, the last live."""
        width = INTERVAL_SECONDS[interval]
        count = min(max(RANGE_SECONDS[span] // width, 1), MAX_CANDLES)
        live_start = now - now % width
        starts = [live_start - width * back for back in range(count - 1, 0, -1)]
        bars = [self._completed_candle(symbol, width, start, start + width - 1) for start in starts]
        bars.append(self._build_candle(symbol, width, live_start, now))
        return bars

    def _build_candle(self, symbol: str, width: int, start: int, end: int) -> Candle:
        open_price = self._walk.price(symbol, start)
        close_price = self._walk.price(symbol, end)
        high, low = self._walk.extremes(symbol, start, end, _EXTREME_SAMPLES)
        return Candle(
            t=iso_utc(start),
            o=round(open_price, 2),
            h=round(high, 2),
            l=round(low, 2),
            c=round(close_price, 2),
            v=bar_volume(self._walk.seed, symbol, width, start, end),
        )

    def sparkline(self, symbol: str, points: int, now: int) -> list[float]:
        """``points`` prices across today (at least the last hour), oldest first, ending now."""
        span = max(now - day_start(now), 3_600)
        spacing = max(
            _SPARKLINE_GRID_SECONDS,
            span // (points - 1) // _SPARKLINE_GRID_SECONDS * _SPARKLINE_GRID_SECONDS,
        )
        # The grid stops short of `now`, which is always the final point.
        last_grid = (now - 1) - (now - 1) % _SPARKLINE_GRID_SECONDS
        times = [last_grid - spacing * back for back in range(points - 2, -1, -1)]
        times.append(now)
        return [round(self._walk.price(symbol, moment), 2) for moment in times]
