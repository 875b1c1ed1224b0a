"""Typed client of the portfolio service."""

from pydantic import BaseModel

from app.upstreams.caller import UpstreamCaller

SERVICE = "portfolio"


class Account(BaseModel):
    account_id: str
    currency: str
    cash: float
    buying_power: float
    prev_close_equity: float


class Position(BaseModel):
    symbol: str
    quantity: float
    average_cost: float


class Watchlist(BaseModel):
    watchlist_id: str
    name: str
    symbols: list[str]


class _Positions(BaseModel):
    positions: list[Position]


class _Watchlists(BaseModel):
    watchlists: list[Watchlist]


class PortfolioClient:
    def __init__(self, caller: UpstreamCaller) -> None:
        self._caller = caller

    async def account(self, account_id: str) -> Account:
        return await self._caller.fetch(SERVICE, "GET", f"/accounts/{account_id}", Account)

    async def positions(self, account_id: str) -> list[Position]:
        path = f"/accounts/{account_id}/positions"
        return (await self._caller.fetch(SERVICE, "GET", path, _Positions)).positions

    async def watchlists(self, account_id: str) -> list[Watchlist]:
        path = f"/accounts/{account_id}/watchlists"
        return (await self._caller.fetch(SERVICE, "GET", path, _Watchlists)).watchlists
