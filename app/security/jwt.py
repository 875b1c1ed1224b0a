"""Bearer tokens: the trusted issuer's signing keys (JWKS) and access-token validation.

The gateway is configured with the issuer's discovery URL only; the issuer name and the JWKS
address come from the discovery document. Keys are fetched lazily, cached, re-read when
they age out and refetched on an unknown key id (at most once per cooldown). Keys that
were once fetched stay in use while the provider is down; if none was ever fetched the
gateway cannot decide and answers 503 rather than 401.
"""

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import httpx
import orjson
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import ECKey, KeySet, RSAKey
from joserfc.jws import JWSRegistry, extract_compact, validate_compact
from pydantic import BaseModel, ValidationError

from app.errors import Forbidden, ServiceUnavailable, Unauthorized
from app.security.authenticate import Presented
from app.security.principal import Credential, Principal, PrincipalKind
from app.settings import IdentitySettings
from app.store.snapshot import ConfigSnapshot, ConfigStore

logger = logging.getLogger("gateway.security.jwt")

VerificationKey = RSAKey | ECKey
_KEY_TYPES: dict[str, type[RSAKey] | type[ECKey]] = {"RS": RSAKey, "PS": RSAKey, "ES": ECKey}
_DISCOVERY_SUFFIX = "/.well-known/openid-configuration"


class InvalidToken(Exception):
    """A bearer token that must be refused; the message is safe to show (never the token)."""


class ProviderMetadata(BaseModel):
    """The parts of the OpenID Connect discovery document the gateway uses."""

    issuer: str
    jwks_uri: str
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    revocation_endpoint: str | None = None
    introspection_endpoint: str | None = None
    end_session_endpoint: str | None = None


class ProviderUnavailable(ServiceUnavailable):
    """The identity provider could not be reached and nothing usable is cached."""


class TrustedIssuer:
    """The issuer's discovery document and signing keys, cached for the process."""

    def __init__(self, *, settings: IdentitySettings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http
        self._metadata: ProviderMetadata | None = None
        self._keys: dict[str, VerificationKey] = {}
        self._keys_fetched_at: float | None = None
        self._last_attempt: float | None = None
        self._lock = asyncio.Lock()

    async def metadata(self) -> ProviderMetadata:
        """The discovery document, fetched once; 503 while it cannot be fetched."""
        if self._metadata is not None:
            return self._metadata
        async with self._lock:
            if self._metadata is None:
                self._metadata = await self._fetch_metadata()
        return self._metadata

    async def signing_key(self, kid: str) -> VerificationKey | None:
        """The published key with this id, or None when the issuer does not publish it."""
        now = time.monotonic()
        fresh = (
            self._keys_fetched_at is not None
            and now - self._keys_fetched_at < self._settings.jwks_max_age_s
        )
        if kid in self._keys and (fresh or self._lock.locked()):
            # A known key that aged out keeps working while another request refreshes the
            # set, so a slow provider delays one request, not all of them.
            return self._keys[kid]
        async with self._lock:
            if self._may_refetch(kid):
                await self._refresh_keys()
        if self._keys_fetched_at is None:
            raise ProviderUnavailable(
                "The identity provider's signing keys are unavailable; try again shortly.",
                headers={"Retry-After": str(max(1, int(self._settings.jwks_refetch_cooldown_s)))},
            )
        return self._keys.get(kid)

    def _may_refetch(self, kid: str) -> bool:
        # Re-checked under the lock: a concurrent request may have just refreshed.
        now = time.monotonic()
        if self._keys_fetched_at is not None:
            age = now - self._keys_fetched_at
            if kid in self._keys and age < self._settings.jwks_max_age_s:
                return False
        cooling = (
            self._last_attempt is not None
            and now - self._last_attempt < self._settings.jwks_refetch_cooldown_s
        )
        return not cooling

    async def _refresh_keys(self) -> None:
        self._last_attempt = time.monotonic()
        try:
            metadata = self._metadata or await self._fetch_metadata()
            self._metadata = metadata
            document = await self._get_json(metadata.jwks_uri)
            keys = self._usable_keys(document)
        except ProviderUnavailable:
            # Last good keys stay in use through a provider outage.
            logger.warning("JWKS refresh failed; keeping %d cached keys", len(self._keys))
            return
        self._keys = keys
        self._keys_fetched_at = time.monotonic()

    def _usable_keys(self, document: Mapping[str, Any]) -> dict[str, VerificationKey]:
        try:
            key_set = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as error:
            logger.warning("JWKS document rejected: %s", type(error).__name__)
            raise ProviderUnavailable("The identity provider published unusable keys.") from None
        usable: dict[str, VerificationKey] = {}
        for key in key_set.keys:
            if not isinstance(key, RSAKey | ECKey) or key.kid is None:
                continue
            if key.get("use") not in (None, "sig") or key.is_private:
                continue
            usable[key.kid] = key
        return usable

    async def _fetch_metadata(self) -> ProviderMetadata:
        document = await self._get_json(self._settings.discovery_url)
        try:
            metadata = ProviderMetadata.model_validate(document)
        except ValidationError:
            raise ProviderUnavailable(
                "The identity provider's discovery document is invalid."
            ) from None
        # OpenID Connect Discovery §4.3: the document must name the issuer it was fetched for.
        expected = self._settings.discovery_url.removesuffix(_DISCOVERY_SUFFIX)
        if metadata.issuer.rstrip("/") != expected.rstrip("/"):
            logger.error(
                "discovery document names issuer %s, expected %s", metadata.issuer, expected
            )
            raise ProviderUnavailable("The identity provider's discovery document is invalid.")
        return metadata

    async def _get_json(self, url: str) -> Mapping[str, Any]:
        try:
            response = await self._http.get(url, timeout=self._settings.provider_timeout_s)
        except httpx.HTTPError as error:
            logger.warning("identity provider unreachable at %s: %s", url, type(error).__name__)
            raise ProviderUnavailable("The identity provider is unreachable.") from None
        if response.status_code != 200:
            logger.warning("identity provider answered %s for %s", response.status_code, url)
            raise ProviderUnavailable("The identity provider is unavailable.")
        try:
            document = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ProviderUnavailable("The identity provider answered with invalid JSON.") from None
        if not isinstance(document, dict):
            raise ProviderUnavailable("The identity provider answered with invalid JSON.")
        return document


# Tokens whose signature was verified, kept with the key that verified it (see
# `TokenValidator`); the oldest goes first when it is full.
VERIFIED_TOKENS = 2048


class TokenValidator:
    """Checks a compact JWS against the trusted issuer: algorithm, key, signature, claims.

    A client sends the same token with every request until it expires, and the signature
    check (an RSA or ECDSA verification, with the token's parsing) is most of what a
    validation costs. So a token whose signature was verified is kept, by its exact text,
    with its key id, the key object that verified it and its claims. A later request with
    the same text skips the parsing and the signature check only while the issuer still
    publishes that very key object under that id (a refreshed key set holds new objects, a
    retired key none: the token is then checked in full again); the claims (expiry, not
    before, issuer, audience) are checked on every request.
    """

    def __init__(self, *, issuer: TrustedIssuer, settings: IdentitySettings) -> None:
        self._issuer = issuer
        self._settings = settings
        # One registry per allowed algorithm, built once: each admits exactly that algorithm.
        self._registries = {
            algorithm: JWSRegistry(algorithms=[algorithm]) for algorithm in settings.algorithms
        }
        self._verified: dict[str, tuple[str, VerificationKey, dict[str, Any]]] = {}

    async def validate(self, token: str, *, audience: str | None = None) -> dict[str, Any]:
        """The token's claims; `InvalidToken` when it must be refused."""
        verified = self._verified.get(token)
        if verified is not None:
            kept_kid, kept_key, kept_claims = verified
            if await self._issuer.signing_key(kept_kid) is kept_key:
                return await self._checked(token, kept_claims, audience)
            self._verified.pop(token, None)
        settings = self._settings
        if len(token) > settings.max_token_bytes:
            raise InvalidToken("token is too large")
        if token.count(".") != 2:
            raise InvalidToken("token is not a signed JWT")
        try:
            signed = extract_compact(token.encode("ascii"))
            header = signed.headers()
        except (JoseError, ValueError, UnicodeError, TypeError):
            raise InvalidToken("token is malformed") from None
        # The allow-list is ours; the token's own "alg" only selects within it. Key-carrying
        # headers (jku, x5u, jwk, x5c) are never consulted: keys come from the issuer's JWKS.
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in settings.algorithms:
            raise InvalidToken("token algorithm is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("token has no key id")
        key = await self._issuer.signing_key(kid)
        if key is None:
            raise InvalidToken("token is signed with an unknown key")
        if not isinstance(key, _KEY_TYPES[algorithm[:2]]) or key.alg not in (None, algorithm):
            raise InvalidToken("token algorithm does not match its key")
        try:
            if not validate_compact(signed, key, registry=self._registries[algorithm]):
                raise InvalidToken("token signature is invalid")
            claims = orjson.loads(signed.payload or b"")
        except BadSignatureError:
            raise InvalidToken("token signature is invalid") from None
        except (JoseError, ValueError, TypeError):
            raise InvalidToken("token is malformed") from None
        if not isinstance(claims, dict):
            raise InvalidToken("token is malformed")
        if len(self._verified) >= VERIFIED_TOKENS:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (kid, key, claims)
        return await self._checked(token, claims, audience)

    async def _checked(
        self, token: str, claims: dict[str, Any], audience: str | None
    ) -> dict[str, Any]:
        """`claims` (a copy: the kept ones stay as verified) once they pass the policy; a
        token refused for its claims is forgotten."""
        metadata = await self._issuer.metadata()
        try:
            self._check_claims(
                claims, issuer=metadata.issuer, audience=audience or self._settings.audience
            )
        except InvalidToken:
            self._verified.pop(token, None)
            raise
        return dict(claims)

    def _check_claims(self, claims: dict[str, Any], *, issuer: str, audience: str) -> None:
        registry = jwt.JWTClaimsRegistry(
            leeway=self._settings.clock_skew_s,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise InvalidToken("token has expired") from None
        except MissingClaimError as error:
            raise InvalidToken(f"token lacks required claims: {error.claim}") from None
        except JoseError as error:
            claim = getattr(error, "claim", None)
            if claim == "nbf":
                raise InvalidToken("token is not valid yet") from None
            if claim == "iat":
                raise InvalidToken("token was issued in the future") from None
            raise InvalidToken(f"token claim {claim or 'value'} is not accepted") from None


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [item for item in value if isinstance(item, str)]
    return []


def principal_from_claims(
    claims: Mapping[str, Any], *, settings: IdentitySettings, credential: Credential
) -> Principal:
    """The caller named by validated token claims (claim names come from the settings)."""
    subject = str(claims["sub"])
    client_id = claims.get("client_id")
    # RFC 9068 §2.2: a client-credentials token's subject is the client itself.
    kind: PrincipalKind = "consumer" if client_id is not None and client_id == subject else "user"
    extra = {"client_id": str(client_id)} if client_id is not None else {}
    return Principal(
        subject=subject,
        kind=kind,
        credential=credential,
        roles=frozenset(_strings(claims.get(settings.roles_claim))),
        scopes=frozenset(_strings(claims.get(settings.scopes_claim))),
        account_ids=tuple(_strings(claims.get(settings.account_claim))),
        extra=extra,
    )


def presented_bearer_token(request: Presented) -> str | None:
    """The token of `Authorization: Bearer <token>` ("" when empty); None for no such header."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def invalid_token(description: str) -> Unauthorized:
    """401 with RFC 6750 challenge; the description never contains the token."""
    return Unauthorized(
        f"The bearer token was rejected: {description}.",
        headers={
            "WWW-Authenticate": (f'Bearer error="invalid_token", error_description="{description}"')
        },
    )


def as_linked_consumer(principal: Principal, snapshot: ConfigSnapshot) -> Principal:
    """A client-credentials principal as the consumer its client is linked to
    (`consumers.oauth_client_id`), so the consumer's plan limits, quota and accounts apply
    to the token as they do to the consumer's API keys. Unlinked clients and users are
    returned unchanged (a partner route refuses an unlinked client: `confirm_linked_client`);
    a linked but disabled consumer is refused (401).

    The accounts are the consumer's, never a claim's: the gateway's record says what a
    partner may act on. The scopes are those the provider granted the token that the plan
    also grants: the plan is what the partner may do through the gateway, with an API key or
    a token alike; a token can narrow it, never widen it.
    """
    client_id = principal.extra.get("client_id")
    if principal.kind != "consumer" or client_id is None:
        return principal
    consumer_id = snapshot.consumers_by_client.get(client_id)
    if consumer_id is None:
        return principal
    consumer = snapshot.consumers.get(consumer_id)
    if consumer is None or not consumer.enabled:
        raise invalid_token("the client's consumer is disabled")
    plan = snapshot.plans.get(consumer.plan) if consumer.plan is not None else None
    return replace(
        principal,
        scopes=principal.scopes & plan.scopes if plan is not None else frozenset(),
        consumer_id=consumer.consumer_id,
        plan=consumer.plan,
        account_ids=consumer.account_ids,
        extra={**principal.extra, "consumer": consumer.name},
    )


def confirm_linked_client(principal: Principal) -> None:
    """403 for a client-credentials token whose client no consumer names: a partner route
    serves consumers, and such a token has no plan, quota or accounts of the gateway's to
    act under. Named in the answer, as it is an admin's fix, not the caller's."""
    if principal.kind != "consumer" or principal.consumer_id is not None:
        return
    client_id = principal.extra.get("client_id", principal.subject)
    raise Forbidden(
        f"The OAuth client '{client_id}' is not linked to a partner consumer; an admin links "
        f'it with PATCH /admin/v1/consumers/{{id}} {{"oauth_client_id": "{client_id}"}}.',
        extra={"missing_link": "consumer", "client_id": client_id},
    )


class BearerAuthenticator:
    """`Authorization: Bearer <JWT>` from the trusted issuer; a client-credentials token of a
    client linked to a consumer acts as that consumer (see `as_linked_consumer`)."""

    def __init__(
        self, *, validator: TokenValidator, settings: IdentitySettings, config: ConfigStore
    ) -> None:
        self._validator = validator
        self._settings = settings
        self._config = config

    async def authenticate(self, request: Presented) -> Principal | None:
        token = presented_bearer_token(request)
        if token is None:
            return None
        if not token:
            raise invalid_token("token is missing")
        try:
            claims = await self._validator.validate(token)
        except InvalidToken as error:
            raise invalid_token(str(error)) from None
        principal = principal_from_claims(claims, settings=self._settings, credential="bearer")
        return as_linked_consumer(principal, self._config.current)
