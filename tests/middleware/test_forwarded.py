"""The client's address: X-Forwarded-For only from trusted proxies, and the per-address
limits and the access log key on what it yields."""

import json
import logging
from collections.abc import Iterator
from ipaddress import ip_network

import httpx
import pytest

from app.middleware.forwarded import TrustedProxies
from app.observability.logging import JsonFormatter
from app.settings import HttpSettings, RateLimitSettings, Settings
from tests.fixtures.gateway import running_gateway

# Anonymous calls are admitted per address, then refused by authentication (401); over the
# limit they are 429.
QUOTES = "/partner/v1/quotes?symbols=AAPL"
ALICE, BOB = "203.0.113.7", "198.51.100.9"


def limited(settings: Settings, *, trusted: list[str]) -> Settings:
    return settings.model_copy(
        update={
            "rate_limit": RateLimitSettings(anonymous_limit=2, anonymous_period_s=600),
            "http": HttpSettings(trusted_proxies=trusted),  # type: ignore[arg-type]
        }
    )


async def statuses(client: httpx.AsyncClient, forwarded_for: str, count: int) -> list[int]:
    headers = {"X-Forwarded-For": forwarded_for}
    return [(await client.get(QUOTES, headers=headers)).status_code for _ in range(count)]


async def test_without_trusted_proxies_forwarded_for_is_ignored(settings: Settings) -> None:
    async with running_gateway(limited(settings, trusted=[])) as gw:
        assert await statuses(gw.client, ALICE, 2) == [401, 401]
        # Another claimed address is still the same peer: its limit is spent.
        assert await statuses(gw.client, BOB, 1) == [429]


async def test_a_trusted_proxys_forwarded_addresses_are_limited_apart(settings: Settings) -> None:
    async with running_gateway(limited(settings, trusted=["127.0.0.1"])) as gw:
        assert await statuses(gw.client, ALICE, 3) == [401, 401, 429]
        assert await statuses(gw.client, BOB, 2) == [401, 401]
        # What a client writes to the left of the proxy's entry changes nothing.
        assert await statuses(gw.client, f"{BOB}, {ALICE}", 1) == [429]
        assert await statuses(gw.client, f"{ALICE}, {BOB}", 1) == [429]


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(JsonFormatter().format(record)))


@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> Iterator[_Lines]:
    # The gateway's loggers do not propagate to the root, so listen on the access logger.
    caplog.set_level(logging.INFO, logger="gateway.access")
    lines = _Lines()
    logger = logging.getLogger("gateway.access")
    logger.addHandler(lines)
    try:
        yield lines
    finally:
        logger.removeHandler(lines)


async def test_the_access_log_names_the_forwarded_client(
    settings: Settings, access_log: _Lines
) -> None:
    trusted = limited(settings, trusted=["127.0.0.0/8"]).model_copy(update={"access_log": True})
    async with running_gateway(trusted) as gw:
        await gw.client.get(
            "/healthz", headers={"X-Forwarded-For": ALICE, "X-Request-ID": "forwarded-log"}
        )
    (line,) = [line for line in access_log.lines if line["request_id"] == "forwarded-log"]
    assert line["client"] == ALICE


PROXIES = TrustedProxies([ip_network("10.0.0.0/8"), ip_network("::1/128")])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        # The peer is no trusted proxy: whatever it claims is ignored.
        ("192.0.2.1", [b"203.0.113.7"], "192.0.2.1"),
        # No header: the peer, trusted or not.
        ("10.0.0.1", [], "10.0.0.1"),
        ("10.0.0.1", [b"203.0.113.7"], "203.0.113.7"),
        # The rightmost untrusted entry, past every trusted proxy.
        ("10.0.0.1", [b"198.51.100.9, 203.0.113.7, 10.0.0.2"], "203.0.113.7"),
        # Repeated headers are one list, in order.
        ("10.0.0.1", [b"198.51.100.9", b"203.0.113.7, 10.0.0.2"], "203.0.113.7"),
        # Every entry trusted: the leftmost.
        ("10.0.0.1", [b"10.0.0.3, 10.0.0.2"], "10.0.0.3"),
        # Not an address: the last trusted hop is the best-known client.
        ("10.0.0.1", [b"203.0.113.7, garbage, 10.0.0.2"], "10.0.0.2"),
        ("10.0.0.1", [b""], "10.0.0.1"),
        ("::1", [b"[2001:db8::1]"], "2001:db8::1"),
        ("unknown", [b"203.0.113.7"], "unknown"),
    ],
)
def test_client_address(peer: str, forwarded_for: list[bytes], client: str) -> None:
    assert PROXIES.client_address(peer, forwarded_for) == client


def test_no_trusted_proxies_trust_nobody() -> None:
    assert TrustedProxies([]).client_address("127.0.0.1", [b"203.0.113.7"]) == "127.0.0.1"
