"""Typed client of the market-data service."""

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel

from app.upstreams.caller import UpstreamCaller

SERVICE = "market-data"


class SymbolInfo(BaseModel):
    symbol: str
    name: str
    exchange: str
    sector: str
    currency: str


class Quote(BaseModel):
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
    timestamp: datetime


class Candle(BaseModel):
    t: datetime
    o: float
    h: float
    l: float  # noqa: E741 - the upstream's field name
    c: float
    v: int


class CandleSeries(BaseModel):
    symbol: str
    interval: str
    range: str
    candles: list[Candle]


class Sparkline(BaseModel):
    symbol: str
    points: list[float]


class _Symbols(BaseModel):
    symbols: list[SymbolInfo]


class _Quotes(BaseModel):
    quotes: list[Quote]


class _Sparklines(BaseModel):
    sparklines: list[Sparkline]


class MarketDataClient:
    def __init__(self, caller: UpstreamCaller) -> None:
        self._caller = caller

    async def search_symbols(self, query: str, *, limit: int = 20) -> list[SymbolInfo]:
        params = {"q": query, "limit": str(limit)}
        found = await self._caller.fetch(SERVICE, "GET", "/symbols", _Symbols, params=params)
        return found.symbols

    async def symbol_info(self, symbols: Sequence[str]) -> list[SymbolInfo]:
        """Reference data (name, exchange, sector) of up to 50 symbols; unknown ones left out."""
        if not symbols:
            return []
        params = {"symbols": ",".join(symbols)}
        found = await self._caller.fetch(SERVICE, "GET", "/symbols", _Symbols, params=params)
        return found.symbols

    async def quotes(self, symbols: Sequence[str]) -> list[Quote]:
        """Quotes for many symbols in one call; unknown symbols are left out."""
        if not symbols:
            return []
        params = {"symbols": ",".join(symbols)}
        found = await self._caller.fetch(SERVICE, "GET", "/quotes", _Quotes, params=params)
        return found.quotes

    async def candles(self, symbol: str, *, interval: str, range_: str) -> CandleSeries:
        params = {"interval": interval, "range": range_}
        return await self._caller.fetch(
            SERVICE, "GET", f"/candles/{symbol}", CandleSeries, params=params
        )

    async def sparklines(self, symbols: Sequence[str], *, points: int = 30) -> list[Sparkline]:
        if not symbols:
            return []
        params = {"symbols": ",".join(symbols), "points": str(points)}
        found = await self._caller.fetch(SERVICE, "GET", "/sparklines", _Sparklines, params=params)
        return found.sparklines
