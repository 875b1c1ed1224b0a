"""The web frontend's response models, version 2: the views that changed since version 1.

The dashboard groups its holdings by sector and adds the sector allocation; the orders list
is a page like every other list (`items`, `total`, `next_cursor`, `next`). Everything else,
and every section these views share with version 1, keeps version 1's models
(`app.frontends.web.v1.views`).
"""

from copy import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from app.frontends.paging import SECTION_LIMIT
from app.frontends.web.v1 import views as v1
from app.frontends.web.v1.views import (
    AccountSummaryView,
    ArticleView,
    BotsView,
    OrderStatusFilter,
    OrderView,
    PositionView,
    WatchlistView,
)

UNCLASSIFIED = "Unclassified"
# Version 1's dashboard sections, and the holdings' sectors.
DashboardSection = Literal[
    "watchlists", "quotes", "sparklines", "orders", "bots", "news", "sectors"
]


def _as_in_v1(name: str, *, of: type[BaseModel] = v1.DashboardView) -> Any:
    """A field of a version 1 view (the dashboard by default), unchanged: its type is
    restated, its description is version 1's."""
    return copy(of.model_fields[name])


_SECTOR_EXAMPLE: JsonDict = {
    "sector": "Technology",
    "market_value": 28_690.5,
    "weight_pct": 100.0,
    "positions_total": 1,
    "positions": [v1._POSITION_EXAMPLE],
}


class SectorView(BaseModel):
    """The holdings of one sector: their share of the portfolio, and those shown."""

    model_config = ConfigDict(json_schema_extra={"examples": [_SECTOR_EXAMPLE]})

    sector: str = Field(
        description=(
            f"Industry sector from the market-data catalogue; `{UNCLASSIFIED}` for holdings "
            "whose sector is unknown (or could not be fetched: `sectors` in `degraded`)"
        )
    )
    market_value: float = Field(
        description=(
            "What the sector's holdings are worth, valued as the account's equity is (live "
            "price, or cost basis without one)"
        )
    )
    weight_pct: float = Field(description="`market_value` as a percentage of `holdings_value`")
    positions_total: int = Field(description="How many holdings the sector has")
    positions: list[PositionView] = Field(
        description=(
            f"The sector's holdings among the dashboard's first {SECTION_LIMIT} (by symbol), "
            "in symbol order; the rest is at `positions_next`"
        )
    )


_DASHBOARD_EXAMPLE: JsonDict = {
    **{name: value for name, value in v1._DASHBOARD_EXAMPLE.items() if name != "positions"},
    "holdings_value": 28_690.5,
    "sectors": [_SECTOR_EXAMPLE],
    "open_orders_next": "/web/v2/orders?status=open&cursor=b3JkXzNmOWExYzJiN2Q0ZQ",
}

_REST = "null when every one is shown"


class DashboardView(BaseModel):
    """Everything the dashboard's first screen shows, holdings grouped by sector."""

    model_config = ConfigDict(json_schema_extra={"examples": [_DASHBOARD_EXAMPLE]})

    account: AccountSummaryView = _as_in_v1("account")
    holdings_value: float = Field(
        description=(
            "Every holding's value (the account's equity minus its cash); the sectors' "
            "`market_value`s add up to it"
        )
    )
    sectors: list[SectorView] = Field(
        description="The sector allocation over every holding, largest first"
    )
    positions_total: int = _as_in_v1("positions_total")
    positions_next: str | None = Field(
        description=f"`/web/v2/positions?cursor=...`: the holdings after those shown; {_REST}"
    )
    watchlists: list[WatchlistView] | None = _as_in_v1("watchlists")
    watchlists_total: int | None = _as_in_v1("watchlists_total")
    open_orders: list[OrderView] | None = _as_in_v1("open_orders")
    open_orders_total: int | None = _as_in_v1("open_orders_total")
    open_orders_next: str | None = Field(
        description=(
            "`/web/v2/orders?status=open&cursor=...`: the working orders after those shown; "
            f"{_REST}"
        )
    )
    bots: BotsView | None = _as_in_v1("bots")
    bots_total: int | None = _as_in_v1("bots_total")
    bots_next: str | None = Field(description=f"`/web/v2/bots`: every bot; {_REST}")
    news: list[ArticleView] | None = _as_in_v1("news")
    degraded: list[DashboardSection] = Field(
        description=(
            "Names of the optional sections that could not be fetched (as in version 1, and "
            "`sectors` when the holdings' sectors could not be looked up); empty when "
            "everything is present"
        )
    )


_ORDERS_PAGE_EXAMPLE: JsonDict = {
    "status": "open",
    "symbol": None,
    "items": [v1._ORDER_EXAMPLE],
    "total": 10_777,
    "next_cursor": "b3JkXzNmOWExYzJiN2Q0ZQ",
    "next": "/web/v2/orders?status=open&limit=20&cursor=b3JkXzNmOWExYzJiN2Q0ZQ",
}


class OrdersPage(BaseModel):
    """A page of the user's orders, newest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ORDERS_PAGE_EXAMPLE]})

    status: OrderStatusFilter = _as_in_v1("status", of=v1.OrdersView)
    symbol: str | None = _as_in_v1("symbol", of=v1.OrdersView)
    items: list[OrderView] = _as_in_v1("orders", of=v1.OrdersView)
    total: int = _as_in_v1("total", of=v1.OrdersView)
    next_cursor: str | None = _as_in_v1("next_cursor", of=v1.OrdersView)
    next: str | None = Field(
        description="The next page, with the same filters and limit; null on the last page"
    )
