"""Deterministic, bounded random walk of every instrument's price.

The price at step ``t`` (one step per second) is ``base * exp(x(t))`` where
``x`` is fractal value noise: a sum of octaves with periods 2 s ... ~1 year and
amplitudes growing like ``period ** 0.45`` (near-Brownian) up to ~24 days.  Unlike a
cumulative walk this can be evaluated at any step in O(octaves) without
replaying history, two processes with the same seed agree exactly, the price
stays within a fixed band around the base price, and a one-second step moves
it by ~0.01-0.02% (hard bound: sum of amplitude * 3 / period over the octaves,
about 0.06% times the instrument's volatility).
"""

from collections.abc import Callable
from functools import lru_cache
from math import exp, floor

from backends.catalog import INSTRUMENTS
from backends.determinism import mix64, stable_seed, unit_float

# Octave j has period 2**j seconds: from 2 s up to 2**25 s (~388 days).
_OCTAVES = range(1, 26)
# Amplitude is _BASE_AMPLITUDE * volatility * period**_HURST, giving a volatility-1.0
# stock ~1.2% daily moves.  Growth stops at the ~24-day octave so that over months
# the price wanders in a band (90% of the time within ~±12%) instead of drifting away.
_BASE_AMPLITUDE = 0.00009
_HURST = 0.45
_AMPLITUDE_PERIOD_CAP = 1 << 21
_MASK64 = (1 << 64) - 1
_LATTICE_STRIDE = 0xD1B54A32D192ED03

# Per octave: (hash key, log amplitude, period in steps, phase offset in steps).
_Octave = tuple[int, float, int, int]


class PriceWalk:
    """Seeded price paths for every instrument in the catalog."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._octaves = {symbol: self._octaves_for(symbol) for symbol in INSTRUMENTS}
        # Quotes, fills and candles ask for the same (symbol, step) many times a second.
        self.price: Callable[[str, int], float] = lru_cache(maxsize=32_768)(self._price)

    def _octaves_for(self, symbol: str) -> tuple[_Octave, ...]:
        volatility = INSTRUMENTS[symbol].volatility
        octaves = []
        for octave in _OCTAVES:
            key = stable_seed(self.seed, symbol, octave)
            period = 1 << octave
            amplitude = _BASE_AMPLITUDE * volatility * min(period, _AMPLITUDE_PERIOD_CAP) ** _HURST
            # A per-octave phase keeps lattice points of different octaves from lining up.
            phase = mix64(key) % period
            octaves.append((key, amplitude, period, phase))
        return tuple(octaves)

    def _price(self, symbol: str, step: int) -> float:
        """Unrounded price of ``symbol`` at ``step``; raises KeyError for unknown symbols."""
        log_offset = 0.0
        for key, amplitude, period, phase in self._octaves[symbol]:
            position = (step + phase) / period
            cell = floor(position)
            fraction = position - cell
            smooth = fraction * fraction * (3.0 - 2.0 * fraction)
            left = _lattice_value(key, cell)
            right = _lattice_value(key, cell + 1)
            log_offset += amplitude * (left + (right - left) * smooth)
        return INSTRUMENTS[symbol].base_price * exp(log_offset)

    def extremes(self, symbol: str, start: int, end: int, samples: int) -> tuple[float, float]:
        """(high, low) over [start, end], from ``samples`` interior points plus both ends."""
        span = end - start
        points = {start, end, *(start + span * i // (samples + 1) for i in range(1, samples + 1))}
        prices = [self.price(symbol, point) for point in points]
        return max(prices), min(prices)


def _lattice_value(key: int, cell: int) -> float:
    """Pseudo-random value in [-1, 1) attached to an integer lattice point of one octave."""
    return 2.0 * unit_float(mix64((key + cell * _LATTICE_STRIDE) & _MASK64)) - 1.0
