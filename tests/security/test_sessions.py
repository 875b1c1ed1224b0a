"""The server-side session store, in process and on the real Redis, and sessions shared by
several gateway processes."""

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from app.security.sessions import (
    LoginAttempt,
    MemoryDocuments,
    RedisDocuments,
    SessionAuthenticator,
    SessionEnded,
    SessionStore,
    WebSession,
)
from app.settings import IdentitySettings, Settings
from backends.launcher import Platform
from tests.fixtures.gateway import running_gateway
from tests.fixtures.identity import browser_login
from tests.fixtures.redis import PrefixedRedis, RedisServer, prefixed_redis

COOKIE = "stockbot_session"


@pytest.fixture
async def redis() -> AsyncIterator[PrefixedRedis]:
    async with prefixed_redis() as prefixed:
        yield prefixed


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    if request.param == "memory":
        yield SessionStore(MemoryDocuments())
        return
    async with prefixed_redis() as prefixed:
        yield SessionStore(RedisDocuments(prefixed.shared, prefix=prefixed.prefix))


def web_session(*, lifetime_s: float = 3600) -> WebSession:
    now = time.time()
    return WebSession(
        claims={"sub": "alice", "roles": ["trader"], "account_ids": ["ACC-1001"]},
        access_token="access.token.value",
        access_expires_at=now + 300,
        refresh_token="refresh-token-value",
        id_token=None,
        csrf_token="csrf-token-value",
        created_at=now,
        expires_at=now + lifetime_s,
    )


def login_attempt() -> LoginAttempt:
    return LoginAttempt(
        state="state-value",
        code_verifier="verifier-value",
        nonce="nonce-value",
        return_to="/web/v1/dashboard",
        redirect_uri="http://127.0.0.1:8000/auth/callback",
    )


async def test_a_session_round_trips_and_is_deleted(store: SessionStore) -> None:
    session = web_session()
    cookie = await store.create(session)

    loaded = await store.load(cookie)
    await store.delete(cookie)

    assert loaded == session
    assert await store.load(cookie) is None
    assert await store.load("some-other-cookie") is None


async def test_an_expired_session_is_gone(store: SessionStore) -> None:
    session = web_session()
    cookie = await store.create(session)
    session.expires_at = time.time() - 1

    await store.save(cookie, session)

    assert await store.load(cookie) is None


async def test_a_login_attempt_is_redeemed_once(store: SessionStore) -> None:
    cookie = await store.begin_login(login_attempt(), ttl_s=60)

    first = await store.finish_login(cookie)
    second = await store.finish_login(cookie)

    assert first == login_attempt()
    assert second is None


async def test_racing_callbacks_redeem_a_login_attempt_once(store: SessionStore) -> None:
    cookie = await store.begin_login(login_attempt(), ttl_s=60)

    results = await asyncio.gather(*(store.finish_login(cookie) for _ in range(5)))

    assert sum(result is not None for result in results) == 1


async def test_a_login_attempt_expires(store: SessionStore) -> None:
    cookie = await store.begin_login(login_attempt(), ttl_s=1)

    await asyncio.sleep(1.1)

    assert await store.finish_login(cookie) is None


def test_reprs_never_show_tokens() -> None:
    text = repr(web_session()) + repr(login_attempt())

    for secret in ("access.token", "refresh-token", "csrf-token", "verifier-value", "state-value"):
        assert secret not in text


async def test_redis_keys_are_prefixed_digests_with_a_ttl(redis: PrefixedRedis) -> None:
    store = SessionStore(RedisDocuments(redis.shared, prefix=redis.prefix))

    cookie = await store.create(web_session(lifetime_s=600))

    key = f"{redis.prefix}session:{hashlib.sha256(cookie.encode()).hexdigest()}"
    keys = [k.decode() async for k in redis.client.scan_iter(match=f"{redis.prefix}*")]
    assert keys == [key]
    assert cookie not in key
    assert 590 <= await redis.client.ttl(key) <= 600
    document = orjson.loads(await redis.client.get(key))
    assert document["claims"]["sub"] == "alice"


async def test_a_redis_session_is_shared_by_gateway_processes(
    settings: Settings, redis: PrefixedRedis
) -> None:
    shared = settings.model_copy(update={"redis_url": redis.url, "redis_prefix": redis.prefix})
    async with (
        running_gateway(shared) as first,
        running_gateway(shared) as second,
        httpx.AsyncClient(base_url=first.url, follow_redirects=True) as browser,
    ):
        await browser_login(browser, username="bob")
        cookie = browser.cookies[COOKIE]

        elsewhere = await second.client.get(
            "/auth/session", headers={"Cookie": f"{COOKIE}={cookie}"}
        )

    assert elsewhere.status_code == 200, elsewhere.text
    assert elsewhere.json()["user"]["subject"] == "bob"


async def test_an_in_process_session_is_known_only_to_its_gateway(settings: Settings) -> None:
    async with (
        running_gateway(settings) as first,
        running_gateway(settings) as second,
        httpx.AsyncClient(base_url=first.url, follow_redirects=True) as browser,
    ):
        await browser_login(browser, username="bob")
        cookie = browser.cookies[COOKIE]

        here = await first.client.get("/auth/session", headers={"Cookie": f"{COOKIE}={cookie}"})
        elsewhere = await second.client.get(
            "/auth/session", headers={"Cookie": f"{COOKIE}={cookie}"}
        )

    assert here.status_code == 200
    assert elsewhere.status_code == 401


async def test_concurrent_requests_refresh_a_due_token_once(
    settings: Settings, redis: PrefixedRedis, platform: Platform
) -> None:
    shared = settings.model_copy(update={"redis_url": redis.url, "redis_prefix": redis.prefix})
    async with (
        running_gateway(shared) as gateway,
        httpx.AsyncClient(base_url=gateway.url, follow_redirects=True) as browser,
    ):
        await browser_login(browser, username="alice")
        # Bring the stored access token within the 60 s refresh window.
        [key] = [k async for k in redis.client.scan_iter(match=f"{redis.prefix}session:*")]
        document = orjson.loads(await redis.client.get(key))
        document["access_expires_at"] = time.time() + 10
        await redis.client.set(key, orjson.dumps(document), keepttl=True)
        identity = platform.process("identity")
        before = identity.stats()["requests"].get("POST /token", 0)  # type: ignore[attr-defined]

        answers = await asyncio.gather(*(browser.get("/auth/session") for _ in range(4)))

        after = identity.stats()["requests"].get("POST /token", 0)  # type: ignore[attr-defined]
        refreshed = orjson.loads(await redis.client.get(key))

    assert [answer.status_code for answer in answers] == [200] * 4
    assert after == before + 1
    assert refreshed["access_expires_at"] > time.time() + 200


async def test_a_redis_outage_is_a_503_not_a_500(settings: Settings) -> None:
    server = RedisServer()
    await server.start()
    try:
        private = settings.model_copy(update={"redis_url": server.url, "redis_prefix": "outage:"})
        async with (
            running_gateway(private) as gateway,
            httpx.AsyncClient(base_url=gateway.url, follow_redirects=True) as browser,
        ):
            await browser_login(browser, username="alice")
            assert (await browser.get("/auth/session")).status_code == 200
            server.kill()

            session = await browser.get("/auth/session")
            login = await browser.get("/auth/login", params={"return_to": "/"})
    finally:
        server.kill()

    for response in (session, login):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "session store is unavailable" in response.json()["detail"]


class RotatedElsewhere:
    """Another gateway process wins the refresh race: it stores the rotated session first,
    and the provider refuses this process's now-spent refresh token."""

    def __init__(self, store: SessionStore, cookie: str) -> None:
        self.store = store
        self.cookie = cookie

    async def refresh(self, session: WebSession) -> WebSession:
        rotated = web_session()
        rotated.refresh_token = "rotated-by-another-process"
        await self.store.save(self.cookie, rotated)
        raise SessionEnded


class RevokedAtProvider:
    async def refresh(self, session: WebSession) -> WebSession:
        raise SessionEnded


async def test_losing_a_refresh_race_to_another_process_keeps_the_session(
    store: SessionStore,
) -> None:
    due = web_session()
    due.access_expires_at = time.time() + 5
    cookie = await store.create(due)
    sessions = SessionAuthenticator(
        store=store,
        refresher=RotatedElsewhere(store, cookie),
        settings=IdentitySettings(refresh_before_s=60),
    )

    current = await sessions.current(cookie)

    assert current is not None
    assert current.refresh_token == "rotated-by-another-process"
    assert await store.load(cookie) == current


async def test_a_refresh_token_refused_by_the_provider_ends_the_session(
    store: SessionStore,
) -> None:
    due = web_session()
    due.access_expires_at = time.time() + 5
    cookie = await store.create(due)
    sessions = SessionAuthenticator(
        store=store, refresher=RevokedAtProvider(), settings=IdentitySettings(refresh_before_s=60)
    )

    assert await sessions.current(cookie) is None
    assert await store.load(cookie) is None
