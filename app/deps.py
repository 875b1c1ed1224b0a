"""Dependencies through which handlers reach the process's shared resources.

Those on the request path read the gateway state straight from the request rather than
through `StateDep`: every dependency FastAPI solves is a visible share of a pass-through
request's cost.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Forbidden, Unauthorized
from app.security.principal import Principal
from app.security.rbac import current_principal
from app.settings import Settings
from app.state import GatewayState
from app.store.database import session_scope
from app.store.snapshot import ConfigStore
from app.upstreams.bots import BotsClient
from app.upstreams.caller import UpstreamCaller
from app.upstreams.market_data import MarketDataClient
from app.upstreams.news import NewsClient
from app.upstreams.orders import OrdersClient
from app.upstreams.portfolio import PortfolioClient


async def gateway_state(request: Request) -> GatewayState:
    state: GatewayState = request.state.gateway
    return state


StateDep = Annotated[GatewayState, Depends(gateway_state)]


async def settings(state: StateDep) -> Settings:
    return state.settings


async def caller(request: Request) -> UpstreamCaller:
    upstream_caller: UpstreamCaller = request.state.gateway.caller
    return upstream_caller


async def config_store(state: StateDep) -> ConfigStore:
    return state.config


async def redis_client(state: StateDep) -> Redis | None:
    return state.redis


async def db_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    async for session in session_scope(state.sessions):
        yield session


SettingsDep = Annotated[Settings, Depends(settings)]
CallerDep = Annotated[UpstreamCaller, Depends(caller)]
ConfigStoreDep = Annotated[ConfigStore, Depends(config_store)]
SessionDep = Annotated[AsyncSession, Depends(db_session)]
RedisDep = Annotated[Redis | None, Depends(redis_client)]


async def market_data(request: Request) -> MarketDataClient:
    return MarketDataClient(request.state.gateway.caller)


async def portfolio(request: Request) -> PortfolioClient:
    return PortfolioClient(request.state.gateway.caller)


async def orders(request: Request) -> OrdersClient:
    return OrdersClient(request.state.gateway.caller)


async def news(request: Request) -> NewsClient:
    return NewsClient(request.state.gateway.caller)


async def bots(request: Request) -> BotsClient:
    return BotsClient(request.state.gateway.caller)


MarketDataDep = Annotated[MarketDataClient, Depends(market_data)]
PortfolioDep = Annotated[PortfolioClient, Depends(portfolio)]
OrdersDep = Annotated[OrdersClient, Depends(orders)]
NewsDep = Annotated[NewsClient, Depends(news)]
BotsDep = Annotated[BotsClient, Depends(bots)]


async def current_account_id(
    principal: Annotated[Principal | None, Depends(current_principal)],
) -> str:
    """The account the request acts for: the caller's own, from its identity, never a parameter."""
    if principal is None:
        raise Unauthorized(
            "This operation needs a signed-in user.",
            headers={"WWW-Authenticate": 'Bearer realm="stock-bot"'},
        )
    if principal.account_id is None:
        raise Forbidden("The caller has no trading account of its own to act on.")
    return principal.account_id


AccountIdDep = Annotated[str, Depends(current_account_id)]
