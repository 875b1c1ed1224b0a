"""A caller with credentials is answered `Cache-Control: private, no-store`, so that no cache
in front of the gateway (or the browser's) keeps one user's data for another."""

import httpx

from backends.launcher import Platform
from tests.fixtures.gateway import RunningGateway
from tests.fixtures.identity import bearer_headers, browser_login

PRIVATE = "private, no-store"


async def test_a_signed_in_users_views_are_not_cached(
    gateway: RunningGateway, platform: Platform
) -> None:
    async with httpx.AsyncClient(
        base_url=gateway.url, follow_redirects=True, timeout=10
    ) as browser:
        await browser_login(browser, username="alice")
        assert browser.cookies.get("stockbot_session")
        by_cookie = await browser.get("/web/v1/dashboard")
    by_token = await gateway.client.get(
        "/web/v1/dashboard", headers=await bearer_headers(platform, username="alice")
    )
    for response in (by_cookie, by_token):
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == PRIVATE


async def test_the_bootstrap_admins_answers_are_not_cached(gateway: RunningGateway) -> None:
    # The bootstrap admin token is no principal of the policy chain's; the credential is
    # enough.
    response = await gateway.client.get(
        "/admin/v1/services", headers={"Authorization": "Bearer test-admin-token"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == PRIVATE


async def test_anonymous_answers_and_a_routes_own_cache_control_are_left_alone(
    gateway: RunningGateway,
) -> None:
    anonymous = await gateway.client.get("/healthz")
    assert anonymous.status_code == 200
    assert "cache-control" not in anonymous.headers
    async with httpx.AsyncClient(
        base_url=gateway.url, follow_redirects=True, timeout=10
    ) as browser:
        # The login's last hop, /auth/session, sets its own `no-store`.
        login = await browser_login(browser, username="alice")
    assert login.response.status_code == 200
    assert login.response.headers.get_list("cache-control") == ["no-store"]
