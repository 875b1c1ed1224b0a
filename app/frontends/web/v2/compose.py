"""How the web views of version 2 are assembled: on version 1's composition, not a copy of it.

The dashboard is version 1's (`assemble_dashboard`: the same upstream calls, sections and
valuation) with its holdings grouped by sector; the sectors come from the market-data
catalogue in one more call, an optional section. The orders page is version 1's page
(`orders_page`) in version 2's page shape, with the link to the next page.
"""

from collections import defaultdict
from collections.abc import Sequence

from app.frontends.paging import link
from app.frontends.sections import Sections, settle_optional
from app.frontends.valuation import cents, percent
from app.frontends.web.v1.compose import QUOTE_BATCH, WebServices, assemble_dashboard
from app.frontends.web.v1.views import OrdersView, PositionView
from app.frontends.web.v2.views import UNCLASSIFIED, DashboardView, OrdersPage, SectorView
from app.upstreams.market_data import MarketDataClient

V1_PREFIX = "/web/v1/"
V2_PREFIX = "/web/v2/"
ORDERS_LIST = "/web/v2/orders"


def in_v2(path: str | None) -> str | None:
    """A link version 1's composition made, pointing at version 2's list instead."""
    if path is None or not path.startswith(V1_PREFIX):
        return path
    return V2_PREFIX + path.removeprefix(V1_PREFIX)


async def sectors_of(market_data: MarketDataClient, symbols: Sequence[str]) -> dict[str, str]:
    """Each listed symbol's sector, in batches the catalogue accepts."""
    sectors: dict[str, str] = {}
    for start in range(0, len(symbols), QUOTE_BATCH):
        found = await market_data.symbol_info(symbols[start : start + QUOTE_BATCH])
        sectors.update((info.symbol, info.sector) for info in found)
    return sectors


def _holding_value(position: PositionView) -> float:
    """A holding as the account summary counts it: live value, or cost basis without a price."""
    return position.market_value if position.market_value is not None else position.cost_basis


def sector_views(
    positions: Sequence[PositionView], *, shown: Sequence[PositionView], sectors: dict[str, str]
) -> tuple[float, list[SectorView]]:
    """The holdings' total and their allocation by sector, largest first; each sector lists
    its holdings among `shown`."""
    members: dict[str, list[PositionView]] = defaultdict(list)
    for position in positions:
        members[sectors.get(position.symbol, UNCLASSIFIED)].append(position)
    values = {sector: cents(sum(map(_holding_value, held))) for sector, held in members.items()}
    total = cents(sum(values.values()))
    shown_symbols = {position.symbol for position in shown}
    views = [
        SectorView(
            sector=sector,
            market_value=values[sector],
            weight_pct=percent(values[sector], total) or 0.0,
            positions_total=len(held),
            positions=[p for p in held if p.symbol in shown_symbols],
        )
        for sector, held in members.items()
    ]
    views.sort(key=lambda view: (-view.market_value, view.sector))
    return total, views


async def compose_dashboard(services: WebServices, *, account_id: str) -> DashboardView:
    """Version 1's dashboard, its holdings grouped by sector with the sector allocation."""
    composed = await assemble_dashboard(services, account_id=account_id)
    v1 = composed.view
    sections = Sections()
    symbols = [position.symbol for position in composed.positions]
    found = await settle_optional(sectors_of(services.market_data, symbols))
    sectors = sections.optional("sectors", found) or {}
    holdings_value, allocation = sector_views(
        composed.positions, shown=v1.positions, sectors=sectors
    )
    links = {
        "positions_next": in_v2(v1.positions_next),
        "open_orders_next": in_v2(v1.open_orders_next),
        "bots_next": in_v2(v1.bots_next),
    }
    # Every other section is version 1's as it is.
    kept = DashboardView.model_fields.keys() & type(v1).model_fields.keys() - {*links, "degraded"}
    return DashboardView(
        **{name: getattr(v1, name) for name in kept},
        **links,
        holdings_value=holdings_value,
        sectors=allocation,
        degraded=[*v1.degraded, *sections.degraded],
    )


def orders_page_with_link(page: OrdersView, limit: int) -> OrdersPage:
    """Version 1's page of orders (of `limit` at most), with the link to the next one."""
    next_page = None
    if page.next_cursor is not None:
        next_page = link(
            ORDERS_LIST,
            status=page.status.value,
            symbol=page.symbol,
            limit=str(limit),
            cursor=page.next_cursor,
        )
    return OrdersPage(
        status=page.status,
        symbol=page.symbol,
        items=page.orders,
        total=page.total,
        next_cursor=page.next_cursor,
        next=next_page,
    )
