"""The development identity provider's realm: users, clients, signing keys and grants.

Everything lives in process memory; restarting the provider logs everyone out and
publishes fresh keys, which is what a development provider should do.
"""

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key, RSAKey, import_key
from joserfc.jws import extract_compact

GATEWAY_AUDIENCE = "stockbot-gateway"
DEMO_PASSWORD = "demo"
ACCESS_TOKEN_TTL_S = 300
ID_TOKEN_TTL_S = 300
REFRESH_TOKEN_TTL_S = 8 * 3600
CODE_TTL_S = 60
SIGNING_ALGORITHM = "RS256"


@dataclass(frozen=True, slots=True)
class DemoUser:
    username: str
    name: str
    email: str
    roles: tuple[str, ...]
    account_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Client:
    """A registered OAuth client; `secret` None makes it a public client (PKCE only)."""

    client_id: str
    secret: str | None
    grant_types: frozenset[str]
    scopes: frozenset[str]
    # Loopback redirect URIs are matched on scheme, host and path, any port (RFC 8252 §7.3).
    redirect_paths: tuple[str, ...] = ()
    redirect_uris: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    account_ids: tuple[str, ...] = ()

    def accepts_redirect(self, redirect_uri: str) -> bool:
        if redirect_uri in self.redirect_uris:
            return True
        parts = urlsplit(redirect_uri)
        return (
            parts.scheme == "http"
            and parts.hostname in {"127.0.0.1", "localhost", "::1"}
            and parts.path in self.redirect_paths
            and not parts.fragment
        )


USERS: dict[str, DemoUser] = {
    user.username: user
    for user in (
        DemoUser("alice", "Alice Trader", "alice@example.com", ("trader",), ("ACC-1001",)),
        DemoUser("bob", "Bob Viewer", "bob@example.com", ("viewer",), ("ACC-1002",)),
        DemoUser("carol", "Carol Admin", "carol@example.com", ("admin",), ("ACC-1003",)),
        # Partner developers: they sign in to the developer portal (`/portal`) and trade
        # through their consumer's API keys, never with accounts of their own.
        DemoUser("dana", "Dana Developer", "dana@partner.example", ("developer",), ()),
        DemoUser("erin", "Erin Builder", "erin@partner.example", ("developer",), ()),
    )
}

USER_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
CLIENTS: dict[str, Client] = {
    client.client_id: client
    for client in (
        Client(
            "stockbot-web",
            "web-secret",
            frozenset({"authorization_code", "refresh_token"}),
            USER_SCOPES,
            redirect_paths=("/auth/callback",),
        ),
        Client(
            "stockbot-mobile",
            None,
            frozenset({"authorization_code", "refresh_token"}),
            USER_SCOPES,
            redirect_paths=("/callback",),
            redirect_uris=("stockbot://callback",),
        ),
        Client(
            "partner-acme",
            "acme-secret",
            frozenset({"client_credentials"}),
            frozenset({"quotes:read", "candles:read", "orders:write"}),
            roles=("partner",),
            account_ids=("ACC-2001", "ACC-2002"),
        ),
    )
}


class GrantError(Exception):
    """An OAuth error response: `error` code (RFC 6749 §5.2) and a description."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass
class AuthorizationCode:
    client_id: str
    redirect_uri: str
    username: str
    scope: str
    code_challenge: str
    nonce: str | None
    session_id: str
    expires_at: float


@dataclass
class RefreshGrant:
    client_id: str
    username: str
    scope: str
    session_id: str
    expires_at: float


@dataclass
class SigningKeys:
    """The published key set; the newest key signs, retired keys disappear from the JWKS."""

    keys: dict[str, RSAKey] = field(default_factory=dict)
    current_kid: str = ""
    # Public keys published on a test's behalf: tokens it signs itself verify here.
    imported: dict[str, Key] = field(default_factory=dict)

    def rotate(self) -> str:
        kid = f"dev-{secrets.token_hex(6)}"
        self.keys[kid] = RSAKey.generate_key(
            2048, parameters={"kid": kid, "use": "sig", "alg": SIGNING_ALGORITHM}
        )
        self.current_kid = kid
        return kid

    def publish(self, public_jwk: dict[str, Any]) -> str:
        key = import_key(public_jwk)
        if key.is_private or not key.kid:
            raise ValueError("publish a public key with a kid")
        self.imported[key.kid] = key
        return key.kid

    def retire(self, kid: str) -> None:
        if self.imported.pop(kid, None) is not None:
            return
        if kid not in self.keys:
            raise KeyError(kid)
        if len(self.keys) == 1:
            raise ValueError("the last signing key cannot be retired; rotate first")
        del self.keys[kid]
        if kid == self.current_kid:
            self.current_kid = next(reversed(self.keys))

    def jwks(self) -> dict[str, Any]:
        published = [*self.keys.values(), *self.imported.values()]
        return {"keys": [key.as_dict(private=False) for key in published]}

    def sign(self, claims: dict[str, Any], *, typ: str = "JWT") -> str:
        header = {"alg": SIGNING_ALGORITHM, "kid": self.current_kid, "typ": typ}
        return jwt.encode(header, claims, self.keys[self.current_kid])

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this provider signed with a still-published key, else None."""
        try:
            kid = extract_compact(token.encode()).headers().get("kid")
            key = self.keys.get(str(kid)) or self.imported.get(str(kid))
            if key is None:
                return None
            return dict(jwt.decode(token, key, algorithms=["RS256", "ES256"]).claims)
        except (JoseError, ValueError):
            return None


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class Realm:
    """Users, clients, keys and live grants of one provider process."""

    def __init__(self) -> None:
        self.keys = SigningKeys()
        self.keys.rotate()
        self.codes: dict[str, AuthorizationCode] = {}
        self.refresh_grants: dict[str, RefreshGrant] = {}
        self.revoked_jtis: dict[str, float] = {}
        # Ended login sessions -> until when their access tokens could still be presented.
        self.ended_sessions: dict[str, float] = {}

    # -- clients ---------------------------------------------------------------------------

    def authenticate_client(
        self, client_id: str | None, secret: str | None, *, grant_type: str
    ) -> Client:
        client = CLIENTS.get(client_id or "")
        if client is None:
            raise GrantError("invalid_client", "unknown client", status=401)
        if client.secret is not None and not (
            secret is not None and secrets.compare_digest(secret, client.secret)
        ):
            raise GrantError("invalid_client", "client authentication failed", status=401)
        if grant_type and grant_type not in client.grant_types:
            raise GrantError("unauthorized_client", f"client may not use {grant_type}")
        return client

    # -- authorization code ----------------------------------------------------------------

    def issue_code(
        self,
        *,
        client: Client,
        redirect_uri: str,
        user: DemoUser,
        scope: str,
        code_challenge: str,
        nonce: str | None,
    ) -> str:
        self._forget_expired()
        code = secrets.token_urlsafe(32)
        self.codes[code] = AuthorizationCode(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            username=user.username,
            scope=scope,
            code_challenge=code_challenge,
            nonce=nonce,
            session_id=secrets.token_hex(8),
            expires_at=time.time() + CODE_TTL_S,
        )
        return code

    def redeem_code(
        self,
        *,
        client: Client,
        code: str,
        redirect_uri: str | None,
        code_verifier: str | None,
        issuer: str,
    ) -> dict[str, Any]:
        # Single use: the code is gone whether or not the exchange succeeds.
        grant = self.codes.pop(code, None)
        if grant is None or grant.expires_at < time.time():
            raise GrantError("invalid_grant", "authorization code is invalid or expired")
        if grant.client_id != client.client_id:
            raise GrantError("invalid_grant", "authorization code was issued to another client")
        if redirect_uri != grant.redirect_uri:
            raise GrantError("invalid_grant", "redirect_uri does not match the authorization")
        # RFC 7636 §4.1: 43 to 128 characters, so a verifier cannot be guessed.
        if not code_verifier or not 43 <= len(code_verifier) <= 128:
            raise GrantError("invalid_grant", "code_verifier must be 43 to 128 characters")
        if not secrets.compare_digest(pkce_challenge(code_verifier), grant.code_challenge):
            raise GrantError("invalid_grant", "code_verifier does not match the code_challenge")
        user = USERS[grant.username]
        return self._user_tokens(
            client=client,
            user=user,
            scope=grant.scope,
            session_id=grant.session_id,
            nonce=grant.nonce,
            issuer=issuer,
        )

    # -- refresh tokens --------------------------------------------------------------------

    def refresh(self, *, client: Client, refresh_token: str, issuer: str) -> dict[str, Any]:
        # Rotation: the presented refresh token is spent; a replay of it fails.
        grant = self.refresh_grants.pop(refresh_token, None)
        if grant is None or grant.expires_at < time.time():
            raise GrantError("invalid_grant", "refresh token is invalid, expired or revoked")
        if grant.client_id != client.client_id:
            raise GrantError("invalid_grant", "refresh token was issued to another client")
        return self._user_tokens(
            client=client,
            user=USERS[grant.username],
            scope=grant.scope,
            session_id=grant.session_id,
            nonce=None,
            issuer=issuer,
        )

    def revoke(self, token: str, *, client: Client) -> None:
        grant = self.refresh_grants.get(token)
        if grant is not None:
            if grant.client_id == client.client_id:
                del self.refresh_grants[token]
            return
        claims = self.keys.verify(token)
        if claims is not None and claims.get("client_id") == client.client_id:
            self.revoked_jtis[str(claims.get("jti"))] = float(claims.get("exp", 0))

    def end_session(self, session_id: str) -> int:
        """Revoke every token of one login session (its access tokens stop introspecting as
        active); returns how many refresh tokens it held."""
        spent = [t for t, g in self.refresh_grants.items() if g.session_id == session_id]
        for token in spent:
            del self.refresh_grants[token]
        self.ended_sessions[session_id] = time.time() + ACCESS_TOKEN_TTL_S
        return len(spent)

    # -- client credentials ----------------------------------------------------------------

    def client_credentials(
        self, *, client: Client, scope: str | None, issuer: str
    ) -> dict[str, Any]:
        requested = set(scope.split()) if scope else set(client.scopes)
        if not requested <= client.scopes:
            extra = " ".join(sorted(requested - client.scopes))
            raise GrantError("invalid_scope", f"client may not request: {extra}")
        granted = " ".join(sorted(requested))
        claims = self.access_claims(
            issuer=issuer,
            subject=client.client_id,
            client_id=client.client_id,
            scope=granted,
            roles=client.roles,
            account_ids=client.account_ids,
        )
        return {
            "access_token": self.keys.sign(claims, typ="at+jwt"),
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_TTL_S,
            "scope": granted,
        }

    # -- tokens ----------------------------------------------------------------------------

    def access_claims(
        self,
        *,
        issuer: str,
        subject: str,
        client_id: str,
        scope: str,
        roles: tuple[str, ...],
        account_ids: tuple[str, ...],
        ttl_s: int = ACCESS_TOKEN_TTL_S,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": GATEWAY_AUDIENCE,
            "sub": subject,
            "client_id": client_id,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
            "jti": secrets.token_hex(16),
            "scope": scope,
            "roles": list(roles),
            "account_ids": list(account_ids),
        }
        if session_id is not None:
            claims["sid"] = session_id
        return claims

    def _user_tokens(
        self,
        *,
        client: Client,
        user: DemoUser,
        scope: str,
        session_id: str,
        nonce: str | None,
        issuer: str,
    ) -> dict[str, Any]:
        claims = self.access_claims(
            issuer=issuer,
            subject=user.username,
            client_id=client.client_id,
            scope=scope,
            roles=user.roles,
            account_ids=user.account_ids,
            session_id=session_id,
        )
        refresh_token = secrets.token_urlsafe(32)
        self.refresh_grants[refresh_token] = RefreshGrant(
            client_id=client.client_id,
            username=user.username,
            scope=scope,
            session_id=session_id,
            expires_at=time.time() + REFRESH_TOKEN_TTL_S,
        )
        answer: dict[str, Any] = {
            "access_token": self.keys.sign(claims, typ="at+jwt"),
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_TTL_S,
            "refresh_token": refresh_token,
            "scope": scope,
        }
        if "openid" in scope.split():
            answer["id_token"] = self.id_token(
                issuer=issuer, client=client, user=user, session_id=session_id, nonce=nonce
            )
        return answer

    def id_token(
        self,
        *,
        issuer: str,
        client: Client,
        user: DemoUser,
        session_id: str,
        nonce: str | None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": client.client_id,
            "sub": user.username,
            "iat": now,
            "exp": now + ID_TOKEN_TTL_S,
            "auth_time": now,
            "sid": session_id,
            "name": user.name,
            "email": user.email,
        }
        if nonce:
            claims["nonce"] = nonce
        return self.keys.sign(claims)

    def active_access_claims(self, token: str) -> dict[str, Any] | None:
        """Claims of an unexpired, unrevoked access token signed by a published key."""
        claims = self.keys.verify(token)
        if claims is None or claims.get("aud") != GATEWAY_AUDIENCE:
            return None
        if float(claims.get("exp", 0)) <= time.time() or claims.get("jti") in self.revoked_jtis:
            return None
        if claims.get("sid") in self.ended_sessions:
            return None
        return claims

    def _forget_expired(self) -> None:
        now = time.time()
        for code in [c for c, g in self.codes.items() if g.expires_at < now]:
            del self.codes[code]
        for token in [t for t, g in self.refresh_grants.items() if g.expires_at < now]:
            del self.refresh_grants[token]
        for jti in [j for j, exp in self.revoked_jtis.items() if exp < now]:
            del self.revoked_jtis[jti]
        for sid in [s for s, until in self.ended_sessions.items() if until < now]:
            del self.ended_sessions[sid]
