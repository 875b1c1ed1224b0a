"""The simulated platform services, exercised over real sockets via the launcher."""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from itertools import pairwise
from typing import Any

import aiohttp
import httpx
import pytest

from backends.catalog import INSTRUMENTS
from backends.launcher import PLATFORM_LAYOUT, Platform, services_config, start_platform
from backends.price_walk import PriceWalk

SEED = 4242
PLATFORM_SERVICES = {"market-data", "portfolio", "orders", "news", "bots"}
ORDER_FIELDS = {
    "order_id", "account_id", "symbol", "side", "type", "quantity", "limit_price", "stop_price",
    "time_in_force", "status", "filled_quantity", "average_fill_price", "created_at", "updated_at",
}  # fmt: skip
QUOTE_FIELDS = {
    "symbol", "price", "change", "change_pct", "bid", "ask", "open", "high", "low", "prev_close",
    "volume", "timestamp",
}  # fmt: skip


@pytest.fixture(scope="module")
def backend_platform() -> Iterator[Platform]:
    # Our own platform, not the shared session one: these tests place orders and flip bots.
    with start_platform(seed=SEED, services=PLATFORM_SERVICES) as platform:
        yield platform


@pytest.fixture(autouse=True)
def _clean_backends(backend_platform: Platform) -> Iterator[None]:
    backend_platform.reset_faults()
    backend_platform.reset_stats()
    yield
    backend_platform.reset_faults()


@pytest.fixture
def url(backend_platform: Platform) -> dict[str, str]:
    """First instance URL per service."""
    return {service: urls[0] for service, urls in backend_platform.urls.items()}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def limit_order(**overrides: Any) -> dict[str, Any]:
    order = {"symbol": "MSFT", "side": "buy", "type": "limit", "quantity": 3, "limit_price": 100.5}
    order.update(overrides)
    return order


async def order_count(http: httpx.AsyncClient, orders_url: str, account_id: str) -> int:
    response = await http.get(f"{orders_url}/accounts/{account_id}/orders")
    return len(response.json()["orders"])


# --- launcher and health --------------------------------------------------------------


async def test_every_instance_reports_its_service_and_instance(
    backend_platform: Platform, http: httpx.AsyncClient
) -> None:
    urls = backend_platform.urls
    assert set(urls) == PLATFORM_SERVICES
    assert len(urls["market-data"]) == 2
    seen = []
    for service, service_urls in urls.items():
        for base in service_urls:
            body = (await http.get(f"{base}/health")).json()
            assert body["status"] == "ok"
            assert body["service"] == service
            seen.append(body["instance"])
    expected = [instance for service, instance in PLATFORM_LAYOUT if service in PLATFORM_SERVICES]
    assert sorted(seen) == sorted(expected)


def test_services_config_is_the_run_all_layout() -> None:
    config = services_config(base_port=9101)
    assert {service: config[service] for service in PLATFORM_SERVICES} == {
        "market-data": ["http://127.0.0.1:9101", "http://127.0.0.1:9102"],
        "portfolio": ["http://127.0.0.1:9103"],
        "orders": ["http://127.0.0.1:9104"],
        "news": ["http://127.0.0.1:9105"],
        "bots": ["http://127.0.0.1:9106"],
    }


async def test_killed_backend_refuses_then_restarts_on_the_same_port(
    backend_platform: Platform, http: httpx.AsyncClient
) -> None:
    news = backend_platform.process("news")
    port = news.port
    news.kill()
    with pytest.raises(httpx.ConnectError):
        await http.get(f"{news.url}/health")
    news.restart()
    assert news.port == port
    assert (await http.get(f"{news.url}/health")).json()["instance"] == "news-1"


# --- price walk -------------------------------------------------------------------------


def test_price_walk_is_deterministic_and_moves_in_small_bounded_steps() -> None:
    first, second, other = PriceWalk(SEED), PriceWalk(SEED), PriceWalk(SEED + 1)
    start = int(time.time())
    assert first.price("AAPL", start) == second.price("AAPL", start)
    assert first.price("AAPL", start) != other.price("AAPL", start)
    path = [first.price("TSLA", start + step) for step in range(3_000)]
    largest_step = max(abs(later / earlier - 1) for earlier, later in pairwise(path))
    assert 0 < largest_step < 0.0006 * INSTRUMENTS["TSLA"].volatility
    base = INSTRUMENTS["TSLA"].base_price
    assert all(
        0.4 * base < first.price("TSLA", start - day * 86_400) < 2.5 * base for day in range(365)
    )


# --- market data ------------------------------------------------------------------------


async def test_symbol_search_by_prefix_and_name(
    url: dict[str, str], http: httpx.AsyncClient
) -> None:
    base = url["market-data"]
    apple = (await http.get(f"{base}/symbols", params={"q": "aapl"})).json()["symbols"]
    assert apple[0] == {
        "symbol": "AAPL",
        "name": "Apple Inc.",
        "exchange": "NASDAQ",
        "sector": "Technology",
        "currency": "USD",
    }
    banks = (await http.get(f"{base}/symbols", params={"q": "bank"})).json()["symbols"]
    assert [s["symbol"] for s in banks] == ["BAC"]
    limited = (await http.get(f"{base}/symbols", params={"q": "a", "limit": 3})).json()["symbols"]
    assert len(limited) == 3
    assert all(s["exchange"] in {"NASDAQ", "NYSE"} for s in limited)
    everything = (await http.get(f"{base}/symbols", params={"limit": 100})).json()["symbols"]
    assert len(everything) >= 40
    bad = await http.get(f"{base}/symbols", params={"limit": 0})
    assert bad.status_code == 422
    assert isinstance(bad.json()["detail"], str)


async def test_quotes_have_the_contract_shape_and_omit_unknown_symbols(
    url: dict[str, str], http: httpx.AsyncClient
) -> None:
    response = await http.get(f"{url['market-data']}/quotes", params={"symbols": "AAPL,nope,msft"})
    quotes = response.json()["quotes"]
    assert [q["symbol"] for q in quotes] == ["AAPL", "MSFT"]
    for quote in quotes:
        assert set(quote) == QUOTE_FIELDS
        assert isinstance(quote["volume"], int) and quote["volume"] >= 0
        assert quote["bid"] < quote["ask"]
        assert quote["bid"] <= quote["price"] <= quote["ask"]
        assert quote["low"] <= quote["price"] <= quote["high"]
        assert quote["change"] == pytest.approx(quote["price"] - quote["prev_close"], abs=0.011)
        assert quote["change_pct"] == pytest.approx(
            quote["change"] / quote["prev_close"] * 100, abs=0.011
        )
        assert datetime.fromisoformat(quote["timestamp"]).utcoffset() is not None
        assert quote["timestamp"].endswith("Z")
    too_many = ",".join(list(INSTRUMENTS)[:45] + [f"X{i}" for i in range(6)])
    rejected = await http.get(f"{url['market-data']}/quotes", params={"symbols": too_many})
    assert rejected.status_code == 422


async def test_both_market_data_instances_agree_with_the_seeded_walk(
    backend_platform: Platform, http: httpx.AsyncClient
) -> None:
    first, second = backend_platform.urls["market-data"]
    params = {"symbols": "AAPL,NVDA,KO,BRK.B"}
    walk = PriceWalk(SEED)
    for _ in range(5):
        one, two = await asyncio.gather(
            http.get(f"{first}/quotes", params=params), http.get(f"{second}/quotes", params=params)
        )
        quotes_one, quotes_two = one.json()["quotes"], two.json()["quotes"]
        if quotes_one[0]["timestamp"] == quotes_two[0]["timestamp"]:
            break
    else:
        pytest.fail("the two instances never answered within the same second")
    assert quotes_one == quotes_two
    step = int(datetime.fromisoformat(quotes_one[0]["timestamp"]).timestamp())
    for quote in quotes_one:
        assert quote["price"] == round(walk.price(quote["symbol"], step), 2)


async def test_candles_are_consistent_and_capped(
    url: dict[str, str], http: httpx.AsyncClient
) -> None:
    base = url["market-data"]
    series = (
        await http.get(f"{base}/candles/AAPL", params={"interval": "5m", "range": "1d"})
    ).json()
    assert (series["symbol"], series["interval"], series["range"]) == ("AAPL", "5m", "1d")
    candles = series["candles"]
    assert len(candles) == 288
    times = [datetime.fromisoformat(c["t"]).timestamp() for c in candles]
    assert all(later - earlier == 300 for earlier, later in pairwise(times))
    for candle in candles:
        assert candle["h"] >= max(candle["o"], candle["c"])
        assert candle["l"] <= min(candle["o"], candle["c"])
        assert isinstance(candle["v"], int)
    quote = (await http.get(f"{base}/quotes", params={"symbols": "AAPL"})).json()["quotes"][0]
    assert candles[-1]["c"] == pytest.approx(quote["price"], rel=0.005)

    yearly = (
        await http.get(f"{base}/candles/AAPL", params={"interval": "1d", "range": "1y"})
    ).json()
    assert len(yearly["candles"]) == 365
    minute = (
        await http.get(f"{base}/candles/AAPL", params={"interval": "1m", "range": "1y"})
    ).json()
    assert len(minute["candles"]) == 500


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/candles/AAPL", {"interval": "2m", "range": "1d"}, 422),
        ("/candles/AAPL", {"interval": "5m", "range": "2y"}, 422),
        ("/candles/NOPE", {"interval": "5m", "range": "1d"}, 404),
    ],
)
async def test_candle_requests_are_validated(
    url: dict[str, str], http: httpx.AsyncClient, path: str, params: dict[str, str], status: int
) -> None:
    response = await http.get(f"{url['market-data']}{path}", params=params)
    assert response.status_code == status
    assert isinstance(response.json()["detail"], str)


async def test_sparklines_end_at_the_live_price(
    url: dict[str, str], http: httpx.AsyncClient
) -> None:
    base = url["market-data"]
    params: dict[str, str | int] = {"symbols": "MSFT,NOPE,NVDA", "points": 12}
    sparklines = (await http.get(f"{base}/sparklines", params=params)).json()["sparklines"]
    assert [s["symbol"] for s in sparklines] == ["MSFT", "NVDA"]
    assert all(len(s["points"]) == 12 for s in sparklines)
    quote = (await http.get(f"{base}/quotes", params={"symbols": "MSFT"})).json()["quotes"][0]
    assert sparklines[0]["points"][-1] == pytest.approx(quote["price"], rel=0.005)
    too_few = await http.get(f"{base}/sparklines", params={"symbols": "MSFT", "points": 1})
    assert too_few.status_code == 422


# --- portfolio --------------------------------------------------------------------------


async def test_alice_has_a_margin_account_with_eight_positions_and_two_watchlists(
    backend_platform: Platform, url: dict[str, str], http: httpx.AsyncClient
) -> None:
    base = url["portfolio"]
    account = (await http.get(f"{base}/accounts/ACC-1001")).json()
    assert set(account) == {"account_id", "currency", "cash", "buying_power", "prev_close_equity"}
    assert account["currency"] == "USD"
    assert account["buying_power"] == pytest.approx(2 * account["cash"])
    positions = (await http.get(f"{base}/accounts/ACC-1001/positions")).json()["positions"]
    assert len(positions) == 8
    assert all(isinstance(p["quantity"], int) and p["average_cost"] > 0 for p in positions)
    watchlists = (await http.get(f"{base}/accounts/ACC-1001/watchlists")).json()["watchlists"]
    assert len(watchlists) == 2
    assert all(w["watchlist_id"] and w["name"] and w["symbols"] for w in watchlists)

    # prev_close_equity is consistent with market-data's previous closes (same seed).
    symbols = ",".join(p["symbol"] for p in positions)
    quotes = (await http.get(f"{url['market-data']}/quotes", params={"symbols": symbols})).json()
    prev_close = {q["symbol"]: q["prev_close"] for q in quotes["quotes"]}
    expected = account["cash"] + sum(p["quantity"] * prev_close[p["symbol"]] for p in positions)
    assert account["prev_close_equity"] == pytest.approx(expected, abs=0.05)
    assert 150_000 < account["prev_close_equity"] < 400_000


async def test_cash_account_and_unknown_account(
    url: dict[str, str], http: httpx.AsyncClient
) -> None:
    base = url["portfolio"]
    carol = (await http.get(f"{base}/accounts/ACC-1003")).json()
    assert carol["buying_power"] == carol["cash"]
    assert len((await http.get(f"{base}/accounts/ACC-1003/positions")).json()["positions"]) == 1
    for account_id in ("ACC-1002", "ACC-2001", "ACC-2002"):
        assert (await http.get(f"{base}/accounts/{account_id}")).status_code == 200
    for path in (
        "/accounts/ACC-9999",
        "/accounts/ACC-9999/positions",
        "/accounts/ACC-9999/watchlists",
    ):
        response = await http.get(f"{base}{path}")
        assert response.status_code == 404
        assert "ACC-9999" in response.json()["detail"]


# --- orders -----------------------------------------------------------------------------


async def test_demo_accounts_have_seeded_orders_newest_first(
    url: dict[str, str], http: httpx.AsyncClient
) -> None:
    orders = (await http.get(f"{url['orders']}/accounts/ACC-2002/orders")).json()["orders"]
    assert {o["status"] for o in orders} >= {"open", "filled"}
    assert all(set(o) == ORDER_FIELDS for o in orders)
    created = [o["created_at"] for o in orders]
    assert created == sorted(created, reverse=True)
    open_only = await http.get(
        f"{url['orders']}/accounts/ACC-2002/orders", params={"status": "open"}
    )
    assert open_only.json()["orders"]
    assert all(o["status"] == "open" for o in open_only.json()["orders"])
    bad = await http.get(f"{url['orders']}/accounts/ACC-2002/orders", params={"status": "done"})
    assert bad.status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        {"type": "limit", "limit_price": None},
        {"type": "market", "limit_price": 10.0},
        {"type": "market", "limit_price": None, "stop_price": 10.0},
        {"type": "stop", "limit_price": None},
        {"type": "stop", "limit_price": 10.0, "stop_price": 11.0},
        {"type": "stop_limit", "stop_price": None},
        {"type": "stop_limit", "limit_price": None, "stop_price": 11.0},
        {"type": "limit", "stop_price": 11.0},
        {"quantity": 0},
        {"quantity": -2},
        {"quantity": "5"},
        {"symbol": "NOPE"},
        {"side": "short"},
        {"type": "trailing_stop"},
        {"time_in_force": "week"},
        {"limit_price": -1},
    ],
)
async def test_invalid_orders_are_rejected_with_422(
    url: dict[str, str], http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    before = await order_count(http, url["orders"], "ACC-1003")
    response = await http.post(
        f"{url['orders']}/accounts/ACC-1003/orders", json=limit_order(**body)
    )
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)
    assert await order_count(http, url["orders"], "ACC-1003") == before


async def test_market_orders_fill_and_other_types_rest_open(
    url: dict[str, str], http: httpx.AsyncClient
) -> None:
    orders_url = f"{url['orders']}/accounts/ACC-1002/orders"
    market = await http.post(
        orders_url, json={"symbol": "TSLA", "side": "sell", "type": "market", "quantity": 2}
    )
    assert market.status_code == 201
    filled = market.json()
    assert set(filled) == ORDER_FIELDS
    assert filled["order_id"].startswith("ord_")
    assert (filled["status"], filled["filled_quantity"], filled["quantity"]) == ("filled", 2, 2)
    quote = (await http.get(f"{url['market-data']}/quotes", params={"symbols": "TSLA"})).json()
    assert filled["average_fill_price"] == pytest.approx(quote["quotes"][0]["price"], rel=0.005)

    resting = [
        limit_order(),
        limit_order(type="stop", limit_price=None, stop_price=90.0, side="sell"),
        limit_order(type="stop_limit", stop_price=99.0, time_in_force="gtc", quantity=0.5),
    ]
    for body in resting:
        response = await http.post(orders_url, json=body)
        assert response.status_code == 201, response.text
        order = response.json()
        assert (order["status"], order["filled_quantity"], order["average_fill_price"]) == (
            "open",
            0,
            None,
        )
        assert order["type"] == body["type"]
    newest = (await http.get(orders_url)).json()["orders"][0]
    assert newest["type"] == "stop_limit"
    assert newest["quantity"] == 0.5


async def test_idempotent_replay_returns_the_same_order_without_a_new_one(
    backend_platform: Platform, url: dict[str, str], http: httpx.AsyncClient
) -> None:
    orders_url = f"{url['orders']}/accounts/ACC-1001/orders"
    before = await order_count(http, url["orders"], "ACC-1001")
    headers = {"Idempotency-Key": "replay-1"}
    first = await http.post(orders_url, json=limit_order(), headers=headers)
    second = await http.post(orders_url, json=limit_order(), headers=headers)
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert second.status_code == 200
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()
    assert await order_count(http, url["orders"], "ACC-1001") == before + 1
    stats = backend_platform.process("orders").stats()
    assert stats["requests"]["POST /accounts/ACC-1001/orders"] == 2


async def test_concurrent_duplicates_create_exactly_one_order(
    url: dict[str, str], http: httpx.AsyncClient
) -> None:
    orders_url = f"{url['orders']}/accounts/ACC-1001/orders"
    before = await order_count(http, url["orders"], "ACC-1001")
    headers = {"Idempotency-Key": "burst-1"}
    responses = await asyncio.gather(
        *(http.post(orders_url, json=limit_order(quantity=7), headers=headers) for _ in range(20))
    )
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert len({r.json()["order_id"] for r in responses}) == 1
    assert await order_count(http, url["orders"], "ACC-1001") == before + 1


async def test_idempotency_key_reuse_with_another_body_is_rejected(
    url: dict[str, str], http: httpx.AsyncClient
) -> None:
    orders_url = f"{url['orders']}/accounts/ACC-1001/orders"
    headers = {"Idempotency-Key": "reuse-1"}
    assert (await http.post(orders_url, json=limit_order(), headers=headers)).status_code == 201
    changed = await http.post(orders_url, json=limit_order(quantity=4), headers=headers)
    assert changed.status_code == 422
    assert changed.json() == {"detail": "Idempotency-Key reused with a different request"}


async def test_idempotency_keys_are_scoped_per_account(
    url: dict[str, str], http: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "shared-key"}
    one = await http.post(
        f"{url['orders']}/accounts/ACC-2001/orders", json=limit_order(), headers=headers
    )
    two = await http.post(
        f"{url['orders']}/accounts/ACC-2002/orders", json=limit_order(), headers=headers
    )
    assert (one.status_code, two.status_code) == (201, 201)
    assert one.json()["order_id"] != two.json()["order_id"]


async def test_cancel_open_filled_and_unknown_orders(
    url: dict[str, str], http: httpx.AsyncClient
) -> None:
    orders_url = f"{url['orders']}/accounts/ACC-1002/orders"
    order = (await http.post(orders_url, json=limit_order())).json()
    cancelled = await http.delete(f"{orders_url}/{order['order_id']}")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["updated_at"] >= order["updated_at"]
    again = await http.delete(f"{orders_url}/{order['order_id']}")
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]

    market = {"symbol": "KO", "side": "buy", "type": "market", "quantity": 1}
    filled = (await http.post(orders_url, json=market)).json()
    assert (await http.delete(f"{orders_url}/{filled['order_id']}")).status_code == 409
    missing = await http.delete(f"{orders_url}/ord_doesnotexist")
    assert missing.status_code == 404
    assert isinstance(missing.json()["detail"], str)
    wrong_account = await http.delete(
        f"{url['orders']}/accounts/ACC-9999/orders/{order['order_id']}"
    )
    assert wrong_account.status_code == 404


# --- bots -------------------------------------------------------------------------------


async def test_bots_start_and_stop(url: dict[str, str], http: httpx.AsyncClient) -> None:
    base = f"{url['bots']}/accounts/ACC-1001/bots"
    bots = {b["bot_id"]: b for b in (await http.get(base)).json()["bots"]}
    assert {b["status"] for b in bots.values()} == {"running", "stopped", "error"}
    assert {b["strategy"] for b in bots.values()} <= {"mean_reversion", "momentum", "grid", "dca"}
    stopped = next(b for b in bots.values() if b["status"] == "stopped")
    assert stopped["started_at"] is None

    started = (await http.post(f"{base}/{stopped['bot_id']}/start")).json()
    assert started["status"] == "running"
    assert started["started_at"] is not None
    repeat = await http.post(f"{base}/{stopped['bot_id']}/start")
    assert repeat.status_code == 200
    assert repeat.json()["started_at"] == started["started_at"]

    halted = (await http.post(f"{base}/{stopped['bot_id']}/stop")).json()
    assert (halted["status"], halted["started_at"]) == ("stopped", None)
    assert (await http.get(f"{base}/{stopped['bot_id']}")).json()["status"] == "stopped"


async def test_unknown_bots_and_other_accounts_bots_are_404(
    url: dict[str, str], http: httpx.AsyncClient
) -> None:
    alice_bot = (await http.get(f"{url['bots']}/accounts/ACC-1001/bots")).json()["bots"][0]
    for path in (
        "/accounts/ACC-1001/bots/bot_nope",
        f"/accounts/ACC-1002/bots/{alice_bot['bot_id']}",
        "/accounts/ACC-9999/bots",
    ):
        response = await http.get(f"{url['bots']}{path}")
        assert response.status_code == 404
        assert isinstance(response.json()["detail"], str)
    carol = await http.get(f"{url['bots']}/accounts/ACC-1003/bots")
    assert carol.json() == {"bots": []}


# --- news -------------------------------------------------------------------------------


async def test_news_filters_by_symbol_newest_first(
    url: dict[str, str], http: httpx.AsyncClient
) -> None:
    params: dict[str, Any] = {"symbols": "AAPL,MSFT", "limit": 6}
    articles = (await http.get(f"{url['news']}/news", params=params)).json()["articles"]
    assert len(articles) == 6
    assert all({"AAPL", "MSFT"} & set(a["symbols"]) for a in articles)
    published = [datetime.fromisoformat(a["published_at"]) for a in articles]
    assert published == sorted(published, reverse=True)
    assert published[0].timestamp() <= time.time()
    latest = (await http.get(f"{url['news']}/news/latest", params={"limit": 7})).json()["articles"]
    assert len(latest) == 7
    assert all(a["headline"] and a["url"].startswith("https://") and a["source"] for a in latest)
    assert len({a["article_id"] for a in latest}) == 7
    assert (await http.get(f"{url['news']}/news/latest", params={"limit": 0})).status_code == 422


# --- fault injection and stats ----------------------------------------------------------


async def test_injected_latency_delays_matching_requests(
    backend_platform: Platform, url: dict[str, str], http: httpx.AsyncClient
) -> None:
    backend_platform.process("news").set_faults(latency_ms=300, paths=["/news"])
    started = time.perf_counter()
    response = await http.get(f"{url['news']}/news/latest")
    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.3


async def test_error_rate_one_fails_every_request_but_health_and_controls(
    backend_platform: Platform, url: dict[str, str], http: httpx.AsyncClient
) -> None:
    portfolio = backend_platform.process("portfolio")
    settings = portfolio.set_faults(error_rate=1.0, error_status=502)
    assert settings["error_rate"] == 1.0
    for _ in range(5):
        response = await http.get(f"{url['portfolio']}/accounts/ACC-1001")
        assert response.status_code == 502
        assert response.json() == {"detail": "injected fault"}
    assert (await http.get(f"{url['portfolio']}/health")).status_code == 200
    assert (await http.get(f"{url['portfolio']}/__faults")).json()["error_status"] == 502
    # Faulted requests still count as having reached the backend.
    assert portfolio.stats()["requests"]["GET /accounts/ACC-1001"] == 5


async def test_faults_apply_only_to_listed_path_prefixes(
    backend_platform: Platform, url: dict[str, str], http: httpx.AsyncClient
) -> None:
    backend_platform.process("news").set_faults(error_rate=1.0, paths=["/news/latest"])
    assert (await http.get(f"{url['news']}/news/latest")).status_code == 503
    assert (await http.get(f"{url['news']}/news", params={"symbols": "AAPL"})).status_code == 200


async def test_drop_rate_one_drops_the_connection(
    backend_platform: Platform, url: dict[str, str]
) -> None:
    backend_platform.process("bots").set_faults(drop_rate=1.0)
    async with aiohttp.ClientSession() as session:
        with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
            async with session.get(f"{url['bots']}/accounts/ACC-1001/bots") as response:
                await response.read()
        async with session.get(f"{url['bots']}/health") as response:
            assert response.status == 200


async def test_fault_settings_merge_validate_and_reset(
    url: dict[str, str], http: httpx.AsyncClient
) -> None:
    faults = f"{url['orders']}/__faults"
    await http.put(faults, json={"latency_ms": 5})
    merged = (await http.put(faults, json={"error_rate": 0.25})).json()
    assert (merged["latency_ms"], merged["error_rate"], merged["paths"]) == (5, 0.25, None)
    for invalid in ({"error_rate": 2}, {"drop_rate": -0.1}, {"error_status": 200}, {"jitter": 1}):
        response = await http.put(faults, json=invalid)
        assert response.status_code == 422
        assert isinstance(response.json()["detail"], str)
    assert (await http.get(faults)).json() == merged
    reset = (await http.delete(faults)).json()
    assert reset == {
        "latency_ms": 0,
        "error_rate": 0,
        "error_status": 503,
        "drop_rate": 0,
        "paths": None,
    }


async def test_stats_count_requests_per_route_and_keep_last_headers(
    url: dict[str, str], http: httpx.AsyncClient
) -> None:
    base = url["portfolio"]
    await http.get(f"{base}/accounts/ACC-1001", headers={"X-Request-ID": "req-1"})
    await http.get(f"{base}/accounts/ACC-1001", headers={"X-Request-ID": "req-2"})
    await http.get(f"{base}/accounts/ACC-1001/positions")
    await http.get(f"{base}/__faults")
    stats = (await http.get(f"{base}/__stats")).json()
    assert stats["requests"] == {"GET /accounts/ACC-1001": 2, "GET /accounts/ACC-1001/positions": 1}
    assert stats["total"] == 3
    assert stats["last_headers"]["GET /accounts/ACC-1001"]["x-request-id"] == "req-2"
    assert "x-request-id" not in stats["last_headers"]["GET /accounts/ACC-1001/positions"]
    await http.delete(f"{base}/__stats")
    assert (await http.get(f"{base}/__stats")).json()["total"] == 0
