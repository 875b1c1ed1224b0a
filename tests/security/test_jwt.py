"""Bearer tokens through the gateway (`GET /auth/whoami`): valid ones identify the caller,
every forged or malformed one is a 401, a provider that was never reachable is a 503."""

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from app.security import jwt as jwt_module
from app.settings import Settings
from backends.launcher import BackendProcess, Platform, free_port, start_service
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import TokenForge, dev_token, identity_settings


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(document: dict[str, Any]) -> str:
    return _b64(json.dumps(document).encode())


@pytest.fixture
def provider_url(platform: Platform) -> str:
    return platform.urls["identity"][0]


@pytest.fixture(scope="module")
def attacker_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "attacker"})


@pytest.fixture
async def forge(provider_url: str) -> TokenForge:
    forge = TokenForge(issuer=provider_url)
    await forge.publish()
    return forge


@pytest.fixture
async def bearer_gateway(settings: Settings, provider_url: str) -> AsyncIterator[RunningGateway]:
    # No refetch cooldown: an unknown kid is always looked up again.
    identity = identity_settings(provider_url, jwks_refetch_cooldown_s=0)
    async with running_gateway(settings.model_copy(update={"identity": identity})) as running:
        yield running


async def whoami(gateway: RunningGateway, token: str) -> httpx.Response:
    return await gateway.client.get("/auth/whoami", headers={"Authorization": f"Bearer {token}"})


def assert_rejected(response: httpx.Response, token: str, *, because: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token"')
    assert because in challenge
    assert because in response.json()["detail"]
    # Neither the token nor its signature is echoed back.
    assert token not in response.text
    signature = token.rsplit(".", 1)[-1]
    assert not signature or signature not in response.text


def jwks_fetches(platform: Platform) -> int:
    stats = platform.process("identity").stats()
    requests: dict[str, int] = stats["requests"]  # type: ignore[assignment]
    return requests.get("GET /jwks", 0)


async def test_a_provider_token_identifies_the_user(
    bearer_gateway: RunningGateway, provider_url: str
) -> None:
    token = await dev_token(provider_url, username="alice")

    response = await whoami(bearer_gateway, token)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "subject": "alice",
        "kind": "user",
        "credential": "bearer",
        "roles": ["trader"],
        "scopes": ["openid", "profile"],
        "account_ids": ["ACC-1001"],
    }


async def test_a_client_credentials_token_identifies_the_partner(
    bearer_gateway: RunningGateway, provider_url: str
) -> None:
    async with httpx.AsyncClient(base_url=provider_url) as provider:
        granted = await provider.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": "quotes:read orders:write"},
            auth=("partner-acme", "acme-secret"),
        )
    assert granted.status_code == 200, granted.text

    response = await whoami(bearer_gateway, granted.json()["access_token"])

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kind"] == "consumer"
    assert body["subject"] == "partner-acme"
    assert body["scopes"] == ["orders:write", "quotes:read"]
    assert body["account_ids"] == ["ACC-2001", "ACC-2002"]


async def test_claim_names_come_from_the_settings(
    settings: Settings, provider_url: str, forge: TokenForge
) -> None:
    identity = identity_settings(
        provider_url, roles_claim="groups", scopes_claim="scp", account_claim="accounts"
    )
    token = forge.sign(
        forge.claims(groups=["viewer"], scp=["quotes:read"], accounts=["ACC-1002"], roles=None)
    )
    async with running_gateway(settings.model_copy(update={"identity": identity})) as gateway:
        response = await whoami(gateway, token)

    assert response.status_code == 200, response.text
    assert response.json()["roles"] == ["viewer"]
    assert response.json()["scopes"] == ["quotes:read"]
    assert response.json()["account_ids"] == ["ACC-1002"]


async def test_no_credential_is_a_401_challenge(bearer_gateway: RunningGateway) -> None:
    response = await bearer_gateway.client.get("/auth/whoami")

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_alg_none_is_rejected(bearer_gateway: RunningGateway, forge: TokenForge) -> None:
    token = f"{_segment({'alg': 'none', 'kid': forge.kid})}.{_segment(forge.claims())}."

    response = await whoami(bearer_gateway, token)

    assert_rejected(response, token, because="algorithm is not accepted")


async def test_hs256_signed_with_the_public_key_is_rejected(
    bearer_gateway: RunningGateway, forge: TokenForge
) -> None:
    # The classic key-confusion attack: the RSA public key (PEM) used as an HMAC secret.
    public_pem = forge.key.as_pem(private=False)
    signing_input = (
        f"{_segment({'alg': 'HS256', 'kid': forge.kid, 'typ': 'JWT'})}.{_segment(forge.claims())}"
    )
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{_b64(signature)}"

    response = await whoami(bearer_gateway, token)

    assert_rejected(response, token, because="algorithm is not accepted")


async def test_an_unknown_kid_is_looked_up_once_then_rejected(
    bearer_gateway: RunningGateway, forge: TokenForge, platform: Platform, attacker_key: RSAKey
) -> None:
    warm = await whoami(bearer_gateway, forge.sign())
    assert warm.status_code == 200, warm.text
    before = jwks_fetches(platform)
    token = forge.sign(header={"kid": "attacker"}, key=attacker_key)

    response = await whoami(bearer_gateway, token)

    assert_rejected(response, token, because="unknown key")
    assert jwks_fetches(platform) == before + 1


async def test_unknown_kids_refetch_at_most_once_per_cooldown(
    settings: Settings,
    provider_url: str,
    forge: TokenForge,
    platform: Platform,
    attacker_key: RSAKey,
) -> None:
    identity = identity_settings(provider_url, jwks_refetch_cooldown_s=60)
    async with running_gateway(settings.model_copy(update={"identity": identity})) as gateway:
        assert (await whoami(gateway, forge.sign())).status_code == 200
        before = jwks_fetches(platform)
        for attempt in range(5):
            token = forge.sign(header={"kid": f"forged-{attempt}"}, key=attacker_key)
            assert_rejected(await whoami(gateway, token), token, because="unknown key")

    assert jwks_fetches(platform) == before


async def test_a_tampered_payload_is_rejected(
    bearer_gateway: RunningGateway, forge: TokenForge
) -> None:
    header, _, signature = forge.sign().split(".")
    promoted = _segment(forge.claims(roles=["admin"], account_ids=["ACC-1003"]))
    token = f"{header}.{promoted}.{signature}"

    response = await whoami(bearer_gateway, token)

    assert_rejected(response, token, because="signature is invalid")


@pytest.mark.parametrize(
    ("claims", "because"),
    [
        # Times are offsets from now, resolved when the test runs.
        ({"exp": -120, "iat": -600}, "expired"),
        ({"nbf": 600}, "not valid yet"),
        ({"iat": 600}, "issued in the future"),
        ({"iss": "http://127.0.0.1:1"}, "claim iss"),
        ({"aud": "someone-else"}, "claim aud"),
        ({"exp": None}, "lacks required claims: exp"),
        ({"sub": None}, "lacks required claims: sub"),
    ],
    ids=["expired", "nbf-future", "iat-future", "wrong-iss", "wrong-aud", "no-exp", "no-sub"],
)
async def test_claims_outside_policy_are_rejected(
    bearer_gateway: RunningGateway, forge: TokenForge, claims: dict[str, Any], because: str
) -> None:
    now = int(time.time())
    resolved = {
        name: now + value if name in {"exp", "nbf", "iat"} and value is not None else value
        for name, value in claims.items()
    }
    token = forge.sign(forge.claims(**resolved))

    response = await whoami(bearer_gateway, token)

    assert_rejected(response, token, because=because)


async def test_clock_skew_is_tolerated_within_the_setting(
    bearer_gateway: RunningGateway, forge: TokenForge
) -> None:
    # Expired 10 s ago, not before 10 s from now: inside the default 30 s skew.
    now = int(time.time())
    token = forge.sign(forge.claims(exp=now - 10, nbf=now + 10, iat=now - 300))

    response = await whoami(bearer_gateway, token)

    assert response.status_code == 200, response.text


async def test_an_oversized_token_is_rejected(
    bearer_gateway: RunningGateway, forge: TokenForge
) -> None:
    token = forge.sign(forge.claims(padding="x" * 9000))

    response = await whoami(bearer_gateway, token)

    assert_rejected(response, token, because="too large")


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b.c", "a.b.c.d.e", "ö.ä.ü"])
async def test_malformed_tokens_are_rejected(bearer_gateway: RunningGateway, garbage: str) -> None:
    response = await bearer_gateway.client.get(
        "/auth/whoami", headers={"Authorization": f"Bearer {garbage}".encode()}
    )

    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


@pytest.mark.parametrize("carrier", ["jku", "x5u", "jwk"])
async def test_key_carrying_headers_are_never_used(
    bearer_gateway: RunningGateway,
    forge: TokenForge,
    platform: Platform,
    attacker_key: RSAKey,
    carrier: str,
) -> None:
    # The attacker signs with their own key and points at it; the kid is a trusted one.
    decoy = platform.process("news")
    decoy.reset_stats()
    pointer: Any = {
        "jku": f"{decoy.url}/attacker/jwks.json",
        "x5u": f"{decoy.url}/attacker/cert.pem",
        "jwk": attacker_key.as_dict(private=False),
    }[carrier]
    token = forge.sign(forge.claims(roles=["admin"]), header={carrier: pointer}, key=attacker_key)

    response = await whoami(bearer_gateway, token)

    # An embedded RSA JWK also overflows joserfc's 512-byte header cap.
    because = "malformed" if carrier == "jwk" else "signature is invalid"
    assert_rejected(response, token, because=because)
    requests: dict[str, int] = decoy.stats()["requests"]  # type: ignore[assignment]
    assert not [route for route in requests if "/attacker/" in route]


@pytest.fixture(scope="module")
def own_provider() -> Iterator[BackendProcess]:
    """A provider of its own: rotating and retiring keys must not disturb other tests."""
    with start_service("identity") as process:
        yield process


async def test_old_and_new_key_tokens_are_valid_until_the_old_key_is_retired(
    settings: Settings, own_provider: BackendProcess
) -> None:
    provider = own_provider
    identity = identity_settings(provider.url, jwks_refetch_cooldown_s=0, jwks_max_age_s=0.3)
    async with (
        running_gateway(settings.model_copy(update={"identity": identity})) as gateway,
        httpx.AsyncClient(base_url=provider.url) as admin,
    ):
        old_kid = (await admin.get("/__keys")).json()["current"]
        old_token = await dev_token(provider.url, username="bob")
        assert (await whoami(gateway, old_token)).status_code == 200

        rotated = (await admin.post("/__keys/rotate")).json()
        assert rotated["current"] != old_kid
        new_token = await dev_token(provider.url, username="carol")

        assert (await whoami(gateway, new_token)).json()["subject"] == "carol"
        assert (await whoami(gateway, old_token)).json()["subject"] == "bob"

        retired = await admin.delete(f"/__keys/{old_kid}")
        assert retired.status_code == 200
        # The cached key set ages out (0.3 s) and is refetched without the old key.
        await _wait_until_rejected(gateway, old_token)

        assert (await whoami(gateway, new_token)).status_code == 200


async def _wait_until_rejected(gateway: RunningGateway, token: str) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        response = await whoami(gateway, token)
        if response.status_code == 401:
            assert "unknown key" in response.headers["www-authenticate"]
            return
        assert response.status_code == 200
        await asyncio.sleep(0.1)
    pytest.fail("a token signed by a retired key was still accepted after 5 s")


class TestProviderOutage:
    async def test_cached_keys_outlive_a_provider_outage(
        self, settings: Settings, provider_url: str, platform: Platform
    ) -> None:
        identity = identity_settings(provider_url, jwks_refetch_cooldown_s=0, jwks_max_age_s=0.05)
        token = await dev_token(provider_url, username="alice")
        async with running_gateway(settings.model_copy(update={"identity": identity})) as gateway:
            assert (await whoami(gateway, token)).status_code == 200
            platform.process("identity").set_faults(error_rate=1.0, error_status=503)
            before = jwks_fetches(platform)
            await asyncio.sleep(0.1)

            response = await whoami(gateway, token)

            assert response.status_code == 200, response.text
            # The stale key set was due for a refresh, which failed, and the old keys held.
            assert jwks_fetches(platform) > before

    async def test_a_provider_never_reached_is_a_503_not_a_401(
        self, settings: Settings, provider_url: str, platform: Platform, forge: TokenForge
    ) -> None:
        token = forge.sign()
        platform.process("identity").set_faults(error_rate=1.0, error_status=503)
        identity = identity_settings(provider_url)
        async with running_gateway(settings.model_copy(update={"identity": identity})) as gateway:
            response = await whoami(gateway, token)

        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "Retry-After" in response.headers
        assert token not in response.text

    async def test_an_unreachable_provider_is_a_503(
        self, settings: Settings, forge: TokenForge
    ) -> None:
        identity = identity_settings(f"http://127.0.0.1:{free_port()}")
        async with running_gateway(settings.model_copy(update={"identity": identity})) as gateway:
            response = await whoami(gateway, forge.sign())

        assert response.status_code == 503, response.text


async def test_es256_is_accepted_and_an_algorithm_must_fit_its_key(
    bearer_gateway: RunningGateway, forge: TokenForge, provider_url: str
) -> None:
    ec_key = ECKey.generate_key("P-256", parameters={"kid": f"ec-{secrets.token_hex(4)}"})
    async with httpx.AsyncClient(base_url=provider_url) as provider:
        published = await provider.post("/__keys", json=ec_key.as_dict(private=False))
    assert published.status_code == 201
    es256 = jwt.encode({"alg": "ES256", "kid": ec_key.kid}, forge.claims(sub="bob"), ec_key)
    # RS256 named on a token whose kid is the EC key: the key decides what may verify.
    mismatched = forge.sign(header={"kid": ec_key.kid})

    accepted = await whoami(bearer_gateway, es256)
    refused = await whoami(bearer_gateway, mismatched)

    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["subject"] == "bob"
    assert_rejected(refused, mismatched, because="does not match its key")


async def test_a_slow_jwks_refresh_holds_up_only_the_request_that_started_it(
    settings: Settings, provider_url: str, platform: Platform
) -> None:
    identity = identity_settings(provider_url, jwks_refetch_cooldown_s=0, jwks_max_age_s=0.05)
    token = await dev_token(provider_url, username="alice")
    provider = platform.process("identity")
    async with running_gateway(settings.model_copy(update={"identity": identity})) as gateway:
        assert (await whoami(gateway, token)).status_code == 200
        provider.set_faults(latency_ms=2000, paths=["/jwks"])
        before = jwks_fetches(platform)
        await asyncio.sleep(0.1)

        refreshing = asyncio.create_task(whoami(gateway, token))
        for _ in range(250):
            if jwks_fetches(platform) > before:
                break
            await asyncio.sleep(0.02)
        # The refresh is now waiting on the slow provider; the stale key still serves.
        meanwhile = await whoami(gateway, token)
        still_refreshing = not refreshing.done()
        first = await refreshing

    assert meanwhile.status_code == 200
    assert still_refreshing
    assert first.status_code == 200


async def test_a_token_is_verified_once_and_its_claims_on_every_request(
    settings: Settings, provider_url: str, forge: TokenForge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signature of a token already verified by a key still published is not checked
    again; its expiry is, every time."""
    verifications = 0
    verify = jwt_module.validate_compact

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal verifications
        verifications += 1
        return verify(*args, **kwargs)

    monkeypatch.setattr(jwt_module, "validate_compact", counted)
    identity = identity_settings(provider_url, clock_skew_s=0)
    lasting = forge.sign(forge.claims(sub="dora"))
    async with running_gateway(settings.model_copy(update={"identity": identity})) as gateway:
        answers = [await whoami(gateway, lasting) for _ in range(3)]
        # Signed once the gateway runs (its start may take seconds on a loaded machine), with
        # room to be used before it expires.
        expires_at = int(time.time()) + 5
        brief = forge.sign(forge.claims(sub="eve", exp=expires_at))
        fresh = await whoami(gateway, brief)
        counted_before_expiry = verifications
        await asyncio.sleep(max(0.0, expires_at + 1.5 - time.time()))
        expired = await whoami(gateway, brief)
        still = await whoami(gateway, lasting)

    assert [answer.json()["subject"] for answer in answers] == ["dora"] * 3
    assert fresh.json()["subject"] == "eve" and counted_before_expiry == 2
    assert_rejected(expired, brief, because="expired")
    assert still.json()["subject"] == "dora"
    assert verifications == 2
