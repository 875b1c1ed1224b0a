"""GET /partner/v1/quotes: validated symbols, market-data's bytes passed through."""

from tests.fixtures.consumers import ADMIN
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


# Headers that differ between two requests whatever route they took (the etag: prices move).
_PER_REQUEST = {"x-request-id", "date", "ratelimit", "content-length", "etag", "age"}


async def _answers(gateway: RunningGateway) -> list[tuple[int, list[tuple[str, str]], object]]:
    cases: list[tuple[dict[str, str], dict[str, str]]] = [
        ({"symbols": "MSFT,AAPL,AAPL,NOPE"}, {}),
        ({"symbols": "AAPL,msft"}, {}),
        ({"symbols": ""}, {}),
        ({"symbols": "A," * 600}, {}),
        ({}, {}),
        ({"symbols": "AAPL"}, {"Accept": "text/csv"}),
        ({"symbols": "AAPL"}, {"Accept": "application/xml"}),
        ({"symbols": "AAPL"}, {"Authorization": "Bearer not-a-token"}),
    ]
    # Each round starts from an empty cache, so both see the same misses and hits.
    cleared = await gateway.client.post(
        "/admin/v1/cache/invalidations", json={"patterns": [QUOTES + "*"]}, headers=ADMIN
    )
    assert cleared.status_code == 200, cleared.text
    answers = []
    for params, headers in cases:
        response = await gateway.client.get(QUOTES, params=params, headers=headers)
        kept = [(k, v) for k, v in response.headers.multi_items() if k not in _PER_REQUEST]
        body: object = response.text.splitlines()[0]
        if response.headers["content-type"] != "text/csv; charset=utf-8; header=present":
            document = response.json()
            document.pop("request_id", None)
            # Prices move between two calls; which quotes came, in which order, does not.
            if "quotes" in document:
                document = [quote["symbol"] for quote in document["quotes"]]
            body = document
        answers.append((response.status_code, kept, body))
    return answers


async def test_the_direct_answer_is_fastapis(gateway: RunningGateway, monkeypatch) -> None:
    """Partner quotes are answered past FastAPI's routing (`app.frontends.direct`); with a
    dependency override in place they take FastAPI's route, and the answers are the same:
    statuses, headers, bodies, problems naming the same fields."""
    from app.frontends import direct

    answered_directly = 0
    answer = direct.DirectRoute.answer

    async def counted(route: direct.DirectRoute, request: object) -> object:
        nonlocal answered_directly
        answered_directly += 1
        return await answer(route, request)  # type: ignore[arg-type]

    monkeypatch.setattr(direct.DirectRoute, "answer", counted)
    directly = await _answers(gateway)
    # All but the last: a fresh hit (the entry the CSV request stored) is answered, refused
    # here, by the cache's shortcut in front (`app.frontends.caching.CachedRoutes`).
    assert answered_directly == len(directly) - 1

    gateway.app.dependency_overrides[_answers] = _answers
    try:
        routed = await _answers(gateway)
    finally:
        gateway.app.dependency_overrides.clear()
    assert answered_directly == len(directly) - 1
    assert routed == directly
    assert [status for status, _, _ in routed] == [200, 422, 422, 422, 422, 200, 406, 401]
