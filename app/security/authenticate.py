"""Central authentication: each credential kind has an authenticator; the first that
recognises its credential on the request decides who is calling.

An authenticator returns None when its credential is absent, a `Principal` when it is
valid, and raises `Unauthorized` (or `ServiceUnavailable` when it cannot decide) when it is
present but not acceptable, so a bad token is never silently treated as anonymous.

Authenticators read what a request presents (`Presented`), not a FastAPI `Request`, so the
policy chain runs them for any entry point (`app.policy.chain`).
"""

from collections.abc import Mapping, Sequence
from typing import Protocol

from app.security.principal import Principal


class Presented(Protocol):
    """What a request presents to authenticators: its method, headers and cookies."""

    @property
    def method(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def cookies(self) -> Mapping[str, str]: ...


class Authenticator(Protocol):
    async def authenticate(self, request: Presented) -> Principal | None: ...


async def identify(request: Presented, authenticators: Sequence[Authenticator]) -> Principal | None:
    """The caller's principal, or None when the request carries no credential at all."""
    for authenticator in authenticators:
        principal = await authenticator.authenticate(request)
        if principal is not None:
            return principal
    return None
