"""Market-data service: symbol search, quotes, candles and sparklines (several instances)."""

from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from backends.candles import Candle, CandleChart, CandleInterval, CandleRange
from backends.catalog import INSTRUMENTS, Instrument
from backends.clock import current_step
from backends.price_walk import PriceWalk
from backends.quote_stream import install_quote_stream
from backends.quotes import Quote, QuoteBoard
from backends.service_app import create_service_app, split_symbols

SERVICE_NAME = "market-data"
MAX_SYMBOLS_PER_REQUEST = 50


class SymbolInfo(BaseModel):
    """Reference data for one listed symbol."""

    symbol: str
    name: str
    exchange: str
    sector: str
    currency: str


class SymbolList(BaseModel):
    symbols: list[SymbolInfo]


class QuoteList(BaseModel):
    quotes: list[Quote]


class CandleSeries(BaseModel):
    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)

    symbol: str
    interval: CandleInterval
    span: CandleRange = Field(alias="range")
    candles: list[Candle]


class Sparkline(BaseModel):
    symbol: str
    points: list[float]


class SparklineList(BaseModel):
    sparklines: list[Sparkline]


def search_instruments(query: str, limit: int) -> list[Instrument]:
    """Symbols starting with ``query`` (exact match first), then names containing it."""
    needle = query.strip().upper()

    def relevance(instrument: Instrument) -> int:
        if instrument.symbol == needle:
            return 0
        if instrument.symbol.startswith(needle):
            return 1
        return 2 if needle in instrument.name.upper() else 3

    ranked = sorted(
        (relevance(instrument), instrument.symbol, instrument)
        for instrument in INSTRUMENTS.values()
    )
    return [instrument for rank, _, instrument in ranked if rank < 3][:limit]


def create_app(*, instance: str, seed: int) -> FastAPI:
    """The market-data ASGI app; instances built with the same seed serve identical prices."""
    app = create_service_app(SERVICE_NAME, instance)
    walk = PriceWalk(seed)
    board = QuoteBoard(walk)
    install_quote_stream(app, board)
    chart = CandleChart(walk)

    @app.get("/symbols", response_model=SymbolList)
    async def list_symbols(
        q: Annotated[str, Query(max_length=64)] = "",
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        symbols: str | None = None,
    ) -> SymbolList:
        """Search symbols by ticker prefix or company-name substring; with `symbols` (up to
        50, comma-separated), the reference data of exactly those, unknown ones omitted."""
        if symbols is not None:
            wanted = split_symbols(symbols, max_count=MAX_SYMBOLS_PER_REQUEST)
            matches = [INSTRUMENTS[symbol] for symbol in wanted if symbol in INSTRUMENTS]
        else:
            matches = search_instruments(q, limit)
        return SymbolList(
            symbols=[
                SymbolInfo(
                    symbol=i.symbol,
                    name=i.name,
                    exchange=i.exchange,
                    sector=i.sector,
                    currency=i.currency,
                )
                for i in matches
            ]
        )

    @app.get("/quotes", response_model=QuoteList)
    async def get_quotes(symbols: str) -> QuoteList:
        """Quotes for up to 50 comma-separated symbols; unknown symbols are omitted."""
        requested = split_symbols(symbols, max_count=MAX_SYMBOLS_PER_REQUEST)
        step = current_step()
        return QuoteList(
            quotes=[board.quote(symbol, step) for symbol in requested if symbol in INSTRUMENTS]
        )

    @app.get("/candles/{symbol}", response_model=CandleSeries)
    async def get_candles(
        symbol: Annotated[str, Path(max_length=16)],
        interval: CandleInterval = "5m",
        span: Annotated[CandleRange, Query(alias="range")] = "1d",
    ) -> CandleSeries:
        """OHLCV bars for one symbol, oldest first, capped at the most recent 500."""
        ticker = symbol.upper()
        if ticker not in INSTRUMENTS:
            raise HTTPException(status_code=404, detail=f"Unknown symbol: {symbol}")
        bars = chart.candles(ticker, interval, span, current_step())
        return CandleSeries(symbol=ticker, interval=interval, span=span, candles=bars)

    @app.get("/sparklines", response_model=SparklineList)
    async def get_sparklines(
        symbols: str, points: Annotated[int, Query(ge=2, le=390)] = 30
    ) -> SparklineList:
        """Intraday price points per symbol, oldest first, ending with the live price."""
        requested = split_symbols(symbols, max_count=MAX_SYMBOLS_PER_REQUEST)
        step = current_step()
        return SparklineList(
            sparklines=[
                Sparkline(symbol=symbol, points=chart.sparkline(symbol, points, step))
                for symbol in requested
                if symbol in INSTRUMENTS
            ]
        )

    return app
