"""The gateway as the identity provider's confidential web client (OpenID Connect).

Authorization-code flow with PKCE (S256): the authorization URL, the code exchange, token
refresh and revocation. Authlib prepares the protocol messages; they travel over the one
HTTP client the web identity injects (bounded by `provider_timeout_s`), never over a
client built per call.
"""

import hmac
import logging
import time
from typing import Any

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from app.errors import BadRequest, ServiceUnavailable
from app.security.jwt import InvalidToken, ProviderMetadata, TokenValidator, TrustedIssuer
from app.security.sessions import LoginAttempt, SessionEnded, WebSession, new_secret
from app.settings import Settings

logger = logging.getLogger("gateway.security.oidc")

# Token endpoint answers are JSON objects (RFC 6749, section 5.1).
_TOKEN_REQUEST_HEADERS = {"Accept": "application/json"}


class ProviderRefused(Exception):
    """The provider answered a token request with an OAuth error (RFC 6749, section 5.2)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class ProviderClient:
    """The gateway as the provider's confidential web client: code exchange, refresh, revoke."""

    def __init__(
        self,
        *,
        issuer: TrustedIssuer,
        validator: TokenValidator,
        settings: Settings,
        http: httpx.AsyncClient,
    ) -> None:
        self._issuer = issuer
        self._validator = validator
        self._identity = settings.identity
        self._http = http
        # client_secret_basic, at the token and at the revocation endpoint.
        self._client_auth = httpx.BasicAuth(
            settings.identity.web_client_id,
            settings.identity.web_client_secret.get_secret_value(),
        )

    async def _metadata(self) -> ProviderMetadata:
        metadata = await self._issuer.metadata()
        if metadata.authorization_endpoint is None or metadata.token_endpoint is None:
            raise ServiceUnavailable("The identity provider does not offer the web login flow.")
        return metadata

    async def authorization_url(self, attempt: LoginAttempt) -> str:
        metadata = await self._metadata()
        assert metadata.authorization_endpoint is not None
        url = prepare_grant_uri(
            metadata.authorization_endpoint,
            client_id=self._identity.web_client_id,
            response_type="code",
            redirect_uri=attempt.redirect_uri,
            scope=self._identity.web_scopes,
            state=attempt.state,
            nonce=attempt.nonce,
            code_challenge=create_s256_code_challenge(attempt.code_verifier),
            code_challenge_method="S256",
        )
        return str(url)

    async def exchange(self, attempt: LoginAttempt, *, code: str) -> WebSession:
        """Redeem the authorization code and validate what comes back."""
        metadata = await self._metadata()
        assert metadata.token_endpoint is not None
        try:
            token = await self._token_request(
                metadata.token_endpoint,
                {
                    "grant_type": "authorization_code",
                    "redirect_uri": attempt.redirect_uri,
                    "code": code,
                    "code_verifier": attempt.code_verifier,
                },
            )
        except ProviderRefused as refused:
            logger.info("code exchange refused by the provider: %s", refused.error)
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
        assert metadata.token_endpoint is not None
        try:
            token = await self._token_request(
                metadata.token_endpoint,
                {"grant_type": "refresh_token", "refresh_token": session.refresh_token},
            )
        except ProviderRefused as refused:
            if refused.error == "invalid_grant":
                raise SessionEnded from None
            logger.warning("token refresh refused by the provider: %s", refused.error)
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
            for token, hint in tokens:
                if token is not None:
                    # RFC 7009: the provider answers 200 whether or not it knew the token.
                    await self._http.post(
                        metadata.revocation_endpoint,
                        data={"token": token, "token_type_hint": hint},
                        auth=self._client_auth,
                    )
        except httpx.HTTPError as error:
            logger.warning("token revocation failed: %s", type(error).__name__)

    async def _token_request(self, endpoint: str, form: dict[str, str]) -> dict[str, Any]:
        """POST to the token endpoint; the token response, or `ProviderRefused`.

        A 5xx or a body that is not a JSON object raises `httpx.HTTPStatusError` (or
        `ValueError` when the status says success), as Authlib's client did.
        """
        response = await self._http.post(
            endpoint, data=form, headers=_TOKEN_REQUEST_HEADERS, auth=self._client_auth
        )
        if response.status_code >= 500:
            response.raise_for_status()
        try:
            token = response.json()
        except ValueError:
            token = None
        if not isinstance(token, dict):
            response.raise_for_status()
            raise ValueError(f"Token endpoint answered HTTP {response.status_code} without JSON.")
        if "error" in token:
            raise ProviderRefused(str(token["error"]))
        return token

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
