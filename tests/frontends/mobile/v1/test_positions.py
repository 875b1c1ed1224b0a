"""GET /mobile/v1/positions: cursor pagination over priced positions."""

import base64
from decimal import ROUND_HALF_UP, Decimal

import pytest

from tests.fixtures.gateway import RunningGateway
from tests.fixtures.platform_control import PlatformControl
from tests.fixtures.problems import assert_problem, field_errors

POSITIONS = "/mobile/v1/positions"
ACCOUNT = "ACC-1001"


def _cents(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


async def test_pages_walk_every_position_once(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    held = (await backends.get("portfolio", f"/accounts/{ACCOUNT}/positions"))["positions"]
    seen: list[str] = []
    pages = 0
    params: dict[str, str | int] = {"limit": 3}
    while True:
        response = await gateway.client.get(POSITIONS, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        assert 1 <= len(page["items"]) <= 3
        seen += [item["symbol"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
        assert pages < 10, "pagination does not end"

    assert seen == sorted(p["symbol"] for p in held)
    assert pages == -(-len(held) // 3)


async def test_rows_are_priced(gateway: RunningGateway) -> None:
    response = await gateway.client.get(POSITIONS, params={"limit": 100})

    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next_cursor"] is None
    assert page["degraded"] == []
    for row in page["items"]:
        assert row["price"] > 0
        # Market value minus cost basis, each rounded to cents (`app.frontends.valuation`).
        quantity, price, cost = (
            Decimal(str(row[field])) for field in ("quantity", "price", "average_cost")
        )
        expected = _cents(quantity * price) - _cents(quantity * cost)
        assert Decimal(str(row["unrealized_pnl"])) == expected


async def test_failing_quotes_leave_unpriced_rows(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    await backends.fault("market-data", error_rate=1.0, error_status=503)

    response = await gateway.client.get(POSITIONS, params={"limit": 2})

    assert response.status_code == 200, response.text
    page = response.json()
    assert page["degraded"] == ["quotes"]
    assert len(page["items"]) == 2
    assert all(row["price"] is None and row["unrealized_pnl"] is None for row in page["items"])
    assert page["next_cursor"] is not None


@pytest.mark.parametrize("limit", ["0", "101", "-1", "many"])
async def test_limit_out_of_bounds_is_refused(gateway: RunningGateway, limit: str) -> None:
    response = await gateway.client.get(POSITIONS, params={"limit": limit})

    assert field_errors(assert_problem(response, 422)) == {"query.limit"}


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "QUFQTA==",  # padded: not what the gateway hands out
        base64.urlsafe_b64encode(b"not a symbol").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "",
    ],
)
async def test_malformed_cursor_is_refused(
    gateway: RunningGateway, backends: PlatformControl, cursor: str
) -> None:
    await backends.reset_stats("portfolio")

    response = await gateway.client.get(POSITIONS, params={"cursor": cursor})

    assert field_errors(assert_problem(response, 422)) == {"query.cursor"}
    assert await backends.requests("portfolio") == {}
