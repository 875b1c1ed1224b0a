"""Typed client of the trading-bots service."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from app.upstreams.caller import UpstreamCaller

SERVICE = "bots"


class BotStatus(StrEnum):
    running = "running"
    stopped = "stopped"
    error = "error"


class Bot(BaseModel):
    bot_id: str
    name: str
    strategy: str
    status: BotStatus
    symbols: list[str]
    pnl_today: float
    trades_today: int
    started_at: datetime | None = None


class _Bots(BaseModel):
    bots: list[Bot]


class BotsClient:
    def __init__(self, caller: UpstreamCaller) -> None:
        self._caller = caller

    async def bots(self, account_id: str) -> list[Bot]:
        path = f"/accounts/{account_id}/bots"
        return (await self._caller.fetch(SERVICE, "GET", path, _Bots)).bots

    async def start(self, account_id: str, bot_id: str) -> Bot:
        path = f"/accounts/{account_id}/bots/{bot_id}/start"
        return await self._caller.fetch(SERVICE, "POST", path, Bot)

    async def stop(self, account_id: str, bot_id: str) -> Bot:
        path = f"/accounts/{account_id}/bots/{bot_id}/stop"
        return await self._caller.fetch(SERVICE, "POST", path, Bot)
