"""The example routes `make run` seeds, as the README calls them: partner quotes through a
pass-through route (API key, scope, cached a second) and public news (anonymous rate limit,
a field renamed by a transform)."""

import asyncio
import json
import re
from typing import Any

import pytest

from app.settings import Settings
from app.store.demo import DEMO_ROUTES, seed_demo_routes
from tests.fixtures.consumers import ADMIN, create_partner
from tests.fixtures.databases import ROOT
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.problems import assert_problem


@pytest.fixture
async def demo(settings: Settings) -> RunningGateway:  # type: ignore[misc]
    assert await seed_demo_routes(settings.database_url) == [r.name for r in DEMO_ROUTES]
    assert await seed_demo_routes(settings.database_url) == []
    async with running_gateway(settings) as gateway:
        yield gateway


async def test_partner_quotes_route(demo: RunningGateway) -> None:
    url = "/api/market-data/quotes?symbols=AAPL,MSFT"
    assert_problem(await demo.client.get(url), 401)
    partner = await create_partner(demo.client)
    first = await demo.client.get(url, headers=partner.headers)
    assert first.status_code == 200, first.text
    quotes = first.json()["quotes"]
    assert [q["symbol"] for q in quotes] == ["AAPL", "MSFT"]
    assert "uri-miss" in first.headers["cache-status"]
    second = await demo.client.get(url, headers=partner.headers)
    assert second.status_code == 200
    assert second.headers["cache-status"].startswith("gateway; hit")
    assert second.json() == first.json()
    # A list route: CSV when asked, 406 for what it cannot produce.
    as_csv = await demo.client.get(url, headers={**partner.headers, "Accept": "text/csv"})
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"].startswith("text/csv")
    lines = as_csv.text.split("\r\n")
    assert lines[0].split(",")[0] == "symbol"
    assert [line.split(",")[0] for line in lines[1:3]] == ["AAPL", "MSFT"]
    assert "Accept" in as_csv.headers["vary"]
    refused = await demo.client.get(url, headers={**partner.headers, "Accept": "image/png"})
    assert assert_problem(refused, 406)["available"] == ["application/json", "text/csv"]
    # The route's query schema: nothing is forwarded for a bad symbol list.
    bad = await demo.client.get("/api/market-data/quotes?symbols=aapl", headers=partner.headers)
    assert assert_problem(bad, 422)["errors"][0]["field"] == "query.symbols"
    reader = await create_partner(demo.client, scopes=("candles:read",))
    problem = assert_problem(await demo.client.get(url, headers=reader.headers), 403)
    assert problem["missing_scopes"] == ["quotes:read"]


async def test_public_news_route(demo: RunningGateway) -> None:
    response = await demo.client.get("/api/news/latest")
    assert response.status_code == 200, response.text
    articles = response.json()["articles"]
    assert articles
    assert all("title" in a and "headline" not in a for a in articles)
    assert '"news-latest-address"' in response.headers["ratelimit-policy"]
    # 10 a second with a burst of 20, per client address: 40 at once cannot all pass.
    answers = await asyncio.gather(*(demo.client.get("/api/news/latest") for _ in range(40)))
    refused = [a for a in answers if a.status_code == 429]
    assert refused and all(a.status_code in {200, 429} for a in answers)
    assert assert_problem(refused[0], 429)["limit"] == "news-latest-address"


def _readme_route() -> dict[str, Any]:
    """The route the README's pass-through section creates, as printed there."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(
        r"admin/v1/routes -H \"\$admin\" -H \"\$json\" -d '(\{.*?\})'\n", readme, re.S
    )
    assert found is not None
    declaration: dict[str, Any] = json.loads(found.group(1))
    return declaration


async def test_the_readme_route_works_as_printed(demo: RunningGateway) -> None:
    created = await demo.client.post("/admin/v1/routes", json=_readme_route(), headers=ADMIN)
    assert created.status_code == 201, created.text
    partner = await create_partner(demo.client)
    response = await demo.client.get(
        "/api/market-data/candles/MSFT?interval=1d&range=1mo", headers=partner.headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-served-by"] == "gateway"
    candles = response.json()["candles"]
    assert candles and all("v" not in c and "c" in c for c in candles)
    bad = await demo.client.get(
        "/api/market-data/candles/MSFT?interval=2d&range=1mo", headers=partner.headers
    )
    assert assert_problem(bad, 422)["errors"][0]["field"] == "query.interval"
