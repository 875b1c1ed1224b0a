"""Content negotiation on the BFF list endpoints: JSON by default, CSV for `Accept: text/csv`
(the same rows as the JSON answer), 406 problem+json for what neither satisfies."""

import csv
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from app.frontends.formats import (
    ListFormat,
    NotAcceptable,
    encode_csv,
    negotiate,
)
from backends.launcher import Platform
from tests.fixtures.consumers import ADMIN, create_partner
from tests.fixtures.gateway import RunningGateway
from tests.fixtures.identity import bearer_headers
from tests.fixtures.platform_control import PlatformControl, platform_control

CSV = {"Accept": "text/csv"}


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, ListFormat.json),
        ("", ListFormat.json),
        ("*/*", ListFormat.json),
        ("application/json", ListFormat.json),
        ("application/*", ListFormat.json),
        ("text/csv", ListFormat.csv),
        ("TEXT/CSV; charset=utf-8", ListFormat.csv),
        ("text/*", ListFormat.csv),
        ("application/json;q=0.5, text/csv", ListFormat.csv),
        ("text/csv;q=0.2, application/json", ListFormat.json),
        ("text/csv, application/json", ListFormat.json),
        ("text/html,application/xhtml+xml,*/*;q=0.8", ListFormat.json),
        ("*/*;q=0.1, text/csv;q=0.5", ListFormat.csv),
        ("application/json;q=0, */*", ListFormat.csv),
    ],
)
def test_negotiation_follows_the_weights(accept: str | None, chosen: ListFormat) -> None:
    assert negotiate(accept) is chosen


@pytest.mark.parametrize(
    "accept",
    ["application/xml", "text/csv;q=0", "text/html, image/png", "application/json;q=0"],
)
def test_nothing_acceptable_is_a_406_naming_what_is_served(accept: str) -> None:
    with pytest.raises(NotAcceptable) as refused:
        negotiate(accept)
    assert refused.value.status == 406
    assert refused.value.extra == {"available": ["application/json", "text/csv"]}


def test_a_route_offering_only_csv_refuses_json() -> None:
    assert negotiate(None, (ListFormat.csv,)) is ListFormat.csv
    assert negotiate("*/*", (ListFormat.csv,)) is ListFormat.csv
    with pytest.raises(NotAcceptable):
        negotiate("application/json", (ListFormat.csv,))


class _Row(BaseModel):
    symbol: str
    price: float | None
    open: bool
    tags: list[str]


def test_csv_cells_say_what_the_json_says_and_never_run_as_formulas() -> None:
    body = encode_csv(
        [
            _Row(symbol="AAPL", price=228.63, open=True, tags=["a", "b"]),
            _Row(symbol='=HYPERLINK("x")', price=None, open=False, tags=[]),
            {"symbol": "-1+1", "price": -1.5, "open": True, "tags": ["x,y"]},
        ],
        ["symbol", "price", "open", "tags"],
    )
    assert body.count(b"\r\n") == 4 and body.endswith(b"\r\n")
    assert list(csv.reader(io.StringIO(body.decode(), newline=""))) == [
        ["symbol", "price", "open", "tags"],
        ["AAPL", "228.63", "true", '["a","b"]'],
        ['\'=HYPERLINK("x")', "", "false", "[]"],
        ["'-1+1", "-1.5", "true", '["x,y"]'],
    ]
    # An empty list still names its columns.
    assert encode_csv([], ["symbol", "price"]) == b"symbol,price\r\n"


def decoded(text: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The CSV's header and rows, each cell back to its JSON value."""

    def value(cell: str) -> Any:
        if cell == "":
            return None
        try:
            return json.loads(cell)
        except ValueError:
            return cell

    reader = csv.reader(io.StringIO(text, newline=""))
    header, *rows = list(reader)
    return header, [dict(zip(header, map(value, row), strict=True)) for row in rows]


Fetch = Callable[[dict[str, str]], Awaitable[httpx.Response]]


async def same_moment(fetch: Fetch) -> tuple[httpx.Response, httpx.Response]:
    """A JSON and a CSV answer from the same market second (prices move every second): the
    CSV counts when the JSON answers before and after it are the same."""
    for _ in range(10):
        before = await fetch({})
        as_csv = await fetch(CSV)
        after = await fetch({})
        assert before.status_code == as_csv.status_code == 200, (before.text, as_csv.text)
        if before.json() == after.json():
            return before, as_csv
    raise AssertionError("prices moved between every JSON and CSV answer")


@pytest.fixture
async def control(platform: Platform) -> AsyncIterator[PlatformControl]:
    async with platform_control(platform) as steering:
        yield steering


@pytest.fixture
async def alice(gateway: RunningGateway, platform: Platform) -> dict[str, str]:
    return await bearer_headers(platform, username="alice")


@pytest.fixture
async def partner(gateway: RunningGateway) -> dict[str, str]:
    return (await create_partner(gateway.client)).headers


# (path, params, who asks, the JSON answer's list)
ENDPOINTS = [
    ("/web/v1/positions", {}, "alice", "items"),
    ("/web/v1/orders", {"limit": "50"}, "alice", "orders"),
    ("/web/v2/orders", {"limit": "50"}, "alice", "items"),
    ("/web/v2/positions", {}, "alice", "items"),
    ("/mobile/v1/positions", {}, "alice", "items"),
    ("/mobile/v1/quotes", {"symbols": "AAPL,MSFT,NVDA"}, "alice", "quotes"),
    ("/partner/v1/quotes", {"symbols": "AAPL,MSFT,NVDA"}, "partner", "quotes"),
    ("/partner/v1/candles/AAPL", {"interval": "1h", "range": "5d"}, "partner", "candles"),
]


async def _get(
    client: httpx.AsyncClient,
    path: str,
    accept: dict[str, str],
    *,
    params: dict[str, str],
    credentials: dict[str, str],
) -> httpx.Response:
    # From the origin, not the response cache: the CSV of a cached list is made from the
    # origin's answer, and the comparison needs both of the same moment.
    headers = {**credentials, **accept, "Cache-Control": "no-cache"}
    return await client.get(path, params=params, headers=headers)


async def test_each_list_as_csv_holds_the_rows_of_its_json_answer(
    gateway: RunningGateway, alice: dict[str, str], partner: dict[str, str]
) -> None:
    for path, params, who, key in ENDPOINTS:
        credentials = alice if who == "alice" else partner
        as_json, as_csv = await same_moment(
            partial(_get, gateway.client, path, params=params, credentials=credentials)
        )
        assert as_json.headers["content-type"].startswith("application/json"), path
        assert "Accept" in as_json.headers.get_list("vary", split_commas=True), path
        assert as_csv.headers["content-type"] == "text/csv; charset=utf-8; header=present", path
        assert "Accept" in as_csv.headers.get_list("vary", split_commas=True), path
        rows = as_json.json()[key]
        assert rows, f"{path} answered an empty list; the comparison would prove nothing"
        header, csv_rows = decoded(as_csv.text)
        assert header == list(rows[0]), path
        assert csv_rows == rows, path


def next_link(response: httpx.Response) -> str | None:
    """The target of the `rel="next"` link among the answer's `Link` values."""
    for value in response.headers.get_list("link", split_commas=True):
        target, _, parameters = value.partition(";")
        if parameters.strip() == 'rel="next"':
            return target.strip().removeprefix("<").removesuffix(">")
    return None


async def test_a_paged_csv_links_its_next_page(
    gateway: RunningGateway, alice: dict[str, str]
) -> None:
    path, one = "/mobile/v1/positions", {"limit": "1"}
    first = await gateway.client.get(path, params=one, headers={**alice, **CSV})
    assert first.status_code == 200, first.text
    page = (await gateway.client.get(path, params=one, headers=alice)).json()
    assert page["next_cursor"] is not None
    target = next_link(first)
    assert target is not None and f"cursor={page['next_cursor']}" in target
    second = await gateway.client.get(target, headers={**alice, **CSV})
    assert second.status_code == 200
    following = await gateway.client.get(
        path, params={**one, "cursor": page["next_cursor"]}, headers=alice
    )
    assert [row["symbol"] for row in decoded(second.text)[1]] == [
        row["symbol"] for row in following.json()["items"]
    ]

    orders = await gateway.client.get(
        "/web/v1/orders", params={"limit": "2"}, headers={**alice, **CSV}
    )
    listed = (
        await gateway.client.get("/web/v1/orders", params={"limit": "2"}, headers=alice)
    ).json()
    assert orders.headers["x-total-count"] == str(listed["total"])
    # A superseded version's successor link joins the page's own links, never replaces them.
    assert listed["total"] > 2
    assert next_link(orders) is not None
    assert 'rel="successor-version"' in orders.headers["link"]


async def test_an_unproducible_accept_is_a_406_problem_and_calls_nothing(
    gateway: RunningGateway,
    alice: dict[str, str],
    partner: dict[str, str],
    control: PlatformControl,
) -> None:
    await control.reset_stats("market-data", "portfolio", "orders")
    for path, params, who, _ in ENDPOINTS:
        credentials = alice if who == "alice" else partner
        response = await gateway.client.get(
            path, params=params, headers={**credentials, "Accept": "application/xml"}
        )
        assert response.status_code == 406, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == 406
        assert problem["available"] == ["application/json", "text/csv"]
        assert "application/xml" in problem["detail"]
    for service in ("market-data", "portfolio", "orders"):
        assert await control.requests(service) == {}, service


async def test_a_cached_list_answers_csv_from_the_entry_json_clients_share(
    gateway: RunningGateway,
    alice: dict[str, str],
    partner: dict[str, str],
    control: PlatformControl,
) -> None:
    await control.reset_stats("market-data")
    for path, params, credentials in (
        ("/partner/v1/candles/MSFT", {"interval": "1h", "range": "5d"}, partner),
        ("/partner/v1/quotes", {"symbols": "AAPL,MSFT"}, partner),
        ("/mobile/v1/quotes", {"symbols": "NVDA"}, alice),
    ):
        # Compressed for this client, and with the validator it holds: the CSV still reads it.
        as_json = await gateway.client.get(
            path, params=params, headers={**credentials, "Accept-Encoding": "gzip"}
        )
        assert as_json.status_code == 200
        key = "candles" if "candles" in path else "quotes"
        etag = as_json.headers.get("etag")
        conditional = {"If-None-Match": etag} if etag else {}
        as_csv = await gateway.client.get(
            path,
            params=params,
            headers={**credentials, **CSV, **conditional, "Accept-Encoding": "gzip, br, zstd"},
        )
        assert as_csv.status_code == 200, path
        assert decoded(as_csv.text)[1] == as_json.json()[key], path
    # One call per list: the CSV came from the entry the JSON answer stored.
    assert await control.requests("market-data") == {
        "GET /candles/MSFT": 1,
        "GET /quotes": 2,
    }


async def test_the_access_rule_comes_before_the_format(gateway: RunningGateway) -> None:
    response = await gateway.client.get(
        "/partner/v1/quotes", params={"symbols": "AAPL"}, headers={"Accept": "application/xml"}
    )
    assert response.status_code == 401
    response = await gateway.client.get("/admin/v1/plans", headers={**ADMIN, **CSV})
    # Not a list endpoint of a frontend: JSON whatever is asked.
    assert response.headers["content-type"].startswith("application/json")
