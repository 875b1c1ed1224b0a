"""Authorization: who may call which route, declared per route and visible in OpenAPI.

Roles grant scopes (viewer: read; trader: read, orders, bots; admin: admin, read); partner
consumers hold the scopes of their plan or their OAuth client. A route declares the scopes
it needs with `require_user(...)` or `require_partner(...)`, which authenticate through the
process's authenticator chain and answer 401 (no credential, with `WWW-Authenticate`) or 403
(naming the missing scopes). Partner routes also count the consumer's quota.

The principal is identified once per request and kept in `request.state.principal`, where
rate limits, logs and the idempotency ledger find it.
"""

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Request, Security
from fastapi.security import (
    APIKeyCookie,
    APIKeyHeader,
    HTTPAuthorizationCredentials,
    HTTPBearer,
    SecurityScopes,
)

from app.errors import Forbidden, Unauthorized
from app.security.apikeys import API_KEY_HEADER
from app.security.authenticate import identify
from app.security.principal import Principal, PrincipalKind

if TYPE_CHECKING:
    from app.state import GatewayState

ROLE_SCOPES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "trader": frozenset({"read", "orders", "bots"}),
    "admin": frozenset({"admin", "read"}),
}

SCOPES: dict[str, str] = {
    "read": "Read market data, portfolio, orders and bots of the caller's account",
    "orders": "Place and cancel orders in the caller's account",
    "bots": "Start and stop the caller's trading bots",
    "admin": "Configure the gateway",
    "quotes:read": "Partner: read quotes",
    "candles:read": "Partner: read candles",
    "orders:write": "Partner: place orders in linked accounts",
}

# For the OpenAPI documents: the identity settings' default cookie name (a deployment may
# rename it; the session authenticator reads the setting).
SESSION_COOKIE = "stockbot_session"

bearer_token = HTTPBearer(
    scheme_name="BearerToken",
    bearerFormat="JWT",
    description="An access token of the stock-bot identity provider.",
    auto_error=False,
)
api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="ApiKey",
    description="A consumer's API key, `sbk_<prefix>_<secret>`.",
    auto_error=False,
)
session_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    scheme_name="SessionCookie",
    description="The web login's session; unsafe methods also need the CSRF header.",
    auto_error=False,
)

_USER_CHALLENGE = 'Bearer realm="stock-bot"'
_PARTNER_CHALLENGE = f'Bearer realm="stock-bot", ApiKey header="{API_KEY_HEADER}"'
_UNSET: Any = object()


def granted_scopes(principal: Principal) -> frozenset[str]:
    """The scopes a principal holds: its own, plus those its roles grant."""
    granted = set(principal.scopes)
    for role in principal.roles:
        granted |= ROLE_SCOPES.get(role, frozenset())
    return frozenset(granted)


async def current_principal(request: Request) -> Principal | None:
    """The caller, identified once per request; None when no credential was presented."""
    known = getattr(request.state, "principal", _UNSET)
    if known is not _UNSET:
        return known
    state: GatewayState = request.state.gateway
    principal = await identify(request, state.authenticators)
    request.state.principal = principal
    return principal


def authorize(
    principal: Principal | None,
    *,
    scopes: Iterable[str],
    kinds: frozenset[PrincipalKind],
    challenge: str,
    audience: str,
) -> Principal:
    """The principal if it may proceed; 401 without one, 403 when it lacks something."""
    if principal is None:
        raise Unauthorized(
            f"This operation needs {audience}.", headers={"WWW-Authenticate": challenge}
        )
    if principal.kind not in kinds:
        raise Forbidden(f"This operation needs {audience}.")
    held = granted_scopes(principal)
    missing = [scope for scope in scopes if scope not in held]
    if missing:
        raise Forbidden(
            f"The caller lacks the scope(s) this operation needs: {', '.join(missing)}.",
            extra={"missing_scopes": missing},
        )
    return principal


async def user_principal(
    request: Request,
    security_scopes: SecurityScopes,
    _session: Annotated[str | None, Security(session_cookie)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_token)],
) -> Principal:
    """A signed-in user (session cookie or bearer token) holding the route's scopes."""
    return authorize(
        await current_principal(request),
        scopes=security_scopes.scopes,
        kinds=frozenset({"user"}),
        challenge=_USER_CHALLENGE,
        audience="a signed-in user (session cookie or bearer token)",
    )


async def _partner(request: Request, scopes: list[str]) -> Principal:
    return authorize(
        await current_principal(request),
        scopes=scopes,
        kinds=frozenset({"consumer"}),
        challenge=_PARTNER_CHALLENGE,
        audience="a partner credential (API key or client-credentials token)",
    )


async def partner_principal(
    request: Request,
    security_scopes: SecurityScopes,
    _api_key: Annotated[str | None, Security(api_key_header)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_token)],
) -> Principal:
    """A partner consumer holding the route's scopes; the request counts against its quota."""
    principal = await _partner(request, security_scopes.scopes)
    await count_quota(request, principal)
    return principal


async def partner_unmetered(
    request: Request,
    security_scopes: SecurityScopes,
    _api_key: Annotated[str | None, Security(api_key_header)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_token)],
) -> Principal:
    """A partner consumer, without counting the request (e.g. asking for its usage)."""
    return await _partner(request, security_scopes.scopes)


async def count_quota(request: Request, principal: Principal) -> None:
    """Count the request once against the consumer's plan quotas (429 when exhausted)."""
    if principal.consumer_id is None or principal.plan is None:
        return
    if getattr(request.state, "quota_counted", False):
        return
    state: GatewayState = request.state.gateway
    plan = state.config.current.plans.get(principal.plan)
    if plan is None or state.quotas is None:
        return
    request.state.quota_counted = True
    await state.quotas.consume(principal.consumer_id, plan)


def require_user(*scopes: str) -> Any:
    """Dependency: a signed-in user with `scopes`; declares them in OpenAPI."""
    return Security(user_principal, scopes=list(scopes))


def require_partner(*scopes: str) -> Any:
    """Dependency: a partner consumer with `scopes`, counted against its quota."""
    return Security(partner_principal, scopes=list(scopes))


UserReader = Annotated[Principal, Security(user_principal, scopes=["read"])]
UserTrader = Annotated[Principal, Security(user_principal, scopes=["orders"])]
UserBotOperator = Annotated[Principal, Security(user_principal, scopes=["bots"])]
PartnerCaller = Annotated[Principal, Security(partner_unmetered)]
