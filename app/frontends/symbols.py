"""The `symbols=AAPL,MSFT` query parameter, parsed and validated once for every frontend.

Frontends that take a list of tickers share one set of rules (each matches the ticker
pattern, 1 to 50 distinct ones), so a bad list is refused with the same problem, naming
`query.symbols`, before any upstream is called.
"""

import re
from typing import Annotated

from fastapi import Query
from pydantic import AfterValidator

from app.frontends.order_entry import SYMBOL_PATTERN

MAX_SYMBOLS = 50

_TICKER = re.compile(SYMBOL_PATTERN)


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
        if _TICKER.match(symbol) is None:
            raise ValueError(f"{symbol!r} is not a ticker symbol (upper case, e.g. AAPL, BRK.B)")
    return ",".join(distinct)


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
