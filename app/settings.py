"""Gateway settings: environment variables with the GATEWAY_ prefix, nested per concern.

`DATABASE_URL` and `REDIS_URL` are also read without the prefix, as deployments name them.
Nested values use a double underscore: `GATEWAY_UPSTREAM__DEFAULT_TIMEOUT_S=1.5`.
"""

from datetime import UTC, datetime
from ipaddress import ip_address
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    AwareDatetime,
    BaseModel,
    Field,
    IPvAnyNetwork,
    SecretStr,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SERVICES: dict[str, list[str]] = {
    "market-data": ["http://127.0.0.1:9101", "http://127.0.0.1:9102"],
    "portfolio": ["http://127.0.0.1:9103"],
    "orders": ["http://127.0.0.1:9104"],
    "news": ["http://127.0.0.1:9105"],
    "bots": ["http://127.0.0.1:9106"],
}


class UpstreamSettings(BaseModel):
    """How the gateway talks to the platform's services."""

    default_timeout_s: float = Field(2.0, gt=0, le=60)
    connect_timeout_s: float = Field(0.5, gt=0, le=30)
    pool_limit: int = Field(200, ge=1)
    pool_limit_per_host: int = Field(100, ge=1)
    keepalive_timeout_s: float = Field(30.0, gt=0)
    # Identical concurrent GETs (same service, path, query and headers) share one call.
    collapse_gets: bool = True


class HttpSettings(BaseModel):
    """Limits and headers of the gateway's own HTTP surface."""

    max_body_bytes: int = Field(1_000_000, ge=1024)
    cors_origins: list[str] = Field(default_factory=list)
    # Peers (addresses or networks) whose `X-Forwarded-For` names the client; empty trusts
    # none, and the client is the connection's peer. Rate limits per address key on it.
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)
    # The admin API's OpenAPI document for anyone, and listed in /docs; off: admins only.
    public_admin_docs: bool = False


ContentCoding = Literal["br", "zstd", "gzip"]
CONTENT_CODINGS: tuple[ContentCoding, ...] = ("br", "zstd", "gzip")


class CompressionSettings(BaseModel):
    """Response compression (`app.middleware.compression`): the codings offered, in the
    gateway's order of preference when a client accepts several equally."""

    enabled: bool = True
    codings: list[ContentCoding] = Field(default_factory=lambda: list(CONTENT_CODINGS))
    # Bodies smaller than this go out as they are: encoding them saves too little.
    minimum_bytes: int = Field(1024, ge=0)


class CacheSettings(BaseModel):
    """The response cache (`app.cache`), and the BFF routes' cache policies."""

    enabled: bool = True
    # The in-process level: a byte budget (least recently used out first), and how long it
    # keeps an entry at most (an invalidation another process announced while this one was
    # not listening is missed no longer than this).
    memory_max_bytes: int = Field(64 * 2**20, ge=0)
    memory_max_s: float = Field(30.0, gt=0, le=86_400)
    # A larger response is not stored.
    max_entry_bytes: int = Field(1_000_000, ge=0)
    # With Redis: one process fetches a missed key while holding a lock this long at most;
    # the others wait up to `fetch_lock_wait_ms` for its entry, then fetch themselves.
    fetch_lock_ms: int = Field(2_000, ge=10, le=60_000)
    fetch_lock_wait_ms: int = Field(500, ge=0, le=10_000)
    # Freshness of the BFF's shared market data (0 switches a route's cache off).
    quotes_ttl_s: float = Field(1.0, ge=0, le=3600)
    candles_ttl_s: float = Field(5.0, ge=0, le=3600)
    sparklines_ttl_s: float = Field(5.0, ge=0, le=3600)
    news_ttl_s: float = Field(10.0, ge=0, le=3600)


class RateLimitSettings(BaseModel):
    """Rate limits and in-flight caps that apply without a rule in the config store."""

    enabled: bool = True
    # Callers without credentials, per client address.
    anonymous_limit: int = Field(600, ge=1)
    anonymous_period_s: float = Field(60.0, gt=0)
    anonymous_burst: int | None = Field(None, ge=1)
    # Signed-in users (web and mobile), per user; None for no per-user limit.
    user_limit: int | None = Field(1200, ge=1)
    user_period_s: float = Field(60.0, gt=0)
    # With Redis unreachable: "open" limits in each process alone, "closed" answers 503.
    redis_failure: Literal["open", "closed"] = "open"
    # A consumer above its plan's max_in_flight waits this long for a slot before 429.
    in_flight_wait_s: float = Field(0.25, ge=0, le=10)
    # With Redis, a slot held by a process that died is freed after this long; longer than
    # any request may take.
    in_flight_lease_s: float = Field(120.0, ge=1)
    # Requests in flight per gateway process above which it answers 503.
    gateway_max_in_flight: int = Field(2000, ge=1)


class RedisSettings(BaseModel):
    """How every user of shared state talks to Redis (see `app.shared.redis`)."""

    # Every command and connect gives up after this long, so a hung Redis never stalls.
    timeout_s: float = Field(0.5, gt=0, le=5)
    # After a failure Redis is not asked again for this long; one request then probes it.
    retry_s: float = Field(1.0, gt=0, le=60)
    # Connections per process; a burst beyond them waits up to `timeout_s` for one.
    max_connections: int = Field(200, ge=1, le=10_000)
    # A Redis Cluster's seed nodes ("host:port"), as `redis+cluster://h1:p1,h2:p2` would
    # name them; the client discovers the rest. REDIS_URL may then be unset.
    cluster_nodes: list[str] = Field(default_factory=list)
    # Sentinels ("host:port") watching the primary named `sentinel_service`, as
    # `redis+sentinel://h1:p1,h2:p2/<service>` would name them.
    sentinels: list[str] = Field(default_factory=list)
    sentinel_service: str = ""


class AccessSettings(BaseModel):
    """API keys, consumer quotas and order idempotency."""

    # HMAC key for API key hashes; without it keys are hashed with plain SHA-256, which is
    # safe for 256-bit random secrets but not bound to this deployment.
    api_key_pepper: SecretStr | None = None
    # How long a placed order's result is replayed for a repeated Idempotency-Key.
    idempotency_ttl_s: int = Field(86_400, ge=60)
    # A claim on a key outlives a crashed process by at most this long.
    idempotency_lease_s: float = Field(30.0, gt=0, le=600)
    # How long a duplicate waits for the first request's result before answering 409.
    idempotency_wait_s: float = Field(10.0, gt=0, le=120)


# The development identity provider's secret for the web client (`backends/`); refused in
# production.
DEVELOPMENT_WEB_CLIENT_SECRET = "web-secret"

SigningAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]
DEFAULT_SIGNING_ALGORITHMS: tuple[SigningAlgorithm, ...] = ("RS256", "ES256")


class IdentitySettings(BaseModel):
    """Who the gateway trusts to identify users and partners, and how the web login works.

    Only the issuer's discovery URL is configured; the issuer, its keys and endpoints are
    read from the discovery document.
    """

    discovery_url: str = "http://127.0.0.1:9107/.well-known/openid-configuration"
    audience: str = "stockbot-gateway"
    # Fixed per issuer, never taken from a token: no "none", no HMAC with a public key.
    algorithms: list[SigningAlgorithm] = Field(
        default_factory=lambda: list(DEFAULT_SIGNING_ALGORITHMS), min_length=1
    )
    clock_skew_s: int = Field(30, ge=0, le=300)
    max_token_bytes: int = Field(8192, ge=512)
    # An unknown key id triggers at most one JWKS fetch per cooldown, so forged kids cannot
    # turn the gateway into a load generator against the provider.
    jwks_refetch_cooldown_s: float = Field(30.0, ge=0)
    # Known keys are re-read after this long, so retired keys stop verifying.
    jwks_max_age_s: float = Field(300.0, gt=0)
    provider_timeout_s: float = Field(3.0, gt=0, le=30)
    web_client_id: str = "stockbot-web"
    web_client_secret: SecretStr = SecretStr(DEVELOPMENT_WEB_CLIENT_SECRET)
    web_scopes: str = "openid profile email offline_access"
    # None: the gateway's own /auth/callback as the browser reached it.
    redirect_url: str | None = None
    cookie_name: str = "stockbot_session"
    login_cookie_name: str = "stockbot_login"
    # None: Secure everywhere except the development and test environments.
    cookie_secure: bool | None = None
    session_ttl_s: int = Field(8 * 3600, ge=60)
    login_ttl_s: int = Field(600, ge=30)
    # A session's access token is refreshed on use when it expires within this many seconds.
    refresh_before_s: int = Field(60, ge=0)
    # Order entry and cancel ask the provider whether a bearer token is still active (RFC
    # 7662), so a token revoked there stops placing orders within `introspection_cache_s`;
    # one more provider round trip per order call, and none while the answer is cached.
    introspect_orders: bool = False
    introspection_cache_s: float = Field(5.0, ge=0, le=300)
    roles_claim: str = "roles"
    scopes_claim: str = "scope"
    account_claim: str = "account_ids"


class ResilienceSettings(BaseModel):
    """Deadlines of requests, and how upstream instances are discovered and health-checked."""

    default_deadline_ms: int = Field(5_000, ge=10, le=600_000)
    # Path prefix -> deadline in ms, e.g. {"/partner/v1/orders": 8000}; longest prefix wins.
    route_deadlines_ms: dict[str, int] = Field(default_factory=dict)
    # An optional section of a view (news, bots, ...) waits at most this long, then it is null
    # and named in `degraded`; required sections wait for the request's deadline.
    optional_section_ms: int = Field(800, ge=10, le=600_000)
    # DNS discovery: empty uses the system's resolvers.
    dns_nameservers: list[str] = Field(default_factory=list)
    dns_port: int = Field(53, ge=1, le=65535)
    # A self-registered instance that stops heartbeating leaves after this long by default.
    registration_ttl_s: float = Field(15.0, gt=0, le=3600)
    # How often each process re-reads self-registrations from Redis.
    registry_refresh_s: float = Field(1.0, gt=0, le=60)
    # Background health checks of every instance (per-service settings in its policy).
    health_checks: bool = True


class VersionDates(BaseModel):
    """When a superseded API version was (or will be) deprecated, and when it stops answering."""

    deprecated_at: AwareDatetime
    sunset: AwareDatetime


class VersionSettings(BaseModel):
    """The dates of API versions that have a successor (`GET /versions`, the `Deprecation`
    and `Sunset` headers), per version, e.g. `web/v1`."""

    superseded: dict[str, VersionDates] = Field(
        default_factory=lambda: {
            "web/v1": VersionDates(
                deprecated_at=datetime(2026, 12, 1, tzinfo=UTC),
                sunset=datetime(2027, 6, 30, tzinfo=UTC),
            )
        }
    )


class PortalSettings(BaseModel):
    """The developer portal at `/portal` (`app.portal`) and the usage it shows partners
    (`app.security.usage`)."""

    enabled: bool = True
    # A sign-up waits for an admin's approval (as Kong's and Tyk's portals do); off: a
    # signed-in developer who asks for access gets a consumer at once, on `signup_plan`.
    require_approval: bool = True
    # The plan a new developer's consumer is put on, unless the approving admin picks another.
    signup_plan: str | None = None
    # The longest a rotated key keeps working beside its successor.
    max_rotation_overlap_h: int = Field(168, ge=0, le=24 * 90)
    # Usage per consumer: hourly buckets for two days, daily ones for this many days.
    usage_retention_days: int = Field(30, ge=1, le=400)
    # How often each process adds its counted usage to Redis (or its own memory).
    usage_flush_s: float = Field(1.0, gt=0, le=60)


class BatchSettings(BaseModel):
    """`POST /web/v1/batch`: how many sub-requests one batch holds, and how many run at once."""

    max_requests: int = Field(20, ge=1, le=100)
    concurrency: int = Field(5, ge=1, le=100)


class McpSettings(BaseModel):
    """The MCP endpoint at `/mcp`: the partner API's operations as tools for AI agents."""

    enabled: bool = True
    # Host header values `/mcp` answers (the SDK's DNS rebinding protection), `name:*` for
    # any port; a deployment names its public host. `["*"]` turns the check off (a proxy in
    # front checks Host).
    allowed_hosts: list[str] = Field(
        default_factory=lambda: [
            "127.0.0.1",
            "127.0.0.1:*",
            "localhost",
            "localhost:*",
            "[::1]",
            "[::1]:*",
        ]
    )
    # Origin values a browser-based client may send (none sent is always accepted).
    allowed_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    )
    # One JSON reply per POST instead of a one-event SSE stream.
    json_response: bool = False


class StreamSettings(BaseModel):
    """Live quote streams (SSE and WebSocket, `app.streams`)."""

    # A comment line on every SSE stream this often, so proxies keep it open.
    heartbeat_s: float = Field(15.0, gt=0, le=300)
    # How often each stream's credential is confirmed again (expired or revoked: closed).
    credential_check_s: float = Field(2.0, gt=0, le=300)
    # Open streams per principal (in this process) and per process; 429 / 503 beyond.
    max_per_principal: int = Field(10, ge=1, le=1_000_000)
    max_per_process: int = Field(20_000, ge=1, le=1_000_000)
    # A client whose one write waits longer than this (it stopped reading) is dropped;
    # until then it gets the latest quote per symbol (conflation).
    write_stall_s: float = Field(5.0, gt=0, le=300)
    # Upstream reconnects back off from the first to the longest delay, jittered.
    reconnect_first_s: float = Field(0.2, gt=0, le=60)
    reconnect_max_s: float = Field(5.0, gt=0, le=300)
    # The client's reconnect delay, sent as the SSE `retry:` field.
    client_retry_ms: int = Field(2000, ge=0, le=600_000)


class MetricsSettings(BaseModel):
    """Prometheus metrics (`GET /metrics`); tracing is configured by the standard `OTEL_*`
    variables (see `app.observability.tracing`)."""

    # Off: no metric is recorded and /metrics answers 404.
    enabled: bool = True
    # When set, /metrics answers only `Authorization: Bearer <token>` (401 otherwise).
    token: SecretStr | None = None


# First path segments the pass-through prefix may never take: the BFF, admin, auth, docs
# and health paths are the gateway's own.
RESERVED_SEGMENTS = frozenset(
    {"web", "mobile", "partner", "admin", "auth", "docs", "openapi", "healthz", "readyz", "metrics"}
)


class PassthroughSettings(BaseModel):
    """Config-driven pass-through routes (`app.passthrough`)."""

    # Where they are served: one path segment, never one of the gateway's own.
    prefix: str = Field("/api/", pattern=r"^/[a-z0-9][a-z0-9._-]{0,62}/$")
    # A streamed request body may be this large (the gateway's own routes: http.max_body_bytes).
    max_body_bytes: int = Field(1_073_741_824, ge=1024)
    # A body a route validates or maps is read whole: at most this large.
    max_json_body_bytes: int = Field(1_000_000, ge=1024, le=100_000_000)
    # The gateway's name in `Via`.
    via: str = Field("stock-bot-gateway", pattern=r"^[A-Za-z0-9._-]{1,64}$")

    @model_validator(mode="after")
    def _prefix_is_not_reserved(self) -> Self:
        segment = self.prefix.strip("/")
        if segment in RESERVED_SEGMENTS or segment.startswith("openapi"):
            raise ValueError(
                f"the pass-through prefix {self.prefix} would shadow the gateway's own"
            )
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = Field(
        "sqlite+aiosqlite:///./var/gateway.db",
        validation_alias=AliasChoices("DATABASE_URL", "GATEWAY_DATABASE_URL"),
    )
    # No call waits on the config database longer than these (nor than its request's
    # deadline): connecting (or waiting for a pooled connection), and one statement.
    db_connect_timeout_s: float = Field(3.0, gt=0, le=60)
    db_statement_timeout_s: float = Field(5.0, gt=0, le=300)
    # Start-up tries the database this long; then it serves the snapshot file, or exits.
    startup_db_timeout_s: float = Field(10.0, gt=0, le=600)
    # Each load from the database is written here (JSON), to start from while the database
    # is unavailable; empty: no file.
    config_snapshot_path: str = "var/config-snapshot.json"
    redis_url: str | None = Field(
        None, validation_alias=AliasChoices("REDIS_URL", "GATEWAY_REDIS_URL")
    )
    redis_prefix: str = "gw:"
    redis: RedisSettings = RedisSettings()
    # Seconds between each process's own reloads of the config store, a fallback for lost
    # change notices (and the only way without Redis); 0 switches them off.
    config_refresh_s: float = Field(30.0, ge=0)
    # Seconds between each process's check of the store's revision (one small query), which
    # catches a missed change notice; 0 switches it off.
    config_revision_check_s: float = Field(0.5, ge=0)
    # On SIGTERM (`python -m app.serve`), /readyz answers 503 and every route still serves
    # this long before the server stops; longer than the load balancer takes to notice.
    drain_s: float = Field(5.0, ge=0, le=300)
    # Seeds the service registry in the config store when a service is not there yet.
    services: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_SERVICES))
    # Bootstrap token for the admin API; off unless configured.
    admin_token: str | None = None
    upstream: UpstreamSettings = UpstreamSettings()
    http: HttpSettings = HttpSettings()
    compression: CompressionSettings = CompressionSettings()
    cache: CacheSettings = CacheSettings()
    resilience: ResilienceSettings = ResilienceSettings()
    access: AccessSettings = AccessSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    identity: IdentitySettings = IdentitySettings()
    streams: StreamSettings = StreamSettings()
    mcp: McpSettings = McpSettings()
    versions: VersionSettings = VersionSettings()
    batch: BatchSettings = BatchSettings()
    passthrough: PassthroughSettings = PassthroughSettings()
    portal: PortalSettings = PortalSettings()
    log_level: str = "info"
    # json: one JSON object per line (collectors); console: readable lines for development.
    log_format: Literal["json", "console"] = "json"
    access_log: bool = True
    metrics: MetricsSettings = MetricsSettings()

    @model_validator(mode="after")
    def _production_has_no_development_defaults(self) -> Self:
        """Production refuses to start on a setting that only suits development."""
        if self.environment == "production":
            refused = _development_defaults(self)
            if refused:
                raise ValueError(
                    "GATEWAY_ENVIRONMENT=production refuses development defaults: "
                    + "; ".join(refused)
                )
        return self


def _development_defaults(settings: Settings) -> list[str]:
    """What in `settings` only suits development, each naming its environment variable."""
    identity = settings.identity
    refused = []
    if identity.web_client_secret.get_secret_value() == DEVELOPMENT_WEB_CLIENT_SECRET:
        refused.append(
            "GATEWAY_IDENTITY__WEB_CLIENT_SECRET is the development provider's secret "
            "(set the web client's secret from your provider)"
        )
    if identity.redirect_url is None:
        refused.append(
            "GATEWAY_IDENTITY__REDIRECT_URL is not set (without it the login's redirect_uri "
            "follows the request's Host header)"
        )
    if not _is_private_channel(identity.discovery_url):
        refused.append(
            "GATEWAY_IDENTITY__DISCOVERY_URL is plain http to another host (the provider's "
            "keys and endpoints must come over https)"
        )
    return refused


def _is_private_channel(url: str) -> bool:
    """https, or http to this host only."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False
