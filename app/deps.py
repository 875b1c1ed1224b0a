"""Dependencies through which FastAPI routes reach the process's shared resources, the
request's context and the policy chain.

This is the one module that reads the per-request context (`RequestContext`) out of the
ASGI scope, where the edge put it; a test enforces that. Those on the request path read the
gateway state straight from the request rather than through `StateDep`: every dependency
FastAPI solves is a visible share of a request's cost.
"""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Scope

from app.errors import Forbidden, ServiceUnavailable, Unauthorized
from app.policy.context import CONTEXT_SCOPE_KEY, RequestContext
from app.policy.idempotency import IdempotencyScope
from app.security.principal import Principal
from app.security.rbac import USERS, AccessRule, partner_rule, user_rule
from app.settings import Settings
from app.shared.redis import SharedRedis
from app.state import GatewayState
from app.store.database import ConfigStoreUnavailable, is_unavailable, transaction
from app.store.snapshot import ConfigStore
from app.traffic.deadline import current_deadline
from app.upstreams.bots import BotsClient
from app.upstreams.caller import UpstreamCaller
from app.upstreams.market_data import MarketDataClient
from app.upstreams.news import NewsClient
from app.upstreams.orders import OrdersClient
from app.upstreams.portfolio import PortfolioClient


def context_of_scope(scope: Scope) -> RequestContext:
    """The request's context, created by the edge, for a plain ASGI entry (pass-through
    routes)."""
    context = scope.get(CONTEXT_SCOPE_KEY)
    if context is None:
        raise ServiceUnavailable("The gateway's edge did not see this request.")
    return context


def context_of(request: Request) -> RequestContext:
    """The request's context, created by the edge."""
    context = request.scope.get(CONTEXT_SCOPE_KEY)
    if context is None:
        # Only an app built without its edge gets here: a wiring error, not a client's.
        raise ServiceUnavailable("The gateway's edge did not see this request.")
    return context


async def request_context(request: Request) -> RequestContext:
    return context_of(request)


async def gateway_state(request: Request) -> GatewayState:
    state: GatewayState = request.state.gateway
    return state


StateDep = Annotated[GatewayState, Depends(gateway_state)]
ContextDep = Annotated[RequestContext, Depends(request_context)]


async def settings(state: StateDep) -> Settings:
    return state.settings


async def caller(request: Request) -> UpstreamCaller:
    upstream_caller: UpstreamCaller = request.state.gateway.caller
    return upstream_caller


async def config_store(state: StateDep) -> ConfigStore:
    return state.config


async def redis_client(state: StateDep) -> SharedRedis | None:
    return state.redis


async def db_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    """The request's session: committed (then its after-commit callbacks run) or rolled back
    as soon as the handler returns, before the response is sent, so a 2xx means committed.

    Its work ends with the request's deadline, besides the engine's connect and statement
    timeouts; a database that is unavailable, or did not answer in time, is a 503 with
    `Retry-After`, never a 500 or a hang."""
    deadline = current_deadline()
    try:
        async with (
            asyncio.timeout(deadline.remaining_s() if deadline is not None else None),
            transaction(state.sessions) as session,
        ):
            yield session
    except Exception as exc:
        if is_unavailable(exc):
            raise ConfigStoreUnavailable() from exc
        raise


SettingsDep = Annotated[Settings, Depends(settings)]
CallerDep = Annotated[UpstreamCaller, Depends(caller)]
ConfigStoreDep = Annotated[ConfigStore, Depends(config_store)]
SessionDep = Annotated[AsyncSession, Depends(db_session, scope="function")]
RedisDep = Annotated[SharedRedis | None, Depends(redis_client)]


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


class RouteAccess:
    """A route's access rule as its one dependency: the policy chain runs once per request,
    whichever route dependency asks first.

    One dependency rather than a chain of them: FastAPI's cost per dependency is a visible
    share of a pass-through request. The OpenAPI documents read `rule` (see `app.openapi`).
    """

    def __init__(self, rule: AccessRule) -> None:
        self.rule = rule

    async def __call__(self, request: Request) -> Principal:
        context = context_of(request)
        route = request.scope.get("route")
        if route is not None:
            context.route = route.path
        chain = request.state.gateway.chain
        outcome = await chain.run(context, self.rule)
        return outcome.principal


def require_user(*scopes: str, introspect: bool = False) -> Any:
    """Dependency: a signed-in user with `scopes`, admitted under the rate limits; with
    `introspect` (routes that place or cancel orders) a bearer token is confirmed active at
    the provider when `identity.introspect_orders` is on."""
    return Depends(RouteAccess(replace(user_rule(*scopes), introspect=introspect)))


def require_partner(*scopes: str, metered: bool = True, introspect: bool = False) -> Any:
    """Dependency: a partner consumer with `scopes`, admitted under the rate limits and,
    unless `metered=False`, counted against its quota; `introspect` as for `require_user`."""
    rule = partner_rule(*scopes, metered=metered)
    return Depends(RouteAccess(replace(rule, introspect=introspect)))


# A partner asking about itself (e.g. its usage): admitted, but not counted.
PartnerCaller = Annotated[Principal, require_partner(metered=False)]


async def current_principal(request: Request) -> Principal | None:
    """The caller, identified once per request (an API key confirmed not revoked); None when
    no credential was presented. For routes without an access rule (who am I, admin)."""
    chain = request.state.gateway.chain
    principal: Principal | None = await chain.confirmed_principal(context_of(request))
    return principal


CurrentPrincipal = Annotated[Principal | None, Depends(current_principal)]


async def current_account_id(request: Request) -> str:
    """The account the request acts for: the caller's own, from its identity, never a parameter.
    (The caller as `current_principal` finds it, asked here rather than as one more dependency
    to solve on every request of a user's view.)"""
    principal = await current_principal(request)
    if principal is None:
        raise Unauthorized(
            "This operation needs a signed-in user.",
            headers={"WWW-Authenticate": USERS.challenge},
        )
    if principal.account_id is None:
        raise Forbidden("The caller has no trading account of its own to act on.")
    return principal.account_id


AccountIdDep = Annotated[str, Depends(current_account_id)]


async def idempotency_scope(request: Request, principal: CurrentPrincipal) -> IdempotencyScope:
    state: GatewayState = request.state.gateway
    caller = principal.subject if principal is not None else "anonymous"
    return IdempotencyScope(ledger=state.idempotency, caller=caller)


IdempotencyDep = Annotated[IdempotencyScope, Depends(idempotency_scope)]
