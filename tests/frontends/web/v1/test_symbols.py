"""GET /web/v1/symbols/{symbol}: quote, chart, news, the user's position and orders."""

import pytest

from tests.fixtures.gateway import RunningGateway
from tests.fixtures.platform_control import PlatformControl
from tests.fixtures.problems import assert_problem


async def test_symbol_detail_of_a_held_symbol(alice: RunningGateway) -> None:
    response = await alice.client.get(
        "/web/v1/symbols/AAPL", params={"range": "5d", "interval": "1h"}
    )

    assert response.status_code == 200, response.text
    view = response.json()
    assert view["degraded"] == []
    assert view["symbol"] == "AAPL"
    quote = view["quote"]
    assert quote["symbol"] == "AAPL" and quote["price"] > 0
    assert view["info"]["name"] == "Apple Inc."
    chart = view["chart"]
    assert (chart["range"], chart["interval"]) == ("5d", "1h")
    assert len(chart["candles"]) == 5 * 24
    assert all(c["low"] <= c["close"] <= c["high"] for c in chart["candles"])
    position = view["position"]
    assert position["quantity"] == 150
    assert position["price"] == quote["price"]
    assert position["market_value"] == pytest.approx(150 * quote["price"], abs=0.01)
    assert view["orders"], "the demo account has orders in its first holding"
    assert {order["symbol"] for order in view["orders"]} == {"AAPL"}
    assert isinstance(view["news"], list)


async def test_a_symbol_not_held_has_no_position(alice: RunningGateway) -> None:
    response = await alice.client.get("/web/v1/symbols/KO")

    assert response.status_code == 200, response.text
    view = response.json()
    assert view["position"] is None
    assert view["degraded"] == []
    assert (view["chart"]["range"], view["chart"]["interval"]) == ("1d", "5m")


async def test_unknown_symbol_is_a_404(alice: RunningGateway) -> None:
    response = await alice.client.get("/web/v1/symbols/ZZZZ")

    problem = assert_problem(response, 404)
    assert "ZZZZ" in problem["detail"]


async def test_quote_failing_is_the_routes_problem(
    alice: RunningGateway, control: PlatformControl
) -> None:
    await control.fault("market-data", error_rate=1.0, error_status=503, paths=["/quotes"])

    problem = assert_problem(await alice.client.get("/web/v1/symbols/AAPL"), 503)

    assert problem["service"] == "market-data"


async def test_candles_failing_degrade_the_chart(
    alice: RunningGateway, control: PlatformControl
) -> None:
    await control.fault("market-data", error_rate=1.0, paths=["/candles"])

    response = await alice.client.get("/web/v1/symbols/MSFT")

    assert response.status_code == 200, response.text
    view = response.json()
    assert view["chart"] is None
    assert view["degraded"] == ["candles"]
    assert view["quote"]["symbol"] == "MSFT"


# Each request breaks one rule; the problem must name exactly that parameter.
BAD_REQUESTS: list[tuple[str, dict[str, str], str]] = [
    ("/web/v1/symbols/AAPL", {"range": "1mo", "interval": "1m"}, "query.interval"),
    ("/web/v1/symbols/AAPL", {"range": "1y", "interval": "15m"}, "query.interval"),
    ("/web/v1/symbols/AAPL", {"range": "2d"}, "query.range"),
    ("/web/v1/symbols/AAPL", {"interval": "2m"}, "query.interval"),
    ("/web/v1/symbols/aapl", {}, "path.symbol"),
    ("/web/v1/symbols/TOOLONGSYMBOL", {}, "path.symbol"),
]


async def test_bad_parameters_never_reach_a_service(
    alice: RunningGateway, control: PlatformControl
) -> None:
    services = ("market-data", "portfolio", "orders", "news")
    await control.reset_stats(*services)

    for address, params, field in BAD_REQUESTS:
        response = await alice.client.get(address, params=params)
        problem = assert_problem(response, 422)
        assert [error["field"] for error in problem["errors"]] == [field], (address, params)

    for service in services:
        assert await control.requests(service) == {}, service
