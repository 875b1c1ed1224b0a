"""Authorization: who may call which route, declared per route and visible in OpenAPI.

Roles grant scopes (viewer: read; trader: read, orders, bots; admin: admin, read); partner
consumers hold the scopes of their plan or their OAuth client. A route declares the scopes
it needs with `require_user(...)` or `require_partner(...)`: one dependency that
authenticates through the process's authenticator chain, admits the request under the
caller's rate limits (`app.traffic.policies`), and answers 401 (no credential, with
`WWW-Authenticate`) or 403 (naming the missing scopes). Partner routes also count the
consumer's quota.

The principal is identified once per request and kept in `request.state.principal`, where
logs and the idempotency ledger find it.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPBearer
from fastapi.security.base import SecurityBase

from app.errors import Forbidden, Unauthorized
from app.security.apikeys import API_KEY_HEADER, confirm_not_revoked
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
# Marks a request's scope once the caller was admitted under its rate limits.
_ADMITTED = "gateway.admitted"


def granted_scopes(principal: Principal) -> frozenset[str]:
    """The scopes a principal holds: its own, plus those its roles grant."""
    granted = set(principal.scopes)
    for role in principal.roles:
        granted |= ROLE_SCOPES.get(role, frozenset())
    return frozenset(granted)


async def _identified(request: Request) -> Principal | None:
    known = getattr(request.state, "principal", _UNSET)
    if known is not _UNSET:
        return known
    state: GatewayState = request.state.gateway
    principal = await identify(request, state.authenticators)
    request.state.principal = principal
    return principal


async def current_principal(request: Request) -> Principal | None:
    """The caller, identified once per request; None when no credential was presented."""
    principal = await _identified(request)
    await confirm_not_revoked(request)
    return principal


async def admitted_principal(request: Request) -> Principal | None:
    """The caller, admitted once per request under its rate limits and in-flight cap.

    Frontend traffic is limited per caller, so admission follows identification; it comes
    before authorization, as an unauthorized caller's attempts count against its limits too.
    """
    principal = await _identified(request)
    scope = request.scope
    if _ADMITTED not in scope:
        scope[_ADMITTED] = True
        state: GatewayState = request.state.gateway
        if state.admission is not None:
            await state.admission.admit(scope, principal=principal, snapshot=state.config.current)
    # After admission: its limits went to Redis in the same write as the key's check.
    await confirm_not_revoked(request)
    return principal


@dataclass(frozen=True, slots=True)
class Audience:
    """Who a route is for: the principal kind it accepts and the credentials that carry it."""

    kinds: frozenset[PrincipalKind]
    schemes: tuple[SecurityBase, ...]
    challenge: str
    description: str


USERS = Audience(
    kinds=frozenset({"user"}),
    schemes=(session_cookie, bearer_token),
    challenge=_USER_CHALLENGE,
    description="a signed-in user (session cookie or bearer token)",
)
PARTNERS = Audience(
    kinds=frozenset({"consumer"}),
    schemes=(api_key_header, bearer_token),
    challenge=_PARTNER_CHALLENGE,
    description="a partner credential (API key or client-credentials token)",
)


def authorize(principal: Principal | None, audience: Audience, scopes: Iterable[str]) -> Principal:
    """The principal if it may proceed; 401 without one, 403 when it lacks something."""
    if principal is None:
        raise Unauthorized(
            f"This operation needs {audience.description}.",
            headers={"WWW-Authenticate": audience.challenge},
        )
    if principal.kind not in audience.kinds:
        raise Forbidden(f"This operation needs {audience.description}.")
    held = granted_scopes(principal)
    missing = [scope for scope in scopes if scope not in held]
    if missing:
        raise Forbidden(
            f"The caller lacks the scope(s) this operation needs: {', '.join(missing)}.",
            extra={"missing_scopes": missing},
        )
    return principal


class AccessRule:
    """A route's access rule as its one dependency: the caller is identified and admitted
    (once per request, whichever rule asks first), then must belong to the audience and hold
    the scopes; a metered partner call is also counted against the consumer's quota.

    One dependency rather than a chain of them: FastAPI's cost per dependency is a visible
    share of a pass-through request. The OpenAPI documents read the rule's audience and
    scopes (see `app.openapi`).
    """

    def __init__(self, audience: Audience, scopes: Iterable[str], *, metered: bool) -> None:
        self.audience = audience
        self.scopes = tuple(scopes)
        self.metered = metered

    async def __call__(self, request: Request) -> Principal:
        principal = authorize(await admitted_principal(request), self.audience, self.scopes)
        if self.metered:
            await count_quota(request, principal)
        return principal


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
    """Dependency: a signed-in user with `scopes`, admitted under the rate limits."""
    return Depends(AccessRule(USERS, scopes, metered=False))


def require_partner(*scopes: str, metered: bool = True) -> Any:
    """Dependency: a partner consumer with `scopes`, admitted under the rate limits and,
    unless `metered=False`, counted against its quota."""
    return Depends(AccessRule(PARTNERS, scopes, metered=metered))


# A partner asking about itself (e.g. its usage): admitted, but not counted.
PartnerCaller = Annotated[Principal, require_partner(metered=False)]
