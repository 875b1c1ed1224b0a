"""Token introspection (RFC 7662): whether the provider still honours a bearer token.

A signed access token verifies until it expires, whatever the provider has since revoked;
only the provider can say. Asking costs a round trip to it, so only the routes that place or
cancel orders ask (`AccessRule.introspect`, with `identity.introspect_orders` on), and each
answer is kept for `identity.introspection_cache_s` seconds per token (under the token's
SHA-256 digest, never the token) in a bounded cache. An inactive token is a 401; no answer
(unreachable, slow, an error, no introspection endpoint) is a 503 with `Retry-After`: an
order never goes out on a token nobody could vouch for.
"""

import hashlib
import logging
import time
from collections import OrderedDict

import httpx
import orjson

from app.errors import ServiceUnavailable
from app.security.authenticate import Presented
from app.security.jwt import TrustedIssuer, invalid_token, presented_bearer_token
from app.settings import IdentitySettings
from app.traffic.deadline import Deadline

logger = logging.getLogger("gateway.security.introspection")

# Enough for every token in use at once; past it the oldest answer is forgotten first.
DEFAULT_CACHED_TOKENS = 10_000


def _cannot_say(detail: str) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"{detail}; orders need the provider to confirm the token, retry shortly.",
        headers={"Retry-After": "1"},
    )


class TokenIntrospection:
    """The provider's word on a token, asked at its introspection endpoint as the gateway's
    web client (client_secret_basic), and remembered for a few seconds."""

    def __init__(
        self,
        *,
        issuer: TrustedIssuer,
        settings: IdentitySettings,
        http: httpx.AsyncClient,
        max_cached: int = DEFAULT_CACHED_TOKENS,
    ) -> None:
        self._issuer = issuer
        self._settings = settings
        self._http = http
        self._client_auth = httpx.BasicAuth(
            settings.web_client_id, settings.web_client_secret.get_secret_value()
        )
        self._max_cached = max_cached
        # Token digest -> (active, monotonic time the answer is good until), oldest first.
        self._answers: OrderedDict[bytes, tuple[bool, float]] = OrderedDict()

    async def confirm_active(self, request: Presented, *, deadline: Deadline | None) -> None:
        """Return when the provider says the request's bearer token is active; 401 when it
        says it is not, 503 when it cannot say before the provider timeout or the deadline."""
        token = presented_bearer_token(request)
        if not token:
            raise invalid_token("token is missing")
        digest = hashlib.sha256(token.encode()).digest()
        active = self._remembered(digest)
        if active is None:
            active = await self._ask(token, deadline)
            self._remember(digest, active)
        if not active:
            raise invalid_token("token is no longer active at the identity provider")

    def _remembered(self, digest: bytes) -> bool | None:
        now = time.monotonic()
        # Answers are kept oldest first and all for the same time: expired ones lead.
        while self._answers:
            oldest = next(iter(self._answers))
            if self._answers[oldest][1] > now:
                break
            del self._answers[oldest]
        answer = self._answers.get(digest)
        return answer[0] if answer is not None else None

    def _remember(self, digest: bytes, active: bool) -> None:
        ttl = self._settings.introspection_cache_s
        if ttl <= 0:
            return
        self._answers[digest] = (active, time.monotonic() + ttl)
        self._answers.move_to_end(digest)
        while len(self._answers) > self._max_cached:
            self._answers.popitem(last=False)

    async def _ask(self, token: str, deadline: Deadline | None) -> bool:
        endpoint = await self._endpoint()
        timeout = self._settings.provider_timeout_s
        if deadline is not None:
            timeout = min(timeout, deadline.remaining_s())
        if timeout <= 0:
            raise _cannot_say("The request's deadline passed before the token was confirmed")
        try:
            response = await self._http.post(
                endpoint,
                data={"token": token, "token_type_hint": "access_token"},
                auth=self._client_auth,
                headers={"Accept": "application/json"},
                timeout=timeout,
            )
        except httpx.HTTPError as error:
            logger.warning("token introspection failed: %s", type(error).__name__)
            raise _cannot_say("The identity provider did not answer") from None
        if response.status_code != 200:
            logger.warning("token introspection answered HTTP %s", response.status_code)
            raise _cannot_say("The identity provider could not check the token")
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            answer = None
        active = answer.get("active") if isinstance(answer, dict) else None
        if not isinstance(active, bool):
            logger.warning("token introspection answer has no boolean 'active'")
            raise _cannot_say("The identity provider could not check the token")
        return active

    async def _endpoint(self) -> str:
        try:
            metadata = await self._issuer.metadata()
        except ServiceUnavailable:
            raise _cannot_say("The identity provider is unavailable") from None
        if metadata.introspection_endpoint is None:
            logger.error("identity.introspect_orders is on; the provider offers no introspection")
            raise _cannot_say("The identity provider does not offer token introspection")
        return metadata.introspection_endpoint
