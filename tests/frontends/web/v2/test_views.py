"""/web/v2: the dashboard by sector, built on v1's; the orders list paged by cursor by default."""

import pytest

from backends.catalog import INSTRUMENTS
from tests.fixtures.gateway import RunningGateway
from tests.fixtures.platform_control import PlatformControl


async def test_dashboard_groups_v1_positions_by_sector(alice: RunningGateway) -> None:
    v1 = (await alice.client.get("/web/v1/dashboard")).json()
    response = await alice.client.get("/web/v2/dashboard")

    assert response.status_code == 200, response.text
    view = response.json()
    assert view["degraded"] == []
    sectors = view["sectors"]
    # Grouped, the positions are v1's, each under its catalogue sector.
    grouped = [p for s in sectors for p in s["positions"]]
    assert sorted(p["symbol"] for p in grouped) == [p["symbol"] for p in v1["positions"]]
    for sector in sectors:
        for position in sector["positions"]:
            assert INSTRUMENTS[position["symbol"]].sector == sector["sector"]
    assert len({s["sector"] for s in sectors}) == len(sectors) >= 2
    # The allocation adds up: to the holdings' value, which is equity minus cash, and to 100%.
    assert sum(s["market_value"] for s in sectors) == pytest.approx(
        view["holdings_value"], abs=0.01
    )
    account = view["account"]
    assert view["holdings_value"] == pytest.approx(account["equity"] - account["cash"], abs=0.01)
    assert sum(s["weight_pct"] for s in sectors) == pytest.approx(100, abs=0.01 * len(sectors))
    for sector in sectors:
        values = [p["market_value"] for p in sector["positions"]]
        assert sector["market_value"] == pytest.approx(sum(values), abs=0.01)
        assert sector["positions_total"] == len(sector["positions"])
    assert [s["market_value"] for s in sectors] == sorted(
        (s["market_value"] for s in sectors), reverse=True
    )
    # What did not change is v1's, links pointing at v2's lists.
    assert view["positions_total"] == v1["positions_total"]
    assert view["watchlists_total"] == v1["watchlists_total"]
    for link in ("open_orders_next", "positions_next", "bots_next"):
        expected = v1[link] and v1[link].replace("/web/v1/", "/web/v2/", 1)
        assert view[link] == expected
    assert "deprecation" not in response.headers


async def test_sectors_unavailable_degrade_to_one_group(
    alice: RunningGateway, control: PlatformControl
) -> None:
    await control.fault("market-data", error_rate=1.0, error_status=503, paths=["/symbols"])

    view = (await alice.client.get("/web/v2/dashboard")).json()

    assert view["degraded"] == ["sectors"]
    assert [s["sector"] for s in view["sectors"]] == ["Unclassified"]
    assert view["sectors"][0]["weight_pct"] == 100.0


async def test_orders_page_by_cursor_by_default(alice: RunningGateway) -> None:
    first = await alice.client.get("/web/v2/orders", params={"limit": 2})

    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["items"]) == 2 and page["total"] > 2
    assert page["next"] == f"/web/v2/orders?status=all&limit=2&cursor={page['next_cursor']}"
    second = (await alice.client.get(page["next"])).json()
    assert second["total"] == page["total"]
    first_ids = {o["order_id"] for o in page["items"]}
    assert first_ids.isdisjoint(o["order_id"] for o in second["items"])
    # v1's list, the same orders in v1's shape.
    v1 = (await alice.client.get("/web/v1/orders", params={"limit": 2})).json()
    assert [o["order_id"] for o in v1["orders"]] == [o["order_id"] for o in page["items"]]
    assert v1["next_cursor"] == page["next_cursor"]

    default = (await alice.client.get("/web/v2/orders")).json()
    assert len(default["items"]) == min(20, default["total"])
    assert (default["next_cursor"] is None) == (default["total"] <= 20)
