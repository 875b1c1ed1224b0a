"""Settings: production refuses to start on development defaults."""

import pytest
from pydantic import ValidationError

from app.settings import IdentitySettings, Settings

SAFE_IDENTITY = {
    "web_client_secret": "a-real-secret",
    "redirect_url": "https://gateway.example.com/auth/callback",
    "discovery_url": "https://idp.example.com/.well-known/openid-configuration",
}


def refusal(**settings: object) -> str:
    with pytest.raises(ValidationError) as refused:
        Settings(environment="production", **settings)  # type: ignore[arg-type]
    return str(refused.value)


def test_production_names_every_development_default() -> None:
    message = refusal()
    assert "GATEWAY_ENVIRONMENT=production" in message
    assert "GATEWAY_IDENTITY__WEB_CLIENT_SECRET" in message
    assert "GATEWAY_IDENTITY__REDIRECT_URL" in message
    # The development provider on this host is a loopback address: not refused on its own.
    assert "GATEWAY_IDENTITY__DISCOVERY_URL" not in message
    assert "web-secret" not in message


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"web_client_secret": "web-secret"}, "GATEWAY_IDENTITY__WEB_CLIENT_SECRET"),
        ({"redirect_url": None}, "GATEWAY_IDENTITY__REDIRECT_URL"),
        (
            {"discovery_url": "http://idp.example.com/.well-known/openid-configuration"},
            "GATEWAY_IDENTITY__DISCOVERY_URL",
        ),
    ],
)
def test_production_refuses_each_development_default(
    override: dict[str, object], named: str
) -> None:
    message = refusal(identity=IdentitySettings(**{**SAFE_IDENTITY, **override}))  # type: ignore[arg-type]
    assert named in message
    for other in {
        "GATEWAY_IDENTITY__WEB_CLIENT_SECRET",
        "GATEWAY_IDENTITY__REDIRECT_URL",
        "GATEWAY_IDENTITY__DISCOVERY_URL",
    } - {named}:
        assert other not in message


@pytest.mark.parametrize(
    "discovery_url",
    [
        "https://idp.example.com/.well-known/openid-configuration",
        "http://127.0.0.1:9107/.well-known/openid-configuration",
        "http://localhost:9107/.well-known/openid-configuration",
        "http://[::1]:9107/.well-known/openid-configuration",
    ],
)
def test_production_starts_with_its_own_settings(discovery_url: str) -> None:
    identity = IdentitySettings(**{**SAFE_IDENTITY, "discovery_url": discovery_url})  # type: ignore[arg-type]
    assert Settings(environment="production", identity=identity).environment == "production"


def test_production_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="GATEWAY_IDENTITY__REDIRECT_URL"):
        Settings()
    for name, value in SAFE_IDENTITY.items():
        monkeypatch.setenv(f"GATEWAY_IDENTITY__{name.upper()}", value)
    assert Settings().identity.redirect_url == SAFE_IDENTITY["redirect_url"]


def test_development_keeps_its_defaults() -> None:
    settings = Settings(environment="development")
    assert settings.identity.web_client_secret.get_secret_value() == "web-secret"
    assert settings.identity.redirect_url is None


def test_trusted_proxies_are_addresses_or_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().http.trusted_proxies == []
    monkeypatch.setenv("GATEWAY_HTTP__TRUSTED_PROXIES", '["127.0.0.1", "10.0.0.0/8", "::1"]')
    proxies = [str(network) for network in Settings().http.trusted_proxies]
    assert proxies == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    monkeypatch.setenv("GATEWAY_HTTP__TRUSTED_PROXIES", '["proxy.example.com"]')
    with pytest.raises(ValidationError, match="trusted_proxies"):
        Settings()
