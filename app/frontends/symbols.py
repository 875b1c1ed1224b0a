"""The `symbols=AAPL,MSFT` query parameter, parsed and validated once for every frontend.

Frontends that take a list of tickers share one set of rules (each matches the ticker
pattern, 1 to 50 distinct ones), so a bad list is refused with the same problem, naming
`query.symbols`, before any upstream is called.
"""

import re
from typing import Annotated

from fastapi import Depends, Query

from app.errors import InvalidRequest
from app.frontends.order_entry import SYMBOL_PATTERN

MAX_SYMBOLS = 50
FIELD = "query.symbols"

_TICKER = re.compile(SYMBOL_PATTERN)


def _refuse(message: str) -> InvalidRequest:
    return InvalidRequest(
        f"{FIELD}: {message}", extra={"errors": [{"field": FIELD, "message": message}]}
    )


async def symbol_list(
    symbols: Annotated[
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
    ],
) -> tuple[str, ...]:
    """The distinct symbols of the list, in the order given."""
    distinct = tuple(dict.fromkeys(part.strip() for part in symbols.split(",")))
    if distinct == ("",):
        raise _refuse("at least one symbol is required")
    if len(distinct) > MAX_SYMBOLS:
        raise _refuse(f"at most {MAX_SYMBOLS} distinct symbols, got {len(distinct)}")
    for symbol in distinct:
        if not symbol:
            raise _refuse("the list has an empty entry")
        if _TICKER.match(symbol) is None:
            raise _refuse(f"{symbol!r} is not a ticker symbol (upper case, e.g. AAPL, BRK.B)")
    return distinct


SymbolList = Annotated[tuple[str, ...], Depends(symbol_list)]
