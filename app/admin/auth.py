"""Who may use the admin API: for now, whoever presents the bootstrap admin token."""

import hmac
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.deps import SettingsDep
from app.errors import Unauthorized

# auto_error=False: a missing or non-bearer header must become our problem+json 401.
admin_bearer = HTTPBearer(
    scheme_name="AdminToken",
    description="The gateway's admin token (`GATEWAY_ADMIN_TOKEN`) as a bearer token.",
    auto_error=False,
)

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_INVALID = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


async def require_admin(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)],
    settings: SettingsDep,
) -> None:
    """Let the request through only with the configured admin token."""
    if credentials is None:
        raise Unauthorized(
            "The admin API needs `Authorization: Bearer <admin token>`.", headers=_CHALLENGE
        )
    if not settings.admin_token:
        # No token configured means the admin API is switched off, not open.
        raise Unauthorized(
            "The admin API is disabled: no admin token is configured.", headers=_INVALID
        )
    presented = credentials.credentials.encode()
    if not hmac.compare_digest(presented, settings.admin_token.encode()):
        raise Unauthorized("The admin token is not valid.", headers=_INVALID)
