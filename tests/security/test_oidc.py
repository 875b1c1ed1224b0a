"""The OIDC client spoken to directly, against the development identity provider: every
provider call travels over the one injected HTTP client."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.security.jwt import TokenValidator, TrustedIssuer
from app.security.oidc import ProviderClient
from app.security.sessions import LoginAttempt, SessionEnded, new_secret
from app.settings import Settings
from backends.launcher import Platform

REDIRECT = "http://127.0.0.1:8000/auth/callback"


@dataclass
class Provider:
    client: ProviderClient
    sent: list[str]


@pytest.fixture
async def provider(settings: Settings) -> AsyncIterator[Provider]:
    sent: list[str] = []

    async def record(request: httpx.Request) -> None:
        sent.append(f"{request.method} {request.url.path}")

    async with httpx.AsyncClient(
        timeout=settings.identity.provider_timeout_s, event_hooks={"request": [record]}
    ) as http:
        issuer = TrustedIssuer(settings=settings.identity, http=http)
        validator = TokenValidator(issuer=issuer, settings=settings.identity)
        yield Provider(
            ProviderClient(issuer=issuer, validator=validator, settings=settings, http=http), sent
        )


def login_attempt() -> LoginAttempt:
    return LoginAttempt(
        state=new_secret(),
        code_verifier=new_secret() + new_secret(),
        nonce=new_secret(),
        return_to="/",
        redirect_uri=REDIRECT,
    )


async def authorization_code(url: str, attempt: LoginAttempt) -> str:
    """Fill in the provider's login form as alice; the code it redirects back with."""
    query = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
    async with httpx.AsyncClient(timeout=10) as browser:
        answer = await browser.post(
            url.split("?")[0], data={**query, "username": "alice", "password": "demo"}
        )
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith(REDIRECT)
    returned = {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}
    assert returned["state"] == attempt.state
    return returned["code"]


async def test_login_refresh_and_revoke_share_the_injected_client(
    provider: Provider, platform: Platform
) -> None:
    attempt = login_attempt()
    url = await provider.client.authorization_url(attempt)
    code = await authorization_code(url, attempt)

    session = await provider.client.exchange(attempt, code=code)
    refreshed = await provider.client.refresh(session)
    await provider.client.revoke(refreshed)

    query = parse_qs(urlsplit(url).query)
    assert query["client_id"] == ["stockbot-web"]
    assert query["code_challenge_method"] == ["S256"]
    assert session.claims["sub"] == refreshed.claims["sub"] == "alice"
    assert refreshed.access_token != session.access_token
    assert refreshed.csrf_token == session.csrf_token
    assert [call for call in provider.sent if not call.startswith("GET ")] == [
        "POST /token",
        "POST /token",
        "POST /revoke",
        "POST /revoke",
    ]
    async with httpx.AsyncClient(
        base_url=platform.urls["identity"][0], auth=("stockbot-web", "web-secret")
    ) as web_client:
        introspected = await web_client.post("/introspect", data={"token": refreshed.refresh_token})
    assert introspected.json() == {"active": False}
    # A revoked refresh token ends the session at its next refresh.
    with pytest.raises(SessionEnded):
        await provider.client.refresh(refreshed)
