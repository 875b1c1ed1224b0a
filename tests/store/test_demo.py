"""The demonstration partner of `make run`: added once, and its client's token is a partner."""

from app.settings import Settings
from app.store.demo import seed_demo_partner
from backends.launcher import Platform
from tests.fixtures.gateway import running_gateway
from tests.fixtures.identity import bearer_headers


async def test_the_demo_partner_is_added_once_and_serves_partner_acme(
    settings: Settings, database_url: str, platform: Platform
) -> None:
    assert await seed_demo_partner(database_url) is True
    assert await seed_demo_partner(database_url) is False
    headers = await bearer_headers(platform, client_id="partner-acme")
    async with running_gateway(settings) as gateway:
        quotes = await gateway.client.get(
            "/partner/v1/quotes", params={"symbols": "AAPL,MSFT"}, headers=headers
        )
        usage = await gateway.client.get("/partner/v1/usage", headers=headers)
    assert quotes.status_code == 200, quotes.text
    assert [q["symbol"] for q in quotes.json()["quotes"]] == ["AAPL", "MSFT"]
    assert usage.json()["consumer"] == "acme-demo"
    assert usage.json()["account_ids"] == ["ACC-2001", "ACC-2002"]
