"""A partner developer and an admin in the developer portal, as plain HTTP clients (no JS)."""

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import unescape

import httpx

from tests.fixtures.consumers import ADMIN
from tests.fixtures.identity import browser_login

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
NEW_KEY = re.compile(r'id="new-key"[^>]*value="(sbk_[^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match is not None, "the page has no form with a CSRF token"
    return unescape(match.group(1))


def new_key_of(html: str) -> str:
    match = NEW_KEY.search(html)
    assert match is not None, "the page shows no new key"
    return match.group(1)


async def create_plan(client: httpx.AsyncClient, **limits: object) -> str:
    name = f"portal-{uuid.uuid4().hex[:8]}"
    response = await client.post(
        "/admin/v1/plans",
        json={"name": name, "scopes": ["quotes:read", "candles:read"], **limits},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    return name


@asynccontextmanager
async def signed_in(url: str, username: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client signed in through the identity provider, on the portal."""
    async with httpx.AsyncClient(base_url=url, follow_redirects=True, timeout=10) as browser:
        result = await browser_login(browser, username=username, return_to="/portal/")
        assert result.response.status_code == 200, result.response.text
        assert str(result.response.url).endswith("/portal/")
        yield browser


async def request_access(browser: httpx.AsyncClient) -> httpx.Response:
    page = await browser.get("/portal/")
    return await browser.post(
        "/portal/access",
        data={
            "csrf_token": csrf_of(page.text),
            "name": "Dana Developer",
            "email": "dana@partner.example",
            "company": "Partner Inc",
            "intended_use": "A robo-advisor that reads quotes every minute.",
        },
    )


async def decide(
    admin: httpx.AsyncClient, subject: str, decision: str, plan: str = ""
) -> httpx.Response:
    page = await admin.get("/portal/admin")
    assert page.status_code == 200, page.text
    match = re.search(rf'<tr id="signup-(\d+)" data-subject="{re.escape(subject)}">', page.text)
    assert match is not None, f"no sign-up of {subject} in the admin view"
    return await admin.post(
        f"/portal/admin/signups/{match.group(1)}",
        data={"csrf_token": csrf_of(page.text), "decision": decision, "plan": plan},
    )


async def create_key(browser: httpx.AsyncClient, name: str) -> str:
    page = await browser.get("/portal/keys")
    answer = await browser.post(
        "/portal/keys", data={"csrf_token": csrf_of(page.text), "name": name}
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    return new_key_of(answer.text)


def key_id_of(html: str, prefix: str) -> int:
    match = re.search(rf'<tr id="key-(\d+)" data-prefix="{prefix}">', html)
    assert match is not None, f"no key {prefix} listed"
    return int(match.group(1))
