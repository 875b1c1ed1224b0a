"""Who may use the admin API: users with the admin role, and the bootstrap admin token.

The bootstrap token (`GATEWAY_ADMIN_TOKEN`) exists to set up the first consumers and
services; it works only while it is configured.
"""

import hmac
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.deps import SettingsDep, current_principal
from app.errors import Forbidden, Unauthorized
from app.security.principal import Principal

# auto_error=False: a missing or non-bearer header must become our problem+json 401.
admin_bearer = HTTPBearer(
    scheme_name="AdminToken",
    description=(
        "An access token of a user with the admin role, or the gateway's bootstrap admin "
        "token (`GATEWAY_ADMIN_TOKEN`)."
    ),
    auto_error=False,
)

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_INVALID = {"WWW-Authenticate": 'Bearer error="invalid_token"'}

BOOTSTRAP_ADMIN = Principal(
    subject="bootstrap-admin", kind="user", credential="bootstrap", roles=frozenset({"admin"})
)


async def require_admin(
    request: Request,
    credentials: Annotated[
        HTTPAuthorizationCredentials | None, Security(admin_bearer, scopes=["admin"])
    ],
    settings: SettingsDep,
) -> Principal:
    """Let through a user with the admin role, or the bootstrap token when one is configured."""
    if credentials is not None and settings.admin_token:
        presented = credentials.credentials.encode()
        if hmac.compare_digest(presented, settings.admin_token.encode()):
            return BOOTSTRAP_ADMIN
    try:
        principal = await current_principal(request)
    except Unauthorized as exc:
        if credentials is None:
            raise
        # Neither the bootstrap token nor a valid access token: say why without echoing it.
        detail = "The token is neither a valid admin access token nor the admin token"
        if not settings.admin_token:
            detail += " (the admin token is disabled: none is configured)"
        raise Unauthorized(detail + ".", headers=_INVALID) from exc
    if principal is None:
        raise Unauthorized(
            "The admin API needs `Authorization: Bearer <token>`: an admin's access token"
            + (" or the bootstrap admin token." if settings.admin_token else "."),
            headers=_CHALLENGE,
        )
    if principal.kind != "user" or "admin" not in principal.roles:
        raise Forbidden("The admin API needs the admin role.", extra={"missing_roles": ["admin"]})
    return principal
