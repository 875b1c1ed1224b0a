"""Portfolio service: account balances, positions and watchlists of the demo accounts."""

from fastapi import FastAPI
from pydantic import BaseModel

from backends.catalog import DemoAccount
from backends.clock import current_step, day_start
from backends.price_walk import PriceWalk
from backends.service_app import account_or_404, create_service_app

SERVICE_NAME = "portfolio"


class AccountSummary(BaseModel):
    """Balances of one account; equity is left to the caller, who has live quotes."""

    account_id: str
    currency: str
    cash: float
    buying_power: float
    prev_close_equity: float


class Position(BaseModel):
    symbol: str
    # Whole shares stay integers in JSON; fractional shares would be floats.
    quantity: int | float
    average_cost: float


class PositionList(BaseModel):
    positions: list[Position]


class WatchlistView(BaseModel):
    watchlist_id: str
    name: str
    symbols: list[str]


class WatchlistList(BaseModel):
    watchlists: list[WatchlistView]


def prev_close_equity(account: DemoAccount, walk: PriceWalk, step: int) -> float:
    """Cash plus holdings valued at yesterday's close, the baseline for today's P&L."""
    last_close = day_start(step) - 1
    holdings_value = sum(
        holding.quantity * round(walk.price(holding.symbol, last_close), 2)
        for holding in account.holdings
    )
    return round(account.cash + holdings_value, 2)


def create_app(*, instance: str, seed: int) -> FastAPI:
    """The portfolio ASGI app; ``seed`` must match market-data's so closing prices agree."""
    app = create_service_app(SERVICE_NAME, instance)
    walk = PriceWalk(seed)

    @app.get("/accounts/{account_id}", response_model=AccountSummary)
    async def get_account(account_id: str) -> AccountSummary:
        """Cash, buying power and the previous close's equity of one account."""
        account = account_or_404(account_id)
        return AccountSummary(
            account_id=account.account_id,
            currency=account.currency,
            cash=account.cash,
            buying_power=round(account.buying_power, 2),
            prev_close_equity=prev_close_equity(account, walk, current_step()),
        )

    @app.get("/accounts/{account_id}/positions", response_model=PositionList)
    async def get_positions(account_id: str) -> PositionList:
        """Open positions of one account."""
        account = account_or_404(account_id)
        return PositionList(
            positions=[
                Position(symbol=h.symbol, quantity=h.quantity, average_cost=h.average_cost)
                for h in account.holdings
            ]
        )

    @app.get("/accounts/{account_id}/watchlists", response_model=WatchlistList)
    async def get_watchlists(account_id: str) -> WatchlistList:
        """Watchlists of one account."""
        account = account_or_404(account_id)
        return WatchlistList(
            watchlists=[
                WatchlistView(watchlist_id=w.watchlist_id, name=w.name, symbols=list(w.symbols))
                for w in account.watchlists
            ]
        )

    return app
