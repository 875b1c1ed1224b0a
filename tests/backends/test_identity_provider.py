"""The development identity provider, spoken to directly as an OAuth client would."""

import base64
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact

from backends.launcher import BackendProcess, Platform, start_service

MOBILE_REDIRECT = "http://127.0.0.1:8123/callback"
WEB_REDIRECT = "http://127.0.0.1:8000/auth/callback"


def challenge_of(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


@pytest.fixture
async def provider(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.urls["identity"][0], timeout=10) as client:
        yield client


def authorize_params(
    *, client_id: str = "stockbot-mobile", redirect_uri: str = MOBILE_REDIRECT, verifier: str
) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid profile offline_access",
        "state": "state-123",
        "nonce": "nonce-456",
        "code_challenge": challenge_of(verifier),
        "code_challenge_method": "S256",
    }


def redirect_query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 303, response.text
    return {
        name: values[0]
        for name, values in parse_qs(urlsplit(response.headers["location"]).query).items()
    }


async def log_in(
    provider: httpx.AsyncClient, *, verifier: str, username: str = "alice", **params: str
) -> str:
    form = {
        **authorize_params(verifier=verifier),
        **params,
        "username": username,
        "password": "demo",
    }
    answer = redirect_query(await provider.post("/authorize", data=form))
    assert answer["state"] == "state-123"
    assert answer["iss"] == str(provider.base_url).rstrip("/")
    return answer["code"]


async def redeem(
    provider: httpx.AsyncClient, code: str, *, verifier: str, redirect_uri: str = MOBILE_REDIRECT
) -> httpx.Response:
    return await provider.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "client_id": "stockbot-mobile",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
    )


async def verified_claims(provider: httpx.AsyncClient, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set((await provider.get("/jwks")).json())
    return dict(jwt.decode(token, keys, algorithms=["RS256"]).claims)


async def test_discovery_names_the_issuer_and_its_endpoints(provider: httpx.AsyncClient) -> None:
    document = (await provider.get("/.well-known/openid-configuration")).json()
    issuer = str(provider.base_url).rstrip("/")

    assert document["issuer"] == issuer
    for endpoint, path in {
        "authorization_endpoint": "/authorize",
        "token_endpoint": "/token",
        "jwks_uri": "/jwks",
        "introspection_endpoint": "/introspect",
        "revocation_endpoint": "/revoke",
        "userinfo_endpoint": "/userinfo",
        "end_session_endpoint": "/logout",
    }.items():
        assert document[endpoint] == issuer + path
    assert document["code_challenge_methods_supported"] == ["S256"]
    keys = (await provider.get("/jwks")).json()["keys"]
    assert keys and all("d" not in key for key in keys), "private key material is published"


async def test_the_login_page_lists_the_demo_users(provider: httpx.AsyncClient) -> None:
    page = await provider.get("/authorize", params=authorize_params(verifier="v" * 43))

    assert page.status_code == 200
    assert "<form" in page.text
    for username in ("alice", "bob", "carol"):
        assert username in page.text


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge": None}, "code_challenge is missing"),
        ({"code_challenge_method": "plain"}, "must be S256"),
        ({"code_challenge_method": None}, "must be S256"),
        ({"response_type": "token"}, "response_type=code"),
    ],
    ids=["no-pkce", "plain-pkce", "no-method", "implicit"],
)
async def test_authorization_requests_without_s256_pkce_are_refused(
    provider: httpx.AsyncClient, change: dict[str, str | None], error: str
) -> None:
    params: dict[str, Any] = {**authorize_params(verifier="v" * 43), **change}
    params = {name: value for name, value in params.items() if value is not None}

    answer = redirect_query(await provider.get("/authorize", params=params))

    assert answer["error"] in {"invalid_request", "unsupported_response_type"}
    assert error in answer["error_description"]
    assert answer["state"] == "state-123"
    assert "code" not in answer


async def test_an_unregistered_redirect_uri_is_never_redirected_to(
    provider: httpx.AsyncClient,
) -> None:
    params = authorize_params(verifier="v" * 43, redirect_uri="https://evil.example/callback")

    response = await provider.get("/authorize", params=params)

    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.json()["error"] == "invalid_request"


async def test_a_wrong_password_shows_the_form_again(provider: httpx.AsyncClient) -> None:
    form = {**authorize_params(verifier="v" * 43), "username": "alice", "password": "nope"}

    response = await provider.post("/authorize", data=form)

    assert response.status_code == 401
    assert "wrong password" in response.text
    assert "location" not in response.headers


async def test_code_with_pkce_yields_tokens_with_every_claim(provider: httpx.AsyncClient) -> None:
    verifier = secrets.token_urlsafe(48)
    code = await log_in(provider, verifier=verifier, username="carol")

    granted = await redeem(provider, code, verifier=verifier)

    assert granted.status_code == 200, granted.text
    assert granted.headers["cache-control"] == "no-store"
    body = granted.json()
    claims = await verified_claims(provider, body["access_token"])
    now = time.time()
    assert claims["iss"] == str(provider.base_url).rstrip("/")
    assert claims["aud"] == "stockbot-gateway"
    assert claims["sub"] == "carol"
    assert claims["roles"] == ["admin"]
    assert claims["account_ids"] == ["ACC-1003"]
    assert claims["scope"] == "openid profile offline_access"
    assert claims["iat"] <= now + 1 and claims["nbf"] <= now + 1 < claims["exp"]
    assert len(claims["jti"]) >= 16
    id_claims = await verified_claims(provider, body["id_token"])
    assert id_claims["aud"] == "stockbot-mobile"
    assert id_claims["nonce"] == "nonce-456"
    assert body["refresh_token"]


async def test_a_wrong_verifier_and_a_reused_code_are_refused(
    provider: httpx.AsyncClient,
) -> None:
    verifier = secrets.token_urlsafe(48)
    code = await log_in(provider, verifier=verifier)

    wrong = await redeem(provider, code, verifier=secrets.token_urlsafe(48))
    again = await redeem(provider, code, verifier=verifier)

    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    # A code is spent by its first redemption, even a failed one.
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


async def test_refresh_tokens_rotate_and_cannot_be_replayed(provider: httpx.AsyncClient) -> None:
    verifier = secrets.token_urlsafe(48)
    code = await log_in(provider, verifier=verifier)
    first = (await redeem(provider, code, verifier=verifier)).json()["refresh_token"]
    form = {"grant_type": "refresh_token", "client_id": "stockbot-mobile"}

    rotated = await provider.post("/token", data={**form, "refresh_token": first})
    replayed = await provider.post("/token", data={**form, "refresh_token": first})

    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["refresh_token"] != first
    assert replayed.status_code == 400
    assert replayed.json()["error"] == "invalid_grant"


async def test_client_credentials_for_the_partner(provider: httpx.AsyncClient) -> None:
    granted = await provider.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "quotes:read"},
        auth=("partner-acme", "acme-secret"),
    )
    wrong_secret = await provider.post(
        "/token", data={"grant_type": "client_credentials"}, auth=("partner-acme", "nope")
    )
    too_much = await provider.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "quotes:read admin"},
        auth=("partner-acme", "acme-secret"),
    )
    public = await provider.post(
        "/token", data={"grant_type": "client_credentials", "client_id": "stockbot-mobile"}
    )

    assert granted.status_code == 200, granted.text
    claims = await verified_claims(provider, granted.json()["access_token"])
    assert claims["sub"] == "partner-acme"
    assert claims["scope"] == "quotes:read"
    assert claims["account_ids"] == ["ACC-2001", "ACC-2002"]
    assert "refresh_token" not in granted.json()
    assert wrong_secret.status_code == 401
    assert wrong_secret.json()["error"] == "invalid_client"
    assert "nope" not in wrong_secret.text
    assert too_much.json()["error"] == "invalid_scope"
    assert public.json()["error"] == "unauthorized_client"


async def test_introspection_revocation_and_userinfo(provider: httpx.AsyncClient) -> None:
    verifier = secrets.token_urlsafe(48)
    code = await log_in(provider, verifier=verifier, username="bob")
    tokens = (await redeem(provider, code, verifier=verifier)).json()
    web = ("stockbot-web", "web-secret")
    mobile = {"client_id": "stockbot-mobile"}

    access = (
        await provider.post("/introspect", data={"token": tokens["access_token"]}, auth=web)
    ).json()
    refresh = (
        await provider.post("/introspect", data={"token": tokens["refresh_token"]}, auth=web)
    ).json()
    me = await provider.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    for token in (tokens["refresh_token"], tokens["access_token"]):
        revoked = await provider.post("/revoke", data={"token": token, **mobile})
        assert revoked.status_code == 200
    after = [
        (await provider.post("/introspect", data={"token": token}, auth=web)).json()
        for token in (tokens["access_token"], tokens["refresh_token"])
    ]
    unauthenticated = await provider.post("/introspect", data={"token": tokens["access_token"]})

    assert access["active"] is True and access["sub"] == "bob"
    assert refresh == refresh | {"active": True, "token_type": "refresh_token", "sub": "bob"}
    assert me.json()["roles"] == ["viewer"] and me.json()["account_ids"] == ["ACC-1002"]
    assert after == [{"active": False}, {"active": False}]
    assert unauthenticated.status_code == 401


async def test_end_session_revokes_the_login_sessions_tokens(
    provider: httpx.AsyncClient,
) -> None:
    verifier = secrets.token_urlsafe(48)
    code = await log_in(provider, verifier=verifier)
    tokens = (await redeem(provider, code, verifier=verifier)).json()

    ended = await provider.post("/logout", data={"id_token_hint": tokens["id_token"]})
    refreshed = await provider.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "stockbot-mobile",
            "refresh_token": tokens["refresh_token"],
        },
    )

    web = ("stockbot-web", "web-secret")
    access = await provider.post("/introspect", data={"token": tokens["access_token"]}, auth=web)

    assert ended.json() == {"ended_grants": 1}
    assert refreshed.json()["error"] == "invalid_grant"
    # The session's access token still verifies (a JWT does until it expires); introspection
    # is where the provider says it ended.
    assert access.json() == {"active": False}


class TestSigningKeys:
    @pytest.fixture(scope="class")
    @classmethod
    def own_provider(cls) -> Iterator[BackendProcess]:
        with start_service("identity") as process:
            yield process

    async def test_rotation_publishes_both_keys_and_retiring_the_last_is_refused(
        self, own_provider: BackendProcess
    ) -> None:
        async with httpx.AsyncClient(base_url=own_provider.url) as admin:
            first = (await admin.get("/__keys")).json()["current"]
            second = (await admin.post("/__keys/rotate")).json()["current"]
            published = {key["kid"] for key in (await admin.get("/jwks")).json()["keys"]}
            token = (await admin.post("/__dev/token", json={"username": "alice"})).json()
            signer = extract_compact(token["access_token"].encode()).headers()["kid"]
            retired = await admin.delete(f"/__keys/{second}")
            last = await admin.delete(f"/__keys/{first}")
            unknown = await admin.delete("/__keys/nope")

        assert published == {first, second}
        assert signer == second
        assert retired.status_code == 200 and retired.json()["current"] == first
        assert last.status_code == 409
        assert unknown.status_code == 404


async def test_a_short_code_verifier_is_refused(provider: httpx.AsyncClient) -> None:
    verifier = "too-short-to-be-unguessable"
    code = await log_in(provider, verifier=verifier)

    response = await redeem(provider, code, verifier=verifier)

    assert response.status_code == 400
    assert "43 to 128" in response.json()["error_description"]
