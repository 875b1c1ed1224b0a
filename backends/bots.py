"""Bots service: list trading bots and start or stop them."""

from collections.abc import Callable

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from backends.bot_fleet import Bot, BotFleet, BotNotFound
from backends.price_walk import PriceWalk
from backends.service_app import account_or_404, create_service_app

SERVICE_NAME = "bots"


class BotList(BaseModel):
    bots: list[Bot]


def create_app(*, instance: str, seed: int) -> FastAPI:
    """The bots ASGI app."""
    app = create_service_app(SERVICE_NAME, instance)
    fleet = BotFleet(PriceWalk(seed))

    def on_bot(action: Callable[[str, str], Bot], account_id: str, bot_id: str) -> Bot:
        account_or_404(account_id)
        try:
            return action(account_id, bot_id)
        except BotNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc

    @app.get("/accounts/{account_id}/bots", response_model=BotList)
    async def list_bots(account_id: str) -> BotList:
        """All trading bots of one account."""
        account_or_404(account_id)
        return BotList(bots=fleet.bots(account_id))

    @app.get("/accounts/{account_id}/bots/{bot_id}", response_model=Bot)
    async def get_bot(account_id: str, bot_id: str) -> Bot:
        """One trading bot."""
        return on_bot(fleet.bot, account_id, bot_id)

    @app.post("/accounts/{account_id}/bots/{bot_id}/start", response_model=Bot)
    async def start_bot(account_id: str, bot_id: str) -> Bot:
        """Start a bot (idempotent: a running bot stays as it is)."""
        return on_bot(fleet.start, account_id, bot_id)

    @app.post("/accounts/{account_id}/bots/{bot_id}/stop", response_model=Bot)
    async def stop_bot(account_id: str, bot_id: str) -> Bot:
        """Stop a bot (idempotent: a stopped bot stays as it is)."""
        return on_bot(fleet.stop, account_id, bot_id)

    return app
