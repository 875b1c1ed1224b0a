"""Central authentication: each credential kind has an authenticator; the first that
recognises its credential on the request decides who is calling.

An authenticator returns None when its credential is absent, a `Principal` when it is
valid, and raises `Unauthorized` (or `ServiceUnavailable` when it cannot decide) when it is
present but not acceptable, so a bad token is never silently treated as anonymous.
"""

from typing import Protocol

from fastapi import Request

from app.security.principal import Principal


class Authenticator(Protocol):
    async def authenticate(self, request: Request) -> Principal | None: ...


async def identify(request: Request, authenticators: list[Authenticator]) -> Principal | None:
    """The caller's principal, or None when the request carries no credential at all."""
    for authenticator in authenticators:
        principal = await authenticator.authenticate(request)
        if principal is not None:
            return principal
    return None
