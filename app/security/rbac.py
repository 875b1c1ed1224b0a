"""Authorization: who may call which route, declared per route and visible in OpenAPI.

Roles grant scopes (viewer: read; trader: read, orders, bots; admin: admin, read); partner
consumers hold the scopes of their plan or their OAuth client. A route declares who it is
for and the scopes it needs as an `AccessRule`; the policy chain (`app.policy.chain`)
enforces it: 401 without a credential (with `WWW-Authenticate`), 403 naming what is missing.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPBearer
from fastapi.security.base import SecurityBase

from app.errors import Forbidden, Unauthorized
from app.security.apikeys import API_KEY_HEADER
from app.security.principal import Principal, PrincipalKind

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


def granted_scopes(principal: Principal) -> frozenset[str]:
    """The scopes a principal holds: its own, plus those its roles grant."""
    granted = set(principal.scopes)
    for role in principal.roles:
        granted |= ROLE_SCOPES.get(role, frozenset())
    return frozenset(granted)


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


@dataclass(frozen=True, slots=True)
class AccessRule:
    """A route's access rule: the audience it is for and the scopes it needs; a metered
    partner call also counts against the consumer's quota; with `introspect` (order entry
    and cancel) a bearer token is confirmed active at the provider when
    `identity.introspect_orders` is on (`app.security.introspection`). Enforced by the
    policy chain; the OpenAPI documents read it (see `app.openapi`)."""

    audience: Audience
    scopes: tuple[str, ...]
    metered: bool = False
    introspect: bool = False


def user_rule(*scopes: str) -> AccessRule:
    """A signed-in user with `scopes`."""
    return AccessRule(USERS, scopes)


def partner_rule(*scopes: str, metered: bool = True) -> AccessRule:
    """A partner consumer with `scopes`, counted against its quota unless `metered=False`."""
    return AccessRule(PARTNERS, scopes, metered=metered)
