"""Declared transforms on pass-through routes (headers, query parameters, JSON body maps, on
the request and the response) and validation before forwarding (a 422 naming the field,
nothing sent upstream); the routes' generated OpenAPI document."""

import orjson

from tests.fixtures.gateway import RunningGateway
from tests.fixtures.problems import assert_problem, field_errors
from tests.passthrough.conftest import add_route
from tests.passthrough.echo import EchoUpstream


async def test_request_headers_query_and_body_are_transformed(gateway: RunningGateway) -> None:
    await add_route(
        gateway.client,
        name="echo-shaped",
        match={"path": "/shaped", "methods": ["POST"]},
        upstream={"service": "echo", "path": "/shaped"},
        transforms={
            "request": {
                "headers": {
                    "add": {"X-Tenant": "stock-bot"},
                    "remove": ["X-Internal"],
                    "rename": {"X-Old-Name": "X-New-Name"},
                },
                "query": {
                    "add": {"format": "full"},
                    "remove": ["debug"],
                    "rename": {"sym": "symbols"},
                },
                "body": {
                    "pick": "order",
                    "remove": ["comment"],
                    "rename": {"qty": "quantity"},
                    "add": {"source": "gateway", "meta.channel": "api"},
                },
            }
        },
    )
    response = await gateway.client.post(
        "/api/shaped?sym=AAPL&debug=1&format=short",
        headers={"X-Internal": "secret", "X-Old-Name": "v", "X-Tenant": "spoofed"},
        content=orjson.dumps({"order": {"qty": 5, "comment": "hi", "symbol": "AAPL"}}),
    )
    assert response.status_code == 200, response.text
    echoed = response.json()
    headers = {k.lower(): v for k, v in echoed["headers"]}
    assert headers["x-tenant"] == "stock-bot"
    assert "x-internal" not in headers
    assert headers["x-new-name"] == "v" and "x-old-name" not in headers
    assert echoed["query"] == "symbols=AAPL&format=full"
    assert orjson.loads(echoed["body"]) == {
        "quantity": 5,
        "symbol": "AAPL",
        "source": "gateway",
        "meta": {"channel": "api"},
    }
    assert echoed["length"] == len(echoed["body"])


async def test_response_headers_and_body_are_transformed(gateway: RunningGateway) -> None:
    await add_route(
        gateway.client,
        name="echo-article",
        match={"path": "/article"},
        upstream={"service": "echo", "path": "/article"},
        transforms={
            "response": {
                "headers": {
                    "remove": ["X-Upstream-Secret"],
                    "rename": {"X-Kept": "X-Renamed"},
                    "add": {"X-Served-By": "gateway"},
                },
                "body": {"pick": "data", "remove": ["secret"], "rename": {"headline": "title"}},
            }
        },
    )
    await add_route(
        gateway.client,
        name="echo-articles",
        match={"path": "/articles"},
        upstream={"service": "echo", "path": "/articles"},
        transforms={"response": {"body": {"remove": ["secret"], "add": {"kind": "article"}}}},
        list_rows="",
    )
    response = await gateway.client.get("/api/article")
    assert response.status_code == 200
    assert response.json() == {"title": "Markets up", "id": 7}
    assert int(response.headers["content-length"]) == len(response.content)
    assert "x-upstream-secret" not in response.headers
    assert response.headers["x-renamed"] == "yes" and "x-kept" not in response.headers
    assert response.headers["x-served-by"] == "gateway"
    listed = await gateway.client.get("/api/articles")
    assert listed.json() == [
        {"headline": "One", "kind": "article"},
        {"headline": "Two", "kind": "article"},
    ]
    as_csv = await gateway.client.get("/api/articles", headers={"Accept": "text/csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text == "headline,kind\r\nOne,article\r\nTwo,article\r\n"
    assert (
        await gateway.client.get("/api/articles", headers={"Accept": "text/html"})
    ).status_code == 406


async def test_schema_validation_refuses_before_forwarding(
    gateway: RunningGateway, echo: EchoUpstream
) -> None:
    await add_route(
        gateway.client,
        name="echo-orders",
        description="Place an order",
        match={"path": "/orders/{account}", "methods": ["POST"]},
        upstream={"service": "echo", "path": "/orders/{account}"},
        request_schema={
            "query": {
                "type": "object",
                "required": ["symbols"],
                "properties": {
                    "symbols": {"type": "string", "pattern": "^[A-Z]{1,5}(,[A-Z]{1,5})*$"}
                },
            },
            "body": {
                "type": "object",
                "required": ["quantity", "side"],
                "properties": {
                    "quantity": {"type": "integer", "minimum": 1},
                    "side": {"enum": ["buy", "sell"]},
                },
                "additionalProperties": False,
            },
        },
    )
    before = len(echo.received)
    cases = [
        ("/api/orders/A1", {"quantity": 1, "side": "buy"}, "query.symbols"),
        ("/api/orders/A1?symbols=aapl", {"quantity": 1, "side": "buy"}, "query.symbols"),
        ("/api/orders/A1?symbols=AAPL", {"quantity": True, "side": "buy"}, "body.quantity"),
        ("/api/orders/A1?symbols=AAPL", {"quantity": "5", "side": "buy"}, "body.quantity"),
        ("/api/orders/A1?symbols=AAPL", {"quantity": 5}, "body.side"),
        ("/api/orders/A1?symbols=AAPL", {"quantity": 0, "side": "buy"}, "body.quantity"),
    ]
    for url, body, field in cases:
        problem = assert_problem(await gateway.client.post(url, json=body), 422)
        assert field_errors(problem) == {field}, (url, body, problem)
    malformed = await gateway.client.post(
        "/api/orders/A1?symbols=AAPL",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert_problem(malformed, 400)
    assert len(echo.received) == before
    accepted = await gateway.client.post(
        "/api/orders/A1?symbols=AAPL,MSFT", json={"quantity": 5, "side": "buy"}
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["path"] == "/orders/A1"
    assert len(echo.received) == before + 1

    document = (await gateway.client.get("/api/openapi.json")).json()
    operation = document["paths"]["/api/orders/{account}"]["post"]
    assert operation["summary"] == "Place an order"
    names = {(p["name"], p["in"]) for p in operation["parameters"]}
    assert names == {("account", "path"), ("symbols", "query")}
    assert operation["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "quantity",
        "side",
    ]
