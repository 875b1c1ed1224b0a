"""A stream's credential, confirmed again while the stream is open.

A stream outlives the request that opened it, so its credential is confirmed again every
`streams.credential_check_s` through the policy chain (`PolicyChain.confirmed_principal`:
identified as at connect, an API key confirmed not revoked; no rate limit counted): a
session that ended (logout) or expired, a bearer token whose key is gone, a revoked API key
close the stream. A bearer token's own expiry (`exp`) closes it at that moment, without the
validator's clock-skew allowance. Streams sharing a credential are confirmed once.
"""

import base64
import binascii
from dataclasses import dataclass

import orjson
from starlette.datastructures import Headers

from app.policy.context import RequestContext
from app.security.apikeys import API_KEY_HEADER
from app.security.principal import Principal
from app.traffic.deadline import Deadline

_API_KEY = API_KEY_HEADER.lower()


@dataclass(frozen=True, slots=True)
class StreamCredential:
    """What a stream presented at connect, to present again."""

    # The credential itself (authorization header, API key, cookie header), to group by.
    key: tuple[str, str, str]
    method: str
    path: str
    client_address: str
    headers: Headers
    # Wall-clock seconds when a bearer token expires; None for other credentials.
    expires_at: float | None

    @classmethod
    def of(cls, context: RequestContext, principal: Principal) -> "StreamCredential":
        headers = context.headers
        authorization = headers.get("authorization", "")
        expires_at = None
        if principal.credential == "bearer":
            expires_at = _token_expiry(authorization)
        return cls(
            key=(authorization, headers.get(_API_KEY, ""), headers.get("cookie", "")),
            method=context.method,
            path=context.path,
            client_address=context.client_address,
            headers=headers,
            expires_at=expires_at,
        )

    def context(self, *, within_s: float) -> RequestContext:
        """A fresh context presenting the same credential."""
        return RequestContext(
            method=self.method,
            path=self.path,
            client_address=self.client_address,
            headers=self.headers,
            deadline=Deadline.after_ms(max(int(within_s * 1000), 1)),
        )


def _token_expiry(authorization: str) -> float | None:
    """The `exp` claim of a bearer token the chain has just validated (so its payload is
    the provider's): read, not verified again."""
    scheme, _, token = authorization.partition(" ")
    parts = token.strip().split(".")
    if scheme.lower() != "bearer" or len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
