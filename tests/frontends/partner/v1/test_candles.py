"""GET /partner/v1/candles/{symbol}: typed OHLCV series."""

import pytest

from tests.fixtures.direct_routes import direct_and_routed
from tests.fixtures.gateway import RunningGateway
from tests.fixtures.platform_control import PlatformControl
from tests.fixtures.problems import assert_problem, field_errors


async def test_candles_of_a_symbol(gateway: RunningGateway, backends: PlatformControl) -> None:
    response = await gateway.client.get(
        "/partner/v1/candles/AAPL", params={"interval": "1h", "range": "5d"}
    )

    assert response.status_code == 200, response.text
    series = response.json()
    assert (series["symbol"], series["interval"], series["range"]) == ("AAPL", "1h", "5d")
    direct = await backends.get("market-data", "/candles/AAPL", interval="1h", range="5d")
    assert len(series["candles"]) == len(direct["candles"]) > 0
    first = series["candles"][0]
    assert set(first) == {"t", "o", "h", "l", "c", "v"}
    assert first["l"] <= min(first["o"], first["c"]) <= max(first["o"], first["c"]) <= first["h"]


async def test_defaults_are_five_minutes_over_a_day(gateway: RunningGateway) -> None:
    response = await gateway.client.get("/partner/v1/candles/MSFT")

    assert response.status_code == 200, response.text
    assert (response.json()["interval"], response.json()["range"]) == ("5m", "1d")


async def test_unknown_symbol_is_not_found(gateway: RunningGateway) -> None:
    response = await gateway.client.get("/partner/v1/candles/ZZZZ")

    problem = assert_problem(response, 404)
    assert "ZZZZ" in problem["detail"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/partner/v1/candles/AAPL", {"interval": "2m"}, "query.interval"),
        ("/partner/v1/candles/AAPL", {"range": "10y"}, "query.range"),
        ("/partner/v1/candles/aapl", {}, "path.symbol"),
    ],
)
async def test_bad_parameters_are_refused(
    gateway: RunningGateway,
    backends: PlatformControl,
    path: str,
    params: dict[str, str],
    field: str,
) -> None:
    await backends.reset_stats("market-data")

    response = await gateway.client.get(path, params=params)

    assert field_errors(assert_problem(response, 422)) == {field}
    assert await backends.requests("market-data") == {}


async def test_the_direct_answer_is_fastapis(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Candles are answered past FastAPI's routing (`app.frontends.direct`), alike: statuses,
    headers, bodies, problems naming the same fields, path and query."""
    candles = "/partner/v1/candles/"
    cases = [
        (candles + "AAPL", {"interval": "1h", "range": "5d"}, {}),
        (candles + "MSFT", {}, {}),
        (candles + "aapl", {"interval": "2h"}, {}),
        (candles + "AAPL", {"range": "10y"}, {}),
        (candles + "ZZZZ", {}, {}),
        (candles + "AAPL", {}, {"Accept": "text/csv"}),
        (candles + "AAPL", {}, {"Accept": "application/xml"}),
        (candles + "AAPL", {}, {"Authorization": "Bearer not-a-token"}),
    ]
    directly, routed, answered_directly = await direct_and_routed(
        gateway, monkeypatch, cases, cached=candles + "*"
    )
    assert answered_directly == len(cases)
    assert routed == directly
    assert [status for status, _, _ in routed] == [200, 200, 422, 422, 404, 200, 406, 401]
