"""GET /mobile/v1/home: one screen from four services, and how it degrades."""

from urllib.parse import parse_qs

import pytest

from backends.launcher import BackendProcess
from tests.fixtures.gateway import RunningGateway
from tests.fixtures.platform_control import PlatformControl
from tests.fixtures.problems import assert_problem
from tests.frontends.conftest import SEEDED_OPEN_ORDERS

HOME = "/mobile/v1/home"
ACCOUNT = "ACC-1001"


async def test_home_counts_match_the_backends(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    await backends.reset_stats("market-data", "portfolio")

    response = await gateway.client.get(HOME)

    assert response.status_code == 200, response.text
    home = response.json()
    assert home["degraded"] == []
    open_orders = await backends.get("orders", f"/accounts/{ACCOUNT}/orders", status="open")
    assert home["open_orders"] == len(open_orders["orders"])
    bots = (await backends.get("bots", f"/accounts/{ACCOUNT}/bots"))["bots"]
    assert home["running_bots"] == sum(1 for bot in bots if bot["status"] == "running")
    # The demo data has working orders and a fleet of running and stopped bots.
    assert home["open_orders"] > 0
    assert 0 < home["running_bots"] < len(bots)
    account = await backends.get("portfolio", f"/accounts/{ACCOUNT}")
    assert home["day_pnl"] == pytest.approx(home["equity"] - account["prev_close_equity"], abs=0.01)
    assert home["day_pnl_pct"] == pytest.approx(
        home["day_pnl"] / account["prev_close_equity"] * 100, abs=0.01
    )
    # Positions first, then one batched quote call for all of them.
    assert (await backends.requests("market-data")) == {"GET /quotes": 1}


async def test_movers_are_the_largest_absolute_changes(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    response = await gateway.client.get(HOME)

    assert response.status_code == 200, response.text
    movers = response.json()["movers"]
    positions = await backends.get("portfolio", f"/accounts/{ACCOUNT}/positions")
    held = [p["symbol"] for p in positions["positions"]]
    assert len(movers) == 3
    assert set(movers[0]) == {"symbol", "price", "change_pct"}
    assert {m["symbol"] for m in movers} <= set(held)
    sizes = [abs(m["change_pct"]) for m in movers]
    assert sizes == sorted(sizes, reverse=True)
    # Prices move every second, so compare against a fresh read with a little slack.
    quotes = (await backends.get("market-data", "/quotes", symbols=",".join(held)))["quotes"]
    shown = {m["symbol"] for m in movers}
    others = [abs(q["change_pct"]) for q in quotes if q["symbol"] not in shown]
    assert max(others) <= min(sizes) + 0.1


async def test_failing_bots_leave_a_null_section(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    await backends.fault("bots", error_rate=1.0, error_status=503)

    response = await gateway.client.get(HOME)

    assert response.status_code == 200, response.text
    home = response.json()
    assert home["running_bots"] is None
    assert home["degraded"] == ["bots"]
    assert home["equity"] > 0
    assert isinstance(home["open_orders"], int)
    assert len(home["movers"]) == 3


async def test_failing_quotes_leave_the_counts(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    await backends.fault("market-data", error_rate=1.0, error_status=500)

    response = await gateway.client.get(HOME)

    assert response.status_code == 200, response.text
    home = response.json()
    assert home["degraded"] == ["quotes"]
    assert home["equity"] is home["day_pnl"] is home["movers"] is None
    assert isinstance(home["open_orders"], int)
    assert isinstance(home["running_bots"], int)


@pytest.mark.parametrize(("upstream_status", "status"), [(500, 502), (503, 503)])
async def test_failing_portfolio_fails_the_screen(
    gateway: RunningGateway, backends: PlatformControl, upstream_status: int, status: int
) -> None:
    await backends.fault("portfolio", error_rate=1.0, error_status=upstream_status)

    response = await gateway.client.get(HOME)

    problem = assert_problem(response, status)
    assert problem["service"] == "portfolio"


async def test_open_orders_are_counted_without_fetching_them(
    busy: RunningGateway, busy_orders: BackendProcess
) -> None:
    response = await busy.client.get(HOME)

    assert response.status_code == 200, response.text
    home = response.json()
    assert home["open_orders"] > SEEDED_OPEN_ORDERS
    # A page of one carries the total: the gateway never asks for every working order.
    last_query = busy_orders.stats()["last_query"][f"GET /accounts/{ACCOUNT}/orders"]
    assert parse_qs(last_query) == {"status": ["open"], "limit": ["1"]}
    assert len(response.content) < 1_000
