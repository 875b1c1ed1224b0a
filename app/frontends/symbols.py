"""Ticker symbols as the frontends take them: in a path, and as the `symbols=` list.

The pattern itself is `app.domain.SYMBOL_PATTERN`; this module is the frontends' one use of
it. Frontends that take a list of tickers share one set of rules (each matches the ticker
pattern, 1 to 50 distinct ones), so a bad list is refused with the same problem, naming
`query.symbols`, before any upstream is called.
"""

import re
from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator

from app.domain import SYMBOL_PATTERN

MAX_SYMBOLS = 50

_TICKER = re.compile(SYMBOL_PATTERN)


def is_symbol(text: str) -> bool:
    """Whether `text` is a ticker symbol."""
    return _TICKER.match(text) is not None


def distinct_symbols(symbols: str) -> str:
    """The list's distinct symbols in the order given, comma-separated; a ValueError says
    what is wrong with it (FastAPI answers 422 naming `query.symbols`)."""
    distinct = tuple(dict.fromkeys(part.strip() for part in symbols.split(",")))
    if distinct == ("",):
        raise ValueError("at least one symbol is required")
    if len(distinct) > MAX_SYMBOLS:
        raise ValueError(f"at most {MAX_SYMBOLS} distinct symbols, got {len(distinct)}")
    for symbol in distinct:
        if not symbol:
            raise ValueError("the list has an empty entry")
        if not is_symbol(symbol):
            raise ValueError(f"{symbol!r} is not a ticker symbol (upper case, e.g. AAPL, BRK.B)")
    return ",".join(distinct)


# One ticker as a path segment, e.g. `/candles/{symbol}`.
SymbolPath = Annotated[
    str,
    Path(pattern=SYMBOL_PATTERN, description="Ticker symbol, upper case", examples=["AAPL"]),
]

# A validated parameter rather than a dependency: FastAPI's cost per dependency shows on a
# pass-through route.
SymbolList = Annotated[
    str,
    Query(
        # Room for 50 longest tickers with separators and a little whitespace.
        max_length=1024,
        description=(
            f"Comma-separated ticker symbols, upper case, 1 to {MAX_SYMBOLS} distinct; "
            "repeats are ignored, order is kept"
        ),
        examples=["AAPL,MSFT,NVDA"],
    ),
    AfterValidator(distinct_symbols),
]
