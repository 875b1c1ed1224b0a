"""The web frontend's endpoints, version 2.

Two views changed: the dashboard (holdings grouped by sector, with the sector allocation)
and the orders list (a page with a link to the next one). Every other route is version 1's,
carried over with its handler (`app.frontends.versions.carry_over`), so version 2 is a whole
API and each version 1 route has its successor here at the same path.
"""

from fastapi import Response

from app.deps import AccountIdDep, OrdersDep, require_user
from app.errors import problem_responses
from app.frontends.formats import ListFormatDep, csv_responses
from app.frontends.routing import FrontendRouter
from app.frontends.versions import carry_over
from app.frontends.web.v1 import router as v1
from app.frontends.web.v1.router import OrderListingDep, WebServicesDep
from app.frontends.web.v1.views import OrderView
from app.frontends.web.v2.compose import compose_dashboard, orders_page_with_link
from app.frontends.web.v2.views import DashboardView, OrdersPage

# Signed-in users only; reads need "read", writes also the scope of what they change.
router = FrontendRouter(
    prefix="/web/v2", dependencies=[require_user("read")], responses=problem_responses(401, 403)
)

# What version 2 defines itself; placing an order (POST /orders) stays version 1's.
CHANGED = {("GET", "/dashboard"), ("GET", "/orders")}


@router.get(
    "/dashboard",
    response_model=DashboardView,
    responses=problem_responses(502, 503, 504),
)
async def get_dashboard(services: WebServicesDep, account_id: AccountIdDep) -> DashboardView:
    """Account summary, holdings by sector with the allocation, watchlists, orders, bots, news."""
    return await compose_dashboard(services, account_id=account_id)


@router.get(
    "/orders",
    response_model=OrdersPage,
    responses={**csv_responses(OrderView), **problem_responses(406, 422, 502, 503, 504)},
)
async def list_orders(
    orders: OrdersDep,
    account_id: AccountIdDep,
    listing: OrderListingDep,
    answer_format: ListFormatDep,
) -> OrdersPage | Response:
    """The user's orders, newest first, filtered by status and symbol, a page at a time."""
    page = orders_page_with_link(await listing.page(orders, account_id=account_id), listing.limit)
    if answer_format.csv:
        return answer_format.table(
            page.items, OrderView, next_cursor=page.next_cursor, total=page.total
        )
    return page


carry_over(v1.router, router, changed=CHANGED)
