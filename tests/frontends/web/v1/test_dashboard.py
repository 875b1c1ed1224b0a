"""GET /web/v1/dashboard: the composed view, and how it degrades when services fail."""

import time

import pytest

from app.settings import Settings
from backends.launcher import Platform
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import bearer_headers
from tests.fixtures.platform_control import PlatformControl
from tests.fixtures.problems import assert_problem

DASHBOARD = "/web/v1/dashboard"


async def test_dashboard_numbers_add_up(alice: RunningGateway) -> None:
    response = await alice.client.get(DASHBOARD)

    assert response.status_code == 200, response.text
    view = response.json()
    assert view["degraded"] == []
    account, positions = view["account"], view["positions"]
    assert account["account_id"] == "ACC-1001"
    assert {p["symbol"] for p in positions} >= {"AAPL", "MSFT", "NVDA"}
    for position in positions:
        assert position["price"] > 0
        assert position["market_value"] == pytest.approx(
            position["quantity"] * position["price"], abs=0.01
        )
        assert position["unrealized_pnl"] == pytest.approx(
            position["market_value"] - position["cost_basis"], abs=0.01
        )
        assert position["unrealized_pnl_pct"] == pytest.approx(
            position["unrealized_pnl"] / position["cost_basis"] * 100, abs=0.01
        )
    market_values = sum(p["market_value"] for p in positions)
    assert account["equity_basis"] == "live"
    assert account["equity"] == pytest.approx(account["cash"] + market_values, abs=0.01)
    assert account["day_pnl"] == pytest.approx(
        account["equity"] - account["prev_close_equity"], abs=0.01
    )
    assert account["day_pnl_pct"] == pytest.approx(
        account["day_pnl"] / account["prev_close_equity"] * 100, abs=0.01
    )

    watchlists = view["watchlists"]
    assert [w["watchlist_id"] for w in watchlists] == ["wl-1001-tech", "wl-1001-income"]
    for item in (item for w in watchlists for item in w["items"]):
        assert item["price"] > 0
        assert len(item["sparkline"]) == 30
        # The sparkline ends at the live price, which the quote also reports.
        assert item["sparkline"][-1] == pytest.approx(item["price"], rel=0.01)

    assert view["open_orders"], "the demo account has working orders"
    assert {o["status"] for o in view["open_orders"]} == {"open"}
    bots = view["bots"]
    assert bots["running"] == sum(1 for b in bots["bots"] if b["status"] == "running")
    assert view["news"], "the news feed is never empty"


async def test_news_failing_leaves_the_rest(
    alice: RunningGateway, control: PlatformControl
) -> None:
    await control.fault("news", error_rate=1.0, error_status=503)

    response = await alice.client.get(DASHBOARD)

    assert response.status_code == 200, response.text
    view = response.json()
    assert view["news"] is None
    assert view["degraded"] == ["news"]
    assert view["positions"] and view["watchlists"] and view["bots"]


async def test_quotes_failing_keeps_positions_at_cost(
    alice: RunningGateway, control: PlatformControl
) -> None:
    await control.fault("market-data", error_rate=1.0, error_status=500, paths=["/quotes"])

    response = await alice.client.get(DASHBOARD)

    assert response.status_code == 200, response.text
    view = response.json()
    assert view["degraded"] == ["quotes"]
    positions = view["positions"]
    assert positions
    for position in positions:
        assert position["quantity"] > 0 and position["cost_basis"] > 0
        for derived in ("price", "change_pct", "market_value", "unrealized_pnl"):
            assert position[derived] is None
    account = view["account"]
    assert account["equity_basis"] == "cost"
    assert account["equity"] == pytest.approx(
        account["cash"] + sum(p["cost_basis"] for p in positions), abs=0.01
    )
    assert account["day_pnl"] is None and account["day_pnl_pct"] is None
    # Sparklines came through, only the quote fields are missing.
    item = view["watchlists"][0]["items"][0]
    assert item["price"] is None and item["sparkline"]


async def test_watchlists_failing_still_prices_positions(
    alice: RunningGateway, control: PlatformControl
) -> None:
    await control.reset_stats("market-data")
    await control.fault("portfolio", error_rate=1.0, paths=["/accounts/ACC-1001/watchlists"])

    response = await alice.client.get(DASHBOARD)

    assert response.status_code == 200, response.text
    view = response.json()
    assert view["watchlists"] is None
    assert view["degraded"] == ["watchlists"]
    assert all(p["price"] is not None for p in view["positions"])
    assert view["account"]["equity_basis"] == "live"
    # With no watchlists there is nothing to draw, so sparklines are not asked for.
    assert "GET /sparklines" not in await control.requests("market-data")


async def test_orders_and_bots_failing_degrade_both(
    alice: RunningGateway, control: PlatformControl
) -> None:
    await control.fault("orders", error_rate=1.0, error_status=500)
    await control.fault("bots", drop_rate=1.0)

    response = await alice.client.get(DASHBOARD)

    assert response.status_code == 200, response.text
    view = response.json()
    assert view["open_orders"] is None and view["bots"] is None
    assert sorted(view["degraded"]) == ["bots", "orders"]


@pytest.mark.parametrize(("upstream_status", "status"), [(503, 503), (500, 502)])
async def test_portfolio_failing_is_the_routes_problem(
    alice: RunningGateway, control: PlatformControl, upstream_status: int, status: int
) -> None:
    await control.fault("portfolio", error_rate=1.0, error_status=upstream_status)

    response = await alice.client.get(DASHBOARD)

    problem = assert_problem(response, status)
    assert problem["service"] == "portfolio"


async def test_portfolio_timing_out_is_a_504(
    settings: Settings, platform: Platform, control: PlatformControl
) -> None:
    upstream = settings.upstream.model_copy(update={"default_timeout_s": 0.3})
    quick = settings.model_copy(update={"upstream": upstream})
    await control.fault("portfolio", latency_ms=600)

    async with running_gateway(quick) as gateway:
        signed_in = await bearer_headers(platform, username="alice")
        response = await gateway.client.get(DASHBOARD, headers=signed_in)

    problem = assert_problem(response, 504)
    assert problem["service"] == "portfolio"


async def test_signed_out_caller_gets_a_401(
    gateway: RunningGateway, control: PlatformControl
) -> None:
    await control.reset_stats("portfolio")

    response = await gateway.client.get(DASHBOARD)

    assert_problem(response, 401)
    assert await control.requests("portfolio") == {}


async def test_request_id_reaches_the_services(
    alice: RunningGateway, control: PlatformControl
) -> None:
    response = await alice.client.get(DASHBOARD, headers={"X-Request-ID": "web-dash-42"})

    assert response.status_code == 200
    assert response.headers["x-request-id"] == "web-dash-42"
    headers = await control.last_headers("portfolio", "GET /accounts/ACC-1001/positions")
    assert headers["x-request-id"] == "web-dash-42"


async def test_openapi_documents_nullable_sections(alice: RunningGateway) -> None:
    document = (await alice.client.get("/web/v1/openapi.json")).json()

    operations = {
        operation["operationId"]
        for path in document["paths"].values()
        for operation in path.values()
    }
    assert operations >= {
        "get_dashboard",
        "get_symbol_detail",
        "list_orders",
        "place_order",
        "cancel_order",
        "list_bots",
        "start_bot",
        "stop_bot",
    }
    dashboard = document["components"]["schemas"]["DashboardView"]
    news = dashboard["properties"]["news"]
    assert {"type": "null"} in news["anyOf"]
    assert "null" in news["description"]
    assert dashboard["examples"]
    place = document["paths"]["/web/v1/orders"]["post"]
    assert {"409", "422", "502", "503", "504"} <= set(place["responses"])
    assert "Idempotent-Replayed" in place["responses"]["201"]["headers"]
    parameters = [
        parameter["name"]
        for path in document["paths"].values()
        for operation in path.values()
        for parameter in operation.get("parameters", [])
    ]
    assert "account_id" not in parameters, "the account comes from the caller's identity"


async def test_a_slow_news_service_costs_each_dashboard_its_budget_not_the_deadline(
    alice: RunningGateway, control: PlatformControl
) -> None:
    await control.fault("news", latency_ms=5000)
    await control.reset_stats("news")

    for _ in range(4):
        started = time.monotonic()
        response = await alice.client.get(DASHBOARD)
        waited = time.monotonic() - started

        assert response.status_code == 200, response.text
        view = response.json()
        assert view["news"] is None
        assert view["degraded"] == ["news"]
        assert view["positions"] and view["watchlists"] and view["bots"]
        # The 0.8 s budget of an optional section, not the 5 s deadline.
        assert waited < 2.0
    # Never more than one try per dashboard: no retry on the only, timed-out instance.
    assert sum((await control.requests("news")).values()) <= 4


async def test_a_slow_required_section_keeps_the_request_deadline(
    alice: RunningGateway, control: PlatformControl
) -> None:
    await control.fault("portfolio", latency_ms=1200, paths=["/accounts/ACC-1001/positions"])

    response = await alice.client.get(DASHBOARD)

    assert response.status_code == 200, response.text
    view = response.json()
    assert view["positions"]
    assert view["degraded"] == []


async def test_the_optional_section_budget_is_a_setting(
    settings: Settings, platform: Platform, control: PlatformControl
) -> None:
    resilience = settings.resilience.model_copy(update={"optional_section_ms": 100})
    impatient = settings.model_copy(update={"resilience": resilience})
    await control.fault("news", latency_ms=400)

    async with running_gateway(impatient) as gateway:
        signed_in = await bearer_headers(platform, username="alice")
        response = await gateway.client.get(DASHBOARD, headers=signed_in)

    assert response.status_code == 200, response.text
    assert response.json()["degraded"] == ["news"]
