"""GET /partner/v1/quotes: validated symbols, market-data's bytes passed through."""

import pytest

from tests.fixtures.direct_routes import Case, direct_and_routed
from tests.fixtures.gateway import RunningGateway
from tests.fixtures.platform_control import PlatformControl
from tests.fixtures.problems import assert_problem, field_errors

QUOTES = "/partner/v1/quotes"


async def test_body_is_market_datas_document(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    symbols = "MSFT,AAPL,BRK.B,NOPE"

    response = await gateway.client.get(QUOTES, params={"symbols": symbols})
    direct = await backends.get("market-data", "/quotes", symbols=symbols)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == set(direct) == {"quotes"}
    assert [q["symbol"] for q in body["quotes"]] == [q["symbol"] for q in direct["quotes"]]
    assert [q["symbol"] for q in body["quotes"]] == ["MSFT", "AAPL", "BRK.B"]
    assert [sorted(q) for q in body["quotes"]] == [sorted(q) for q in direct["quotes"]]


async def test_repeated_symbols_are_asked_once(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    await backends.reset_stats("market-data")

    response = await gateway.client.get(QUOTES, params={"symbols": "AAPL,AAPL,MSFT"})

    assert response.status_code == 200, response.text
    assert [q["symbol"] for q in response.json()["quotes"]] == ["AAPL", "MSFT"]
    assert await backends.requests("market-data") == {"GET /quotes": 1}


async def test_bad_symbols_never_reach_market_data(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    await backends.reset_stats("market-data")

    response = await gateway.client.get(QUOTES, params={"symbols": "AAPL,msft"})

    problem = assert_problem(response, 422)
    assert field_errors(problem) == {"query.symbols"}
    assert "'msft'" in problem["detail"]
    assert await backends.requests("market-data") == {}


async def test_market_data_down_on_every_instance(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    await backends.fault("market-data", error_rate=1.0, error_status=503)

    response = await gateway.client.get(QUOTES, params={"symbols": "AAPL"})

    problem = assert_problem(response, 503)
    assert problem["service"] == "market-data"


async def test_openapi_documents_the_typed_shape(gateway: RunningGateway) -> None:
    response = await gateway.client.get("/partner/v1/openapi.json")
    assert response.status_code == 200, response.text
    document = response.json()

    ok = document["paths"]["/partner/v1/quotes"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PartnerQuotes"
    }
    quote = document["components"]["schemas"]["PartnerQuote"]
    assert {"symbol", "price", "change_pct", "bid", "ask", "timestamp"} <= set(quote["properties"])


async def test_the_direct_answer_is_fastapis(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Partner quotes are answered past FastAPI's routing (`app.frontends.direct`), alike:
    statuses, headers, bodies, problems naming the same fields."""
    cases: list[Case] = [
        (QUOTES, {"symbols": "MSFT,AAPL,AAPL,NOPE"}, {}),
        # A repeated name: the last value counts, as FastAPI reads one.
        (QUOTES, (("symbols", "NOPE"), ("symbols", "AAPL")), {}),
        (QUOTES, (("symbols", "AAPL"), ("symbols", "")), {}),
        (QUOTES, {"symbols": "AAPL,msft"}, {}),
        (QUOTES, {"symbols": ""}, {}),
        (QUOTES, {"symbols": "A," * 600}, {}),
        (QUOTES, {}, {}),
        (QUOTES, {"symbols": "AAPL"}, {"Accept": "text/csv"}),
        (QUOTES, {"symbols": "AAPL"}, {"Accept": "application/xml"}),
        (QUOTES, {"symbols": "AAPL"}, {"Authorization": "Bearer not-a-token"}),
    ]
    directly, routed, answered_directly = await direct_and_routed(
        gateway, monkeypatch, cases, cached=QUOTES + "*"
    )
    # All but the last: a fresh hit (the entry the CSV request stored) is answered, refused
    # here, by the cache's shortcut in front (`app.frontends.caching.CachedRoutes`).
    assert answered_directly == len(cases) - 1
    assert routed == directly
    assert [status for status, _, _ in routed] == [
        200, 200, 422, 422, 422, 422, 422, 200, 406, 401
    ]  # fmt: skip
    assert routed[1][2] == {"quotes": ["AAPL"]}
