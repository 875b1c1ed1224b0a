"""Web login through the gateway as a browser does it: redirects, the provider's form, the
session cookie, CSRF on state changes, token refresh and logout."""

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from app.settings import Settings
from backends.launcher import Platform
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import browser_login
from tests.fixtures.redis import PrefixedRedis, prefixed_redis

COOKIE = "stockbot_session"


@pytest.fixture
async def browser(gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, follow_redirects=True, timeout=10) as client:
        yield client


@pytest.fixture
async def redis() -> AsyncIterator[PrefixedRedis]:
    async with prefixed_redis() as prefixed:
        yield prefixed


def idempotency_key() -> str:
    return f"csrf-test-{uuid.uuid4().hex}"


def provider_requests(platform: Platform, route: str) -> int:
    requests: dict[str, int] = platform.process("identity").stats()["requests"]  # type: ignore[assignment]
    return requests.get(route, 0)


def set_cookie_headers(response: httpx.Response) -> list[str]:
    return [
        value
        for hop in [*response.history, response]
        for value in hop.headers.get_list("set-cookie")
    ]


async def stored_session(redis: PrefixedRedis) -> dict[str, Any]:
    keys = [key async for key in redis.client.scan_iter(match=f"{redis.prefix}session:*")]
    assert len(keys) == 1, keys
    document = await redis.client.get(keys[0])
    assert document is not None
    session: dict[str, Any] = orjson.loads(document)
    return session


async def test_login_with_pkce_opens_a_cookie_session(
    browser: httpx.AsyncClient, platform: Platform
) -> None:
    result = await browser_login(browser, username="alice", return_to="/auth/session")

    response = result.response
    assert response.status_code == 200, response.text
    assert str(response.url).endswith("/auth/session")
    body = response.json()
    assert body["user"] == {
        "subject": "alice",
        "kind": "user",
        "credential": "session",
        "roles": ["trader"],
        "scopes": ["email", "offline_access", "openid", "profile"],
        "account_ids": ["ACC-1001"],
    }
    assert len(body["csrf_token"]) >= 32
    assert "token" not in {key for key in body if key != "csrf_token"}
    assert response.headers["cache-control"] == "no-store"
    # The browser went: gateway login -> provider form -> gateway callback -> return_to.
    provider = platform.urls["identity"][0]
    assert any(url.startswith(f"{provider}/authorize?") for url in result.visited)
    assert any("/auth/callback?" in url for url in result.visited)
    authorize = next(url for url in result.visited if url.startswith(f"{provider}/authorize?"))
    assert "code_challenge_method=S256" in authorize and "state=" in authorize


async def test_the_session_cookie_is_httponly_lax_and_not_a_token(
    browser: httpx.AsyncClient,
) -> None:
    result = await browser_login(browser, username="bob")

    cookies = set_cookie_headers(result.response)
    session_cookie = next(value for value in cookies if value.startswith(f"{COOKIE}="))
    attributes = {part.strip().lower() for part in session_cookie.split(";")}
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes
    # Secure is off only because the test environment serves plain HTTP.
    assert "secure" not in attributes
    value = session_cookie.split(";")[0].split("=", 1)[1]
    assert value.count(".") == 0, "the cookie must be opaque, not a JWT"
    # The pre-session cookie that carried the login state is cleared by the callback.
    assert any(
        value.startswith("stockbot_login=") and "max-age=0" in value.lower() for value in cookies
    )
    assert "stockbot_login" not in result.browser.cookies


async def test_cookies_are_secure_outside_development(
    settings: Settings,
) -> None:
    production = settings.model_copy(update={"environment": "production"})
    async with (
        running_gateway(production) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        response = await client.get("/auth/login", params={"return_to": "/"})

    assert response.status_code == 303
    login_cookie = response.headers["set-cookie"].lower()
    assert "secure" in login_cookie and "httponly" in login_cookie


async def test_the_cookie_authenticates_gateway_routes(browser: httpx.AsyncClient) -> None:
    await browser_login(browser, username="alice")

    whoami = await browser.get("/auth/whoami")
    dashboard = await browser.get("/web/v1/dashboard")

    assert whoami.status_code == 200
    assert whoami.json()["credential"] == "session"
    assert dashboard.status_code == 200, dashboard.text


async def test_state_changes_on_the_cookie_need_the_csrf_token(
    browser: httpx.AsyncClient,
) -> None:
    session = (await browser_login(browser, username="alice")).response.json()
    order = {"symbol": "AAPL", "side": "buy", "type": "market", "quantity": 1}

    missing = await browser.post(
        "/web/v1/orders",
        json=order,
        headers={"Idempotency-Key": idempotency_key()},
    )
    wrong = await browser.post(
        "/web/v1/orders",
        json=order,
        headers={
            "Idempotency-Key": idempotency_key(),
            "X-CSRF-Token": "not-the-token",
        },
    )
    logout_without = await browser.post("/auth/logout")
    placed = await browser.post(
        "/web/v1/orders",
        json=order,
        headers={
            "Idempotency-Key": idempotency_key(),
            "X-CSRF-Token": session["csrf_token"],
        },
    )

    for refused in (missing, wrong, logout_without):
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "X-CSRF-Token" in refused.json()["detail"]
    assert placed.status_code == 201, placed.text
    # The refused logout left the session alive.
    assert (await browser.get("/auth/session")).status_code == 200


async def test_logout_ends_the_session_here_and_at_the_provider(
    settings: Settings, redis: PrefixedRedis, platform: Platform
) -> None:
    shared = settings.model_copy(update={"redis_url": redis.url, "redis_prefix": redis.prefix})
    provider = platform.urls["identity"][0]
    async with (
        running_gateway(shared) as gateway,
        httpx.AsyncClient(base_url=gateway.url, follow_redirects=True) as browser,
        httpx.AsyncClient(base_url=provider, auth=("stockbot-web", "web-secret")) as web_client,
    ):
        session = (await browser_login(browser, username="carol")).response.json()
        stored = await stored_session(redis)
        before = await web_client.post("/introspect", data={"token": stored["refresh_token"]})
        cookie = browser.cookies[COOKIE]

        response = await browser.post(
            "/auth/logout", headers={"X-CSRF-Token": session["csrf_token"]}
        )

        assert response.status_code == 204, response.text
        assert COOKIE not in browser.cookies
        after = await web_client.post("/introspect", data={"token": stored["refresh_token"]})
        replayed = await browser.get("/auth/session", headers={"Cookie": f"{COOKIE}={cookie}"})
        keys = [key async for key in redis.client.scan_iter(match=f"{redis.prefix}session:*")]

    assert before.json()["active"] is True
    assert after.json() == {"active": False}
    assert replayed.status_code == 401
    assert keys == []


async def test_the_access_token_is_refreshed_on_use_when_it_nears_expiry(
    settings: Settings, redis: PrefixedRedis, platform: Platform
) -> None:
    # Tokens live 300 s; refreshing within 3600 s of expiry means on every use.
    identity = settings.identity.model_copy(update={"refresh_before_s": 3600})
    eager = settings.model_copy(
        update={"identity": identity, "redis_url": redis.url, "redis_prefix": redis.prefix}
    )
    async with (
        running_gateway(eager) as gateway,
        httpx.AsyncClient(base_url=gateway.url, follow_redirects=True) as browser,
    ):
        first = (await browser_login(browser, username="alice")).response.json()
        before = await stored_session(redis)
        token_calls = provider_requests(platform, "POST /token")

        again = await browser.get("/auth/session")
        after = await stored_session(redis)

    assert again.status_code == 200
    assert provider_requests(platform, "POST /token") == token_calls + 1
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] != before["refresh_token"], "refresh tokens rotate"
    assert again.json()["csrf_token"] == first["csrf_token"]
    assert again.json()["user"]["subject"] == "alice"


async def test_a_session_revoked_at_the_provider_ends_at_its_next_refresh(
    settings: Settings, redis: PrefixedRedis, platform: Platform
) -> None:
    identity = settings.identity.model_copy(update={"refresh_before_s": 3600})
    eager = settings.model_copy(
        update={"identity": identity, "redis_url": redis.url, "redis_prefix": redis.prefix}
    )
    provider = platform.urls["identity"][0]
    async with (
        running_gateway(eager) as gateway,
        httpx.AsyncClient(base_url=gateway.url, follow_redirects=True) as browser,
        httpx.AsyncClient(base_url=provider, auth=("stockbot-web", "web-secret")) as web_client,
    ):
        await browser_login(browser, username="bob")
        stored = await stored_session(redis)
        await web_client.post("/revoke", data={"token": stored["refresh_token"]})

        response = await browser.get("/auth/session")
        keys = [key async for key in redis.client.scan_iter(match=f"{redis.prefix}session:*")]

    assert response.status_code == 401
    assert keys == []


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/path",
        "/\\evil.example",
        "javascript:alert(1)",
        "relative/path",
        "/ok\r\nSet-Cookie: x=y",
    ],
)
async def test_return_to_must_be_a_local_path(gateway: RunningGateway, target: str) -> None:
    response = await gateway.client.get("/auth/login", params={"return_to": target})

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert "location" not in response.headers
    assert response.json()["errors"][0]["field"] == "query.return_to"


async def test_a_callback_with_a_forged_state_is_refused(browser: httpx.AsyncClient) -> None:
    page = await browser.get("/auth/login", params={"return_to": "/auth/session"})
    assert page.status_code == 200

    forged = await browser.get("/auth/callback", params={"state": "forged", "code": "anything"})

    assert forged.status_code == 400
    assert "state does not match" in forged.json()["detail"]
    assert COOKIE not in browser.cookies


async def test_a_callback_without_a_login_in_progress_is_refused(
    gateway: RunningGateway,
) -> None:
    response = await gateway.client.get("/auth/callback", params={"state": "s", "code": "c"})

    assert response.status_code == 400
    assert "No login is in progress" in response.json()["detail"]


async def test_a_replayed_callback_is_refused(browser: httpx.AsyncClient) -> None:
    result = await browser_login(browser, username="alice")
    callback = next(url for url in result.visited if "/auth/callback?" in url)
    login_cookie_was_cleared = "stockbot_login" not in browser.cookies

    replayed = await browser.get(callback)

    assert login_cookie_was_cleared
    assert replayed.status_code == 400


async def test_a_refused_login_at_the_provider_is_a_401(browser: httpx.AsyncClient) -> None:
    page = await browser.get("/auth/login", params={"return_to": "/"})
    state = dict(httpx.URL(str(page.url)).params)["state"]

    response = await browser.get(
        "/auth/callback", params={"state": state, "error": "access_denied"}
    )

    assert response.status_code == 401
    assert "access_denied" in response.json()["detail"]


async def test_no_session_is_a_401(gateway: RunningGateway) -> None:
    without = await gateway.client.get("/auth/session")
    unknown = await gateway.client.get("/auth/session", headers={"Cookie": f"{COOKIE}=made-up"})

    assert without.status_code == 401
    assert unknown.status_code == 401


async def test_no_token_code_or_password_reaches_logs_or_bodies(
    settings: Settings,
    redis: PrefixedRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    logged = settings.model_copy(
        update={"redis_url": redis.url, "redis_prefix": redis.prefix, "access_log": True}
    )
    # The test's own HTTP client logs the URLs it visits (code included); the gateway's
    # loggers are what must stay clean.
    caplog.set_level(logging.DEBUG, logger="gateway")
    caplog.set_level(logging.DEBUG, logger="authlib")
    # A handler of its own on the access logger: the access line then goes through logging
    # (not the gateway's direct write to its stream), where the capture sees it.
    access = logging.getLogger("gateway.access")
    access.addHandler(caplog.handler)
    try:
        async with (
            running_gateway(logged) as gateway,
            httpx.AsyncClient(base_url=gateway.url, follow_redirects=True) as browser,
        ):
            result = await browser_login(browser, username="alice")
            stored = await stored_session(redis)
            cookie = browser.cookies[COOKIE]
            bodies = [hop.text for hop in [*result.response.history, result.response]]
            bodies.append((await browser.post("/auth/logout")).text)
    finally:
        access.removeHandler(caplog.handler)

    callback = next(url for url in result.visited if "/auth/callback?" in url)
    code = dict(httpx.URL(callback).params)["code"]
    secrets_seen = [
        stored["access_token"],
        stored["refresh_token"],
        stored["id_token"],
        code,
        cookie,
    ]
    gateway_logs = "\n".join(
        # The message and every field the record carries (an access line's are extras).
        f"{record.getMessage()} {vars(record)} {record.exc_text or ''}"
        for record in caplog.records
        if record.name.startswith(("gateway", "authlib"))
    )
    assert "/auth/callback" in gateway_logs, "the access log was not captured"
    for secret in secrets_seen:
        assert secret not in gateway_logs
        assert all(secret not in body for body in bodies)
    assert "web-secret" not in gateway_logs


async def test_logging_in_again_replaces_the_previous_session(
    browser: httpx.AsyncClient,
) -> None:
    await browser_login(browser, username="alice")
    first_cookie = browser.cookies[COOKIE]

    second = await browser_login(browser, username="bob")
    old = await browser.get("/auth/whoami", headers={"Cookie": f"{COOKIE}={first_cookie}"})

    assert second.response.json()["user"]["subject"] == "bob"
    assert browser.cookies[COOKIE] != first_cookie
    assert old.status_code == 401


async def test_a_provider_outage_during_refresh_keeps_a_still_valid_session(
    settings: Settings, redis: PrefixedRedis, platform: Platform
) -> None:
    identity = settings.identity.model_copy(update={"refresh_before_s": 3600})
    eager = settings.model_copy(
        update={"identity": identity, "redis_url": redis.url, "redis_prefix": redis.prefix}
    )
    async with (
        running_gateway(eager) as gateway,
        httpx.AsyncClient(base_url=gateway.url, follow_redirects=True) as browser,
    ):
        await browser_login(browser, username="alice")
        platform.process("identity").set_faults(error_rate=1.0, paths=["/token"])

        still_valid = await browser.get("/auth/session")
        # Once the access token has expired, the gateway cannot vouch for the session.
        [key] = [k async for k in redis.client.scan_iter(match=f"{redis.prefix}session:*")]
        document = orjson.loads(await redis.client.get(key))
        document["access_expires_at"] = document["created_at"] - 1
        await redis.client.set(key, orjson.dumps(document), keepttl=True)
        expired = await browser.get("/auth/session")

    assert still_valid.status_code == 200, still_valid.text
    assert expired.status_code == 503, expired.text
    assert expired.headers["content-type"] == "application/problem+json"
