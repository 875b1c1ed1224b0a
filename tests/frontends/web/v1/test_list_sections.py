"""A busy account: each list section of a view is capped, with its total and a link to the
rest, and `GET /web/v1/orders` pages through every order exactly once."""

import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.frontends import paging
from app.frontends.web.v1 import compose
from backends.launcher import BackendProcess
from tests.fixtures.gateway import RunningGateway
from tests.fixtures.platform_control import PlatformControl
from tests.fixtures.problems import assert_problem, field_errors
from tests.frontends.conftest import BUSY_ACCOUNT, SEEDED_OPEN_ORDERS, SEEDED_SYMBOL

ORDERS = "/web/v1/orders"
BACKEND_ORDERS = f"/accounts/{BUSY_ACCOUNT}/orders"
RESTING_BUY = {"symbol": "AAPL", "side": "buy", "type": "limit", "quantity": 1, "limit_price": 1.0}


async def backend_orders(backend: BackendProcess, **params: str) -> dict[str, Any]:
    """The orders service's own answer, straight from it."""
    async with httpx.AsyncClient(base_url=backend.url, timeout=30) as client:
        response = await client.get(BACKEND_ORDERS, params=params)
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def backend_query(backend: BackendProcess) -> dict[str, list[str]]:
    """The query of the latest listing the orders service answered."""
    return parse_qs(backend.stats()["last_query"][f"GET {BACKEND_ORDERS}"])


def query_of(link: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(link).query)


async def test_dashboard_shows_a_page_of_open_orders(
    busy: RunningGateway, busy_orders: BackendProcess
) -> None:
    working = (await backend_orders(busy_orders, status="open", limit="1"))["total"]
    assert working > SEEDED_OPEN_ORDERS

    response = await busy.client.get("/web/v1/dashboard")

    assert response.status_code == 200, response.text
    # 3.3 MB when every working order was listed.
    assert len(response.content) < 100_000
    view = response.json()
    assert view["degraded"] == []
    assert len(view["open_orders"]) == paging.SECTION_LIMIT
    assert {order["status"] for order in view["open_orders"]} == {"open"}
    assert view["open_orders_total"] == working
    # The gateway asked the orders service for one page, not for every order.
    assert backend_query(busy_orders) == {
        "status": ["open"],
        "limit": [str(paging.SECTION_LIMIT)],
    }
    link = view["open_orders_next"]
    assert link.startswith(f"{ORDERS}?") and query_of(link)["status"] == ["open"]

    # Its default page is as long as the section.
    following = await busy.client.get(link)

    assert following.status_code == 200, following.text
    newest = await backend_orders(busy_orders, status="open", limit=str(2 * paging.SECTION_LIMIT))
    shown = [o["order_id"] for o in view["open_orders"] + following.json()["orders"]]
    assert shown == [o["order_id"] for o in newest["orders"]]


async def test_next_cursor_lists_every_order_exactly_once(
    busy: RunningGateway, busy_orders: BackendProcess
) -> None:
    everything = [o["order_id"] for o in (await backend_orders(busy_orders))["orders"]]
    assert len(everything) > SEEDED_OPEN_ORDERS
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": paging.MAX_PAGE_LIMIT}
    pages = 0
    while True:
        response = await busy.client.get(ORDERS, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        assert page["status"] == "all" and page["total"] >= len(everything)
        assert 1 <= len(page["orders"]) <= paging.MAX_PAGE_LIMIT
        seen += [order["order_id"] for order in page["orders"]]
        if pages == 1:
            # Placed while the client pages: newer than every cursor, so on no later page.
            placed = await busy.client.post(
                ORDERS, json=RESTING_BUY, headers={"Idempotency-Key": f"busy-{uuid.uuid4()}"}
            )
            assert placed.status_code == 201, placed.text
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
        assert pages <= len(everything) // paging.MAX_PAGE_LIMIT + 1, "paging does not end"

    assert seen == everything
    assert pages == -(-len(everything) // paging.MAX_PAGE_LIMIT)
    assert placed.json()["order_id"] not in seen


async def test_symbol_view_shows_a_page_of_its_orders(
    busy: RunningGateway, busy_orders: BackendProcess
) -> None:
    in_symbol = await backend_orders(busy_orders, symbol=SEEDED_SYMBOL, limit="1")

    response = await busy.client.get(f"/web/v1/symbols/{SEEDED_SYMBOL}")

    assert response.status_code == 200, response.text
    view = response.json()
    assert len(view["orders"]) == paging.SECTION_LIMIT
    assert {order["symbol"] for order in view["orders"]} == {SEEDED_SYMBOL}
    assert view["orders_total"] == in_symbol["total"] >= SEEDED_OPEN_ORDERS
    assert backend_query(busy_orders) == {
        "status": ["all"],
        "limit": [str(paging.SECTION_LIMIT)],
        "symbol": [SEEDED_SYMBOL],
    }
    link = view["orders_next"]
    assert query_of(link)["symbol"] == [SEEDED_SYMBOL]

    following = await busy.client.get(link)

    assert following.status_code == 200, following.text
    rest = following.json()
    assert rest["symbol"] == SEEDED_SYMBOL and rest["total"] == view["orders_total"]
    assert {order["symbol"] for order in rest["orders"]} == {SEEDED_SYMBOL}
    assert not {o["order_id"] for o in rest["orders"]} & {o["order_id"] for o in view["orders"]}


async def test_a_cursor_the_gateway_did_not_hand_out_is_a_422(
    busy: RunningGateway, busy_orders: BackendProcess
) -> None:
    # Well formed, but naming no order of this account: only the orders service can tell.
    forged = paging.encode_cursor("ord_000000000000")
    problem = assert_problem(await busy.client.get(ORDERS, params={"cursor": forged}), 422)
    assert field_errors(problem) == {"query.cursor"}

    busy_orders.reset_stats()
    for malformed in ("!!!", paging.encode_cursor("not an id!"), forged + "=="):
        response = await busy.client.get(ORDERS, params={"cursor": malformed})
        assert field_errors(assert_problem(response, 422)) == {"query.cursor"}
    assert f"GET {BACKEND_ORDERS}" not in busy_orders.stats()["requests"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "query.limit"),
        ({"limit": "101"}, "query.limit"),
        ({"symbol": "aapl"}, "query.symbol"),
    ],
)
async def test_bad_list_parameters_are_refused(
    busy: RunningGateway, params: dict[str, str], field: str
) -> None:
    response = await busy.client.get(ORDERS, params=params)

    assert field_errors(assert_problem(response, 422)) == {field}


async def test_every_list_section_is_capped_with_its_total_and_link(
    alice: RunningGateway, control: PlatformControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo account holds fewer than 20 of everything; a cap of 1 shows every section's.
    monkeypatch.setattr(compose, "SECTION_LIMIT", 1)
    holdings = (await control.get("portfolio", "/accounts/ACC-1001/positions"))["positions"]
    watchlists = (await control.get("portfolio", "/accounts/ACC-1001/watchlists"))["watchlists"]
    bots = (await control.get("bots", "/accounts/ACC-1001/bots"))["bots"]
    assert len(holdings) > 1 and len(watchlists) > 1 and len(bots) > 1

    response = await alice.client.get("/web/v1/dashboard")

    assert response.status_code == 200, response.text
    view = response.json()
    assert view["degraded"] == []
    first_symbol = min(h["symbol"] for h in holdings)
    assert [p["symbol"] for p in view["positions"]] == [first_symbol]
    assert view["positions_total"] == len(holdings)
    # Valued over every holding, not only the one shown.
    assert view["account"]["equity_basis"] == "live"
    [watchlist] = view["watchlists"]
    assert view["watchlists_total"] == len(watchlists)
    assert [item["symbol"] for item in watchlist["items"]] == watchlists[0]["symbols"][:1]
    assert watchlist["items_total"] == len(watchlists[0]["symbols"])
    assert len(view["bots"]["bots"]) == 1 and view["bots_total"] == len(bots)
    assert view["bots"]["running"] == sum(b["status"] == "running" for b in bots)
    assert view["bots_next"] == "/web/v1/bots"
    assert len((await alice.client.get(view["bots_next"])).json()["bots"]) == len(bots)

    rest = await alice.client.get(view["positions_next"])

    assert rest.status_code == 200, rest.text
    page = rest.json()
    assert page["total"] == len(holdings) and page["next_cursor"] is None
    shown = [p["symbol"] for p in view["positions"] + page["items"]]
    assert shown == sorted(h["symbol"] for h in holdings)
    assert all(p["price"] is not None for p in page["items"])


async def test_sparklines_only_for_the_symbols_shown(
    alice: RunningGateway, control: PlatformControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compose, "SECTION_LIMIT", 1)
    await control.reset_stats("market-data")

    response = await alice.client.get("/web/v1/dashboard")

    assert response.status_code == 200, response.text
    shown = [item["symbol"] for item in response.json()["watchlists"][0]["items"]]
    asked = []
    for url in control.platform.urls["market-data"]:
        queries = (await control.client.get(f"{url}/__stats")).json()["last_query"]
        if "GET /sparklines" in queries:
            asked += parse_qs(queries["GET /sparklines"])["symbols"]
    assert asked == [",".join(shown)]


async def test_web_positions_page_through_every_holding(
    alice: RunningGateway, control: PlatformControl
) -> None:
    held = (await control.get("portfolio", "/accounts/ACC-1001/positions"))["positions"]
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 3}
    for _ in range(len(held)):
        response = await alice.client.get("/web/v1/positions", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["total"] == len(held) and 1 <= len(page["items"]) <= 3
        seen += [position["symbol"] for position in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]

    assert seen == sorted(p["symbol"] for p in held)
