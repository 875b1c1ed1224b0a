"""The web identity: the trusted identity provider, web sessions and their authenticators,
composed once in the lifespan around one HTTP client to the provider."""

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from app.errors import BadRequest
from app.security.introspection import TokenIntrospection
from app.security.jwt import BearerAuthenticator, TokenValidator, TrustedIssuer
from app.security.oidc import ProviderClient
from app.security.sessions import SessionAuthenticator, SessionStore, session_store
from app.settings import Settings
from app.shared.redis import SharedRedis
from app.store.snapshot import ConfigStore


@dataclass
class WebIdentity:
    """Everything the gateway needs to trust the identity provider, built in the lifespan."""

    settings: Settings
    # The one client to the provider: discovery, keys, token, revocation and introspection.
    http: httpx.AsyncClient
    issuer: TrustedIssuer
    validator: TokenValidator
    store: SessionStore
    provider: ProviderClient
    sessions: SessionAuthenticator
    bearer: BearerAuthenticator
    # Asks whether an order's bearer token is still active; None unless
    # `identity.introspect_orders` is on.
    introspection: TokenIntrospection | None

    @property
    def cookie_secure(self) -> bool:
        configured = self.settings.identity.cookie_secure
        if configured is not None:
            return configured
        return self.settings.environment not in {"development", "test"}

    async def aclose(self) -> None:
        await self.http.aclose()


def build_web_identity(
    settings: Settings, *, redis: SharedRedis | None, config: ConfigStore
) -> WebIdentity:
    """Issuer, validator, session store and authenticators; no I/O until first use."""
    identity = settings.identity
    http = httpx.AsyncClient(timeout=identity.provider_timeout_s, follow_redirects=False)
    issuer = TrustedIssuer(settings=identity, http=http)
    validator = TokenValidator(issuer=issuer, settings=identity)
    store = session_store(redis, prefix=settings.redis_prefix)
    provider = ProviderClient(issuer=issuer, validator=validator, settings=settings, http=http)
    return WebIdentity(
        settings=settings,
        http=http,
        issuer=issuer,
        validator=validator,
        store=store,
        provider=provider,
        sessions=SessionAuthenticator(store=store, refresher=provider, settings=identity),
        bearer=BearerAuthenticator(validator=validator, settings=identity, config=config),
        introspection=(
            TokenIntrospection(issuer=issuer, settings=identity, http=http)
            if identity.introspect_orders
            else None
        ),
    )


def safe_return_path(return_to: str) -> str:
    """A same-origin path to go back to after login; anything else is refused (open redirect)."""
    parts = urlsplit(return_to)
    if (
        not return_to.startswith("/")
        or return_to.startswith("//")
        or "\\" in return_to
        or parts.scheme
        or parts.netloc
        or any(ord(character) < 0x20 or ord(character) == 0x7F for character in return_to)
    ):
        raise BadRequest(
            "return_to must be a path on this site, such as /web/v1/dashboard.",
            extra={"errors": [{"field": "query.return_to", "message": "must be a local path"}]},
        )
    return return_to
