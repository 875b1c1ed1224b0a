"""Web login, backend-for-frontend style: the gateway is the OAuth client, the browser
only ever holds an opaque, HttpOnly session cookie.

`GET /auth/login` starts an authorization-code flow with PKCE (S256), `state` and `nonce`
kept server-side under a short-lived pre-session cookie; `GET /auth/callback` checks them,
exchanges the code (Authlib's async client), and opens a server-side session. `GET
/auth/session` tells the page who is logged in and its CSRF token; `POST /auth/logout` ends
the session here and revokes its tokens at the provider.
"""

import hmac
import logging
import re
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.integrations.base_client.errors import OAuthError
from fastapi import APIRouter, Depends, Header, Query, Request, Security
from fastapi.responses import RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from app.errors import BadRequest, ServiceUnavailable, Unauthorized, problem_responses
from app.security.jwt import (
    BearerAuthenticator,
    InvalidToken,
    ProviderMetadata,
    TokenValidator,
    TrustedIssuer,
)
from app.security.principal import Principal
from app.security.rbac import api_key_header, bearer_token, current_principal, session_cookie
from app.security.sessions import (
    CSRF_HEADER,
    LoginAttempt,
    SessionAuthenticator,
    SessionEnded,
    SessionStore,
    WebSession,
    new_secret,
    session_expired,
    session_store,
)
from app.settings import Settings
from app.store.snapshot import ConfigStore

with warnings.catch_warnings():
    # Authlib 1.9 prefers its httpx2 fork and warns on import when it falls back to httpx,
    # which is the HTTP client this project uses.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

logger = logging.getLogger("gateway.security.oauth")

router = APIRouter()

_OAUTH_ERROR_CODE = re.compile(r"^[a-z_]{1,64}$")


class ProviderClient:
    """The gateway as the provider's confidential web client: code exchange, refresh, revoke."""

    def __init__(
        self, *, issuer: TrustedIssuer, validator: TokenValidator, settings: Settings
    ) -> None:
        self._issuer = issuer
        self._validator = validator
        self._identity = settings.identity

    def _client(self, **kwargs: Any) -> AsyncOAuth2Client:
        identity = self._identity
        return AsyncOAuth2Client(
            client_id=identity.web_client_id,
            client_secret=identity.web_client_secret.get_secret_value(),
            token_endpoint_auth_method="client_secret_basic",
            revocation_endpoint_auth_method="client_secret_basic",
            code_challenge_method="S256",
            timeout=identity.provider_timeout_s,
            **kwargs,
        )

    async def _metadata(self) -> ProviderMetadata:
        metadata = await self._issuer.metadata()
        if metadata.authorization_endpoint is None or metadata.token_endpoint is None:
            raise ServiceUnavailable("The identity provider does not offer the web login flow.")
        return metadata

    async def authorization_url(self, attempt: LoginAttempt) -> str:
        metadata = await self._metadata()
        assert metadata.authorization_endpoint is not None
        async with self._client(
            scope=self._identity.web_scopes, redirect_uri=attempt.redirect_uri
        ) as client:
            url, _ = client.create_authorization_url(
                metadata.authorization_endpoint,
                state=attempt.state,
                code_verifier=attempt.code_verifier,
                nonce=attempt.nonce,
            )
        return str(url)

    async def exchange(self, attempt: LoginAttempt, *, code: str) -> WebSession:
        """Redeem the authorization code and validate what comes back."""
        metadata = await self._metadata()
        try:
            async with self._client(redirect_uri=attempt.redirect_uri) as client:
                token = await client.fetch_token(
                    metadata.token_endpoint,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=attempt.code_verifier,
                )
        except OAuthError as error:
            logger.info("code exchange refused by the provider: %s", error.error)
            raise BadRequest(
                "The identity provider did not accept the login; start again at /auth/login."
            ) from None
        except (httpx.HTTPError, ValueError) as error:
            raise _provider_unreachable(error) from None
        now = time.time()
        session = await self._session_from(
            token,
            csrf_token=new_secret(),
            created_at=now,
            expires_at=now + self._identity.session_ttl_s,
        )
        await self._check_id_token(session, nonce=attempt.nonce)
        return session

    async def refresh(self, session: WebSession) -> WebSession:
        """The session with a new access token (and the rotated refresh token)."""
        if session.refresh_token is None:
            raise SessionEnded
        metadata = await self._metadata()
        try:
            async with self._client() as client:
                token = await client.refresh_token(
                    metadata.token_endpoint, refresh_token=session.refresh_token
                )
        except OAuthError as error:
            if error.error == "invalid_grant":
                raise SessionEnded from None
            logger.warning("token refresh refused by the provider: %s", error.error)
            raise ServiceUnavailable(
                "The identity provider refused to refresh the session."
            ) from None
        except (httpx.HTTPError, ValueError) as error:
            raise _provider_unreachable(error) from None
        refreshed = await self._session_from(
            token,
            csrf_token=session.csrf_token,
            created_at=session.created_at,
            expires_at=session.expires_at,
        )
        refreshed.refresh_token = refreshed.refresh_token or session.refresh_token
        refreshed.id_token = refreshed.id_token or session.id_token
        return refreshed

    async def revoke(self, session: WebSession) -> None:
        """Revoke the session's tokens at the provider; a failure is logged, not raised."""
        try:
            metadata = await self._metadata()
        except ServiceUnavailable:
            logger.warning("logout could not reach the identity provider to revoke tokens")
            return
        if metadata.revocation_endpoint is None:
            return
        tokens = [(session.refresh_token, "refresh_token"), (session.access_token, "access_token")]
        try:
            async with self._client() as client:
                for token, hint in tokens:
                    if token is not None:
                        await client.revoke_token(
                            metadata.revocation_endpoint, token=token, token_type_hint=hint
                        )
        except httpx.HTTPError as error:
            logger.warning("token revocation failed: %s", type(error).__name__)

    async def _session_from(
        self, token: dict[str, Any], *, csrf_token: str, created_at: float, expires_at: float
    ) -> WebSession:
        access_token = token.get("access_token")
        if not isinstance(access_token, str):
            raise ServiceUnavailable("The identity provider answered without an access token.")
        try:
            claims = await self._validator.validate(access_token)
        except InvalidToken as error:
            logger.warning("provider issued an unacceptable access token: %s", error)
            raise ServiceUnavailable(
                "The identity provider issued a token the gateway does not accept."
            ) from None
        refresh_token = token.get("refresh_token")
        id_token = token.get("id_token")
        return WebSession(
            claims=claims,
            access_token=access_token,
            access_expires_at=float(claims["exp"]),
            refresh_token=refresh_token if isinstance(refresh_token, str) else None,
            id_token=id_token if isinstance(id_token, str) else None,
            csrf_token=csrf_token,
            created_at=created_at,
            expires_at=expires_at,
        )

    async def _check_id_token(self, session: WebSession, *, nonce: str) -> None:
        if session.id_token is None:
            return
        try:
            claims = await self._validator.validate(
                session.id_token, audience=self._identity.web_client_id
            )
        except InvalidToken as error:
            logger.warning("provider issued an unacceptable ID token: %s", error)
            raise BadRequest(
                "The login could not be verified; start again at /auth/login."
            ) from None
        presented = str(claims.get("nonce", ""))
        if not hmac.compare_digest(presented.encode(), nonce.encode()) or claims.get(
            "sub"
        ) != session.claims.get("sub"):
            raise BadRequest("The login could not be verified; start again at /auth/login.")


def _provider_unreachable(error: Exception) -> ServiceUnavailable:
    logger.warning("identity provider call failed: %s", type(error).__name__)
    return ServiceUnavailable("The identity provider is unavailable; try again shortly.")


@dataclass
class WebIdentity:
    """Everything the gateway needs to trust the identity provider, built in the lifespan."""

    settings: Settings
    http: httpx.AsyncClient
    issuer: TrustedIssuer
    validator: TokenValidator
    store: SessionStore
    provider: ProviderClient
    sessions: SessionAuthenticator
    bearer: BearerAuthenticator

    @property
    def cookie_secure(self) -> bool:
        configured = self.settings.identity.cookie_secure
        if configured is not None:
            return configured
        return self.settings.environment not in {"development", "test"}

    async def aclose(self) -> None:
        await self.http.aclose()


def build_web_identity(
    settings: Settings, *, redis: Redis | None, config: ConfigStore
) -> WebIdentity:
    """Issuer, validator, session store and authenticators; no I/O until first use."""
    identity = settings.identity
    http = httpx.AsyncClient(timeout=identity.provider_timeout_s, follow_redirects=False)
    issuer = TrustedIssuer(settings=identity, http=http)
    validator = TokenValidator(issuer=issuer, settings=identity)
    store = session_store(redis, prefix=settings.redis_prefix)
    provider = ProviderClient(issuer=issuer, validator=validator, settings=settings)
    return WebIdentity(
        settings=settings,
        http=http,
        issuer=issuer,
        validator=validator,
        store=store,
        provider=provider,
        sessions=SessionAuthenticator(store=store, refresher=provider, settings=identity),
        bearer=BearerAuthenticator(validator=validator, settings=identity, config=config),
    )


async def web_identity(request: Request) -> WebIdentity:
    identity: WebIdentity | None = getattr(request.state.gateway, "identity", None)
    if identity is None:
        raise ServiceUnavailable("Web login is not configured on this gateway.")
    return identity


WebIdentityDep = Annotated[WebIdentity, Depends(web_identity)]
# Declared for the OpenAPI document; the authenticators read the request themselves.
SessionCookie = Annotated[str | None, Security(session_cookie)]
CsrfHeader = Annotated[
    str | None,
    Header(
        alias=CSRF_HEADER,
        description="The session's CSRF token from `GET /auth/session`.",
    ),
]


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


class PrincipalSummary(BaseModel):
    """Who the gateway takes the caller to be."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject": "alice",
                    "kind": "user",
                    "credential": "session",
                    "roles": ["trader"],
                    "scopes": ["openid", "profile"],
                    "account_ids": ["ACC-1001"],
                }
            ]
        }
    )

    subject: str
    kind: str
    credential: str
    roles: list[str]
    scopes: list[str]
    account_ids: list[str]

    @classmethod
    def of(cls, principal: Principal) -> "PrincipalSummary":
        return cls(
            subject=principal.subject,
            kind=principal.kind,
            credential=principal.credential,
            roles=sorted(principal.roles),
            scopes=sorted(principal.scopes),
            account_ids=list(principal.account_ids),
        )


class SessionInfo(BaseModel):
    """The logged-in user and the CSRF token to send as `X-CSRF-Token` on state changes."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user": PrincipalSummary.model_config["json_schema_extra"]["examples"][0],  # type: ignore[index]
                    "name": "Alice Trader",
                    "csrf_token": "Vw2b8Yc8b5I3k0l5dZx9QmN4rT7uJ1pA6sE2fH3gK8o",
                    "expires_at": "2026-11-26T18:00:00Z",
                }
            ]
        }
    )

    user: PrincipalSummary
    name: str | None = None
    csrf_token: str
    expires_at: datetime = Field(description="When the session ends, whatever the activity")


def _set_cookie(
    response: Response, identity: WebIdentity, *, name: str, value: str, max_age: int, path: str
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        secure=identity.cookie_secure,
        samesite="lax",
    )


def _clear_cookie(response: Response, identity: WebIdentity, *, name: str, path: str) -> None:
    response.delete_cookie(
        name, path=path, httponly=True, secure=identity.cookie_secure, samesite="lax"
    )


@router.get(
    "/login",
    status_code=303,
    response_class=RedirectResponse,
    responses={
        303: {"description": "Redirect to the identity provider's login page"},
        **problem_responses(400, 503),
    },
)
async def auth_login(
    request: Request,
    identity: WebIdentityDep,
    return_to: Annotated[str, Query(max_length=2048)] = "/",
) -> RedirectResponse:
    """Start the web login: redirect to the identity provider with PKCE."""
    settings = identity.settings.identity
    attempt = LoginAttempt(
        state=new_secret(),
        code_verifier=new_secret() + new_secret(),
        nonce=new_secret(),
        return_to=safe_return_path(return_to),
        redirect_uri=settings.redirect_url or str(request.url_for("auth_callback")),
    )
    location = await identity.provider.authorization_url(attempt)
    login_cookie = await identity.store.begin_login(attempt, ttl_s=settings.login_ttl_s)
    response = RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})
    _set_cookie(
        response,
        identity,
        name=settings.login_cookie_name,
        value=login_cookie,
        max_age=settings.login_ttl_s,
        path="/auth",
    )
    return response


@router.get(
    "/callback",
    status_code=303,
    response_class=RedirectResponse,
    responses={
        303: {"description": "Logged in; back to `return_to`"},
        **problem_responses(400, 401, 503),
    },
)
async def auth_callback(
    request: Request,
    identity: WebIdentityDep,
    state: Annotated[str | None, Query(max_length=512)] = None,
    code: Annotated[str | None, Query(max_length=2048)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
    iss: Annotated[str | None, Query(max_length=2048)] = None,
) -> RedirectResponse:
    """Finish the web login: check state, exchange the code, open the session."""
    settings = identity.settings.identity
    login_cookie = request.cookies.get(settings.login_cookie_name)
    if not login_cookie:
        raise BadRequest("No login is in progress in this browser; start at /auth/login.")
    attempt = await identity.store.finish_login(login_cookie)
    if attempt is None:
        raise BadRequest("The login has expired; start again at /auth/login.")
    if state is None or not hmac.compare_digest(state.encode(), attempt.state.encode()):
        raise BadRequest("The login state does not match; start again at /auth/login.")
    if error is not None:
        reason = error if _OAUTH_ERROR_CODE.match(error) else "unknown_error"
        raise Unauthorized(f"The identity provider did not log you in ({reason}).")
    if iss is not None and iss != (await identity.issuer.metadata()).issuer:
        # RFC 9207: the answer must come from the provider the login was sent to.
        raise BadRequest("The login answer came from an unexpected issuer.")
    if not code:
        raise BadRequest("The identity provider's answer carries no authorization code.")
    session = await identity.provider.exchange(attempt, code=code)
    previous_cookie = request.cookies.get(settings.cookie_name)
    if previous_cookie:
        # A new login replaces the browser's old session rather than leaving it alive.
        previous = await identity.sessions.end(previous_cookie)
        if previous is not None:
            await identity.provider.revoke(previous)
    cookie_value = await identity.store.create(session)
    response = RedirectResponse(
        attempt.return_to, status_code=303, headers={"Cache-Control": "no-store"}
    )
    _set_cookie(
        response,
        identity,
        name=settings.cookie_name,
        value=cookie_value,
        max_age=settings.session_ttl_s,
        path="/",
    )
    _clear_cookie(response, identity, name=settings.login_cookie_name, path="/auth")
    return response


@router.get("/session", response_model=SessionInfo, responses=problem_responses(401, 503))
async def auth_session(
    request: Request, identity: WebIdentityDep, response: Response, _cookie: SessionCookie
) -> SessionInfo:
    """Who is logged in, and the CSRF token for state-changing requests."""
    cookie_value = request.cookies.get(identity.settings.identity.cookie_name)
    session = await identity.sessions.current(cookie_value) if cookie_value else None
    if session is None:
        raise session_expired()
    response.headers["Cache-Control"] = "no-store"
    principal = SessionAuthenticator.principal_of(session, settings=identity.settings.identity)
    name = session.claims.get("name")
    return SessionInfo(
        user=PrincipalSummary.of(principal),
        name=name if isinstance(name, str) else None,
        csrf_token=session.csrf_token,
        expires_at=datetime.fromtimestamp(session.expires_at, tz=UTC),
    )


@router.post(
    "/logout", status_code=204, response_class=Response, responses=problem_responses(401, 403)
)
async def auth_logout(
    request: Request, identity: WebIdentityDep, _cookie: SessionCookie, _csrf: CsrfHeader = None
) -> Response:
    """End the session here and at the identity provider; clears the cookie."""
    settings = identity.settings.identity
    cookie_value = request.cookies.get(settings.cookie_name)
    if not cookie_value:
        raise session_expired()
    session = await identity.sessions.current(cookie_value)
    if session is None:
        raise session_expired()
    # Logout is a state change too: without the CSRF check any site could log users out.
    identity.sessions.require_csrf(request, session)
    ended = await identity.sessions.end(cookie_value)
    await identity.provider.revoke(ended or session)
    response = Response(status_code=204)
    _clear_cookie(response, identity, name=settings.cookie_name, path="/")
    return response


@router.get("/whoami", response_model=PrincipalSummary, responses=problem_responses(401, 403, 503))
async def auth_whoami(
    request: Request,
    _cookie: SessionCookie,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_token)],
    _api_key: Annotated[str | None, Security(api_key_header)],
) -> PrincipalSummary:
    """The caller as the gateway identifies it (session cookie, bearer token or API key)."""
    principal = await current_principal(request)
    if principal is None:
        raise Unauthorized(
            "No credential: log in, or send a bearer token or API key.",
            headers={"WWW-Authenticate": 'Bearer realm="stockbot-gateway"'},
        )
    return PrincipalSummary.of(principal)
