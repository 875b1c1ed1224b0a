"""GET /mobile/v1/quotes: the shared symbol-list rules and the compact quote."""

import pytest

from tests.fixtures.gateway import RunningGateway
from tests.fixtures.platform_control import PlatformControl
from tests.fixtures.problems import assert_problem, field_errors

QUOTES = "/mobile/v1/quotes"


async def test_compact_quotes_of_distinct_symbols(gateway: RunningGateway) -> None:
    response = await gateway.client.get(QUOTES, params={"symbols": "AAPL,MSFT,AAPL,BRK.B"})

    assert response.status_code == 200, response.text
    quotes = response.json()["quotes"]
    assert [q["symbol"] for q in quotes] == ["AAPL", "MSFT", "BRK.B"]
    for quote in quotes:
        assert set(quote) == {"symbol", "price", "change_pct"}
        assert quote["price"] > 0


FIFTY_ONE = ",".join(f"S{n}" for n in range(51))


@pytest.mark.parametrize(
    "symbols",
    ["", "aapl", "AAPL,,MSFT", "AAPL,TOO-LONG-SYMBOL", "AAPL;MSFT", FIFTY_ONE, None],
    ids=["empty", "lower-case", "empty-entry", "too-long", "wrong-separator", "51", "missing"],
)
async def test_bad_symbol_lists_never_reach_market_data(
    gateway: RunningGateway, backends: PlatformControl, symbols: str | None
) -> None:
    await backends.reset_stats("market-data")
    params = {} if symbols is None else {"symbols": symbols}

    response = await gateway.client.get(QUOTES, params=params)

    assert field_errors(assert_problem(response, 422)) == {"query.symbols"}
    assert await backends.requests("market-data") == {}


async def test_fifty_distinct_symbols_are_accepted(gateway: RunningGateway) -> None:
    fifty = ",".join(["AAPL"] * 10 + [f"S{n}" for n in range(49)])

    response = await gateway.client.get(QUOTES, params={"symbols": fifty})

    assert response.status_code == 200, response.text
    assert [q["symbol"] for q in response.json()["quotes"]] == ["AAPL"]
