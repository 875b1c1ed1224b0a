"""Server-side web sessions: the browser holds only an opaque cookie; tokens stay here.

Sessions (and the short-lived state of a login in progress) live in process memory by
default, or in Redis when it is configured, under `{redis_prefix}session:{id}` and
`{redis_prefix}login:{id}` as JSON with a TTL. The stored id is a SHA-256 digest of the
cookie value, so a copy of the store does not yield usable cookies.

`SessionAuthenticator` turns the cookie into a principal, refreshes the access token when it
is about to expire, and enforces the CSRF token on state-changing requests.
"""

import asyncio
import hashlib
import hmac
import secrets
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import orjson

from app.errors import Forbidden, ServiceUnavailable, Unauthorized
from app.security.authenticate import Presented
from app.security.jwt import principal_from_claims
from app.security.principal import Principal
from app.settings import IdentitySettings
from app.shared.redis import RedisClient, RedisUnavailable, SharedRedis

CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_MEMORY_SWEEP_EVERY = 256


def new_secret() -> str:
    """An unguessable token for cookies, CSRF and OAuth state (256 bits)."""
    return secrets.token_urlsafe(32)


def _digest(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode()).hexdigest()


@dataclass(slots=True)
class WebSession:
    """One logged-in browser: the provider's tokens and the validated access-token claims."""

    claims: dict[str, Any]
    access_token: str
    access_expires_at: float
    refresh_token: str | None
    id_token: str | None
    csrf_token: str
    created_at: float
    expires_at: float

    def __repr__(self) -> str:
        # Tokens never reach logs or tracebacks through a repr.
        return f"WebSession(sub={self.claims.get('sub')!r}, expires_at={self.expires_at})"


@dataclass(slots=True)
class LoginAttempt:
    """A login in progress, between the redirect to the provider and the callback."""

    state: str
    code_verifier: str
    nonce: str
    return_to: str
    redirect_uri: str

    def __repr__(self) -> str:
        return f"LoginAttempt(return_to={self.return_to!r})"


class SessionDocuments(Protocol):
    """Expiring JSON documents by namespace and id."""

    async def put(self, namespace: str, key: str, document: bytes, *, ttl_s: int) -> None: ...
    async def get(self, namespace: str, key: str) -> bytes | None: ...
    async def take(self, namespace: str, key: str) -> bytes | None: ...
    async def delete(self, namespace: str, key: str) -> None: ...


class MemoryDocuments:
    """In-process documents; right for one process, lost on restart."""

    def __init__(self) -> None:
        self._documents: dict[tuple[str, str], tuple[float, bytes]] = {}
        self._writes = 0

    async def put(self, namespace: str, key: str, document: bytes, *, ttl_s: int) -> None:
        self._writes += 1
        if self._writes % _MEMORY_SWEEP_EVERY == 0:
            self._sweep()
        self._documents[namespace, key] = (time.monotonic() + ttl_s, document)

    async def get(self, namespace: str, key: str) -> bytes | None:
        entry = self._documents.get((namespace, key))
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            self._documents.pop((namespace, key), None)
            return None
        return entry[1]

    async def take(self, namespace: str, key: str) -> bytes | None:
        document = await self.get(namespace, key)
        self._documents.pop((namespace, key), None)
        return document

    async def delete(self, namespace: str, key: str) -> None:
        self._documents.pop((namespace, key), None)

    def _sweep(self) -> None:
        now = time.monotonic()
        for expired in [k for k, (expires, _) in self._documents.items() if expires <= now]:
            del self._documents[expired]


def _store_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The session store is unavailable; try again shortly.", headers={"Retry-After": "1"}
    )


class RedisDocuments:
    """Documents in Redis, shared by every gateway process.

    A Redis outage is a 503: sessions cannot be checked, and falling back to process memory
    would split them between processes.
    """

    def __init__(self, redis: SharedRedis, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _key(self, namespace: str, key: str) -> str:
        return f"{self._prefix}{namespace}:{key}"

    async def put(self, namespace: str, key: str, document: bytes, *, ttl_s: int) -> None:
        async with _store_needed(self._redis) as client:
            await client.set(self._key(namespace, key), document, ex=max(1, ttl_s))

    async def get(self, namespace: str, key: str) -> bytes | None:
        async with _store_needed(self._redis) as client:
            value = await client.get(self._key(namespace, key))
        return value.encode() if isinstance(value, str) else value

    async def take(self, namespace: str, key: str) -> bytes | None:
        async with _store_needed(self._redis) as client:
            # GETDEL: a login state is redeemed once, even by two racing callbacks.
            value = await client.getdel(self._key(namespace, key))
        return value.encode() if isinstance(value, str) else value

    async def delete(self, namespace: str, key: str) -> None:
        async with _store_needed(self._redis) as client:
            await client.delete(self._key(namespace, key))


@asynccontextmanager
async def _store_needed(redis: SharedRedis) -> AsyncIterator[RedisClient]:
    try:
        async with redis.answering() as client:
            yield client
    except RedisUnavailable:
        raise _store_unavailable() from None


class SessionStore:
    """Web sessions and login attempts, addressed by the cookie values that name them."""

    def __init__(self, documents: SessionDocuments) -> None:
        self._documents = documents

    async def create(self, session: WebSession) -> str:
        """Store a new session; returns the cookie value that names it."""
        cookie_value = new_secret()
        await self.save(cookie_value, session)
        return cookie_value

    async def save(self, cookie_value: str, session: WebSession) -> None:
        ttl_s = int(session.expires_at - time.time())
        if ttl_s <= 0:
            await self.delete(cookie_value)
            return
        document = orjson.dumps(asdict(session))
        await self._documents.put("session", _digest(cookie_value), document, ttl_s=ttl_s)

    async def load(self, cookie_value: str) -> WebSession | None:
        document = await self._documents.get("session", _digest(cookie_value))
        if document is None:
            return None
        session = WebSession(**orjson.loads(document))
        return session if session.expires_at > time.time() else None

    async def delete(self, cookie_value: str) -> None:
        await self._documents.delete("session", _digest(cookie_value))

    async def begin_login(self, attempt: LoginAttempt, *, ttl_s: int) -> str:
        """Store a login in progress; returns the value of the pre-session cookie."""
        cookie_value = new_secret()
        document = orjson.dumps(asdict(attempt))
        await self._documents.put("login", _digest(cookie_value), document, ttl_s=ttl_s)
        return cookie_value

    async def finish_login(self, cookie_value: str) -> LoginAttempt | None:
        """The login in progress, removed so its state and verifier are used once."""
        document = await self._documents.take("login", _digest(cookie_value))
        return LoginAttempt(**orjson.loads(document)) if document is not None else None


def session_store(redis: SharedRedis | None, *, prefix: str) -> SessionStore:
    """Redis-backed when Redis is configured, in-process otherwise."""
    if redis is None:
        return SessionStore(MemoryDocuments())
    return SessionStore(RedisDocuments(redis, prefix=prefix))


class SessionEnded(Exception):
    """The provider no longer honours the session's refresh token."""


class TokenRefresher(Protocol):
    async def refresh(self, session: WebSession) -> WebSession:
        """The session with fresh tokens; `SessionEnded` or `ServiceUnavailable` otherwise."""
        ...


def session_expired() -> Unauthorized:
    return Unauthorized("The session has expired or ended; log in again at /auth/login.")


class SessionAuthenticator:
    """The web session cookie, with CSRF protection for state-changing requests."""

    def __init__(
        self, *, store: SessionStore, refresher: TokenRefresher, settings: IdentitySettings
    ) -> None:
        self._store = store
        self._refresher = refresher
        self._settings = settings
        self._refresh_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def authenticate(self, request: Presented) -> Principal | None:
        cookie_value = request.cookies.get(self._settings.cookie_name)
        # An explicit Authorization header wins: cross-site requests cannot set one, and a
        # client that sends it means that credential.
        if not cookie_value or "authorization" in request.headers:
            return None
        session = await self.current(cookie_value)
        if session is None:
            raise session_expired()
        if request.method not in SAFE_METHODS:
            self.require_csrf(request, session)
        return self.principal_of(session, settings=self._settings)

    @staticmethod
    def principal_of(session: WebSession, *, settings: IdentitySettings) -> Principal:
        return principal_from_claims(session.claims, settings=settings, credential="session")

    @staticmethod
    def require_csrf(request: Presented, session: WebSession) -> None:
        """403 unless the request carries the session's CSRF token (synchronizer token)."""
        presented = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(presented.encode(), session.csrf_token.encode()):
            raise Forbidden(
                f"A state-changing request authenticated by the session cookie must carry the "
                f"{CSRF_HEADER} header from GET /auth/session."
            )

    async def current(self, cookie_value: str) -> WebSession | None:
        """The live session named by the cookie, its access token refreshed when due."""
        session = await self._store.load(cookie_value)
        if session is None or not self._due_for_refresh(session):
            return session
        if session.refresh_token is None:
            # Without offline access the session lasts as long as its access token.
            return session if session.access_expires_at > time.time() else None
        lock = self._refresh_locks.setdefault(cookie_value, asyncio.Lock())
        async with lock:
            # Another request of this process may have refreshed while we waited.
            session = await self._store.load(cookie_value)
            if session is None or not self._due_for_refresh(session):
                return session
            try:
                refreshed = await self._refresher.refresh(session)
            except SessionEnded:
                # Another gateway process may have rotated the refresh token first; then
                # its refreshed session is the live one.
                latest = await self._store.load(cookie_value)
                if latest is not None and latest.refresh_token != session.refresh_token:
                    return latest
                await self._store.delete(cookie_value)
                return None
            except ServiceUnavailable:
                if session.access_expires_at > time.time():
                    return session
                raise
            await self._store.save(cookie_value, refreshed)
            return refreshed

    def _due_for_refresh(self, session: WebSession) -> bool:
        remaining = session.access_expires_at - time.time()
        return remaining <= self._settings.refresh_before_s

    async def end(self, cookie_value: str) -> WebSession | None:
        """Forget the session; returns what it held so its tokens can be revoked."""
        session = await self._store.load(cookie_value)
        await self._store.delete(cookie_value)
        return session
