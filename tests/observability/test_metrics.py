"""`GET /metrics` after known traffic: the OpenTelemetry HTTP names with route templates, the
upstream tries per service and instance, the gateway's own counters; its protection; and the
Grafana dashboard asks only for metrics the gateway exports."""

import json
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from app.observability import metrics
from app.settings import MetricsSettings, RateLimitSettings, Settings
from backends.launcher import Platform
from tests.fixtures.consumers import create_partner
from tests.fixtures.gateway import running_gateway
from tests.fixtures.identity import bearer_headers
from tests.fixtures.platform_control import platform_control

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "gateway-dashboard.json"
ADMIN = {"Authorization": "Bearer test-admin-token"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (n, have), value in samples.items() if n == name and wanted <= have)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def label_values(samples: Iterable[tuple[str, frozenset[tuple[str, str]]]], label: str) -> set[str]:
    return {value for _, have in samples for key, value in have if key == label}


async def test_known_traffic_is_counted_under_route_templates(
    settings: Settings, platform: Platform
) -> None:
    async with running_gateway(settings) as gw:
        partner = await create_partner(gw.client)
        before = await scrape(gw.client)
        for symbol in ("AAPL", "MSFT", "NVDA"):
            response = await gw.client.get(
                "/partner/v1/quotes", params={"symbols": symbol}, headers=partner.headers
            )
            assert response.status_code == 200
        for _ in range(2):
            found = await gw.client.get(f"/admin/v1/consumers/{partner.consumer_id}", headers=ADMIN)
            assert found.status_code == 200
        for number in range(4):
            missing = await gw.client.get(f"/web/v1/no-such-thing/{number}")
            assert missing.status_code == 404
        after = await scrape(gw.client)

    requests = "http_server_request_duration_seconds_count"
    assert (
        delta(
            before,
            after,
            requests,
            http_request_method="GET",
            http_route="/partner/v1/quotes",
            http_response_status_code="200",
        )
        == 3
    )
    assert delta(before, after, requests, http_route="/admin/v1/consumers/{consumer_id}") == 2
    assert (
        delta(before, after, requests, http_route="unmatched", http_response_status_code="404") == 4
    )
    # No label carries a raw id: the templates keep the series bounded.
    routes = label_values(after, "http_route")
    assert f"/admin/v1/consumers/{partner.consumer_id}" not in routes
    assert not any("no-such-thing" in route for route in routes)
    # The histogram's buckets are the conventions' (seconds).
    buckets = {
        float(dict(labels)["le"])
        for (name, labels) in after
        if name == "http_server_request_duration_seconds_bucket"
    }
    assert buckets == {*metrics.DURATION_BUCKETS, float("inf")}

    # One upstream try per quotes call, counted per service and instance.
    tries = "http_client_request_duration_seconds_count"
    assert delta(before, after, tries, service="market-data", http_response_status_code="200") == 3
    instances = label_values(
        [key for key in after if key[0] == tries and ("service", "market-data") in key[1]],
        "instance",
    )
    assert instances <= set(platform.urls["market-data"])
    # Nothing in flight but the scrape itself.
    assert total(after, "http_server_active_requests") == 1


async def test_gateway_counters_follow_refusals_retries_and_the_config(
    settings: Settings, platform: Platform
) -> None:
    limits = RateLimitSettings(anonymous_limit=2, anonymous_period_s=600)
    async with (
        platform_control(platform) as control,
        running_gateway(settings.model_copy(update={"rate_limit": limits})) as gw,
    ):
        partner = await create_partner(gw.client)
        before = await scrape(gw.client)
        statuses = [
            (await gw.client.get("/partner/v1/quotes", params={"symbols": "AAPL"})).status_code
            for _ in range(4)
        ]
        await control.fault("market-data", error_rate=1.0, error_status=503, paths=["/quotes"])
        failed = await gw.client.get(
            "/partner/v1/quotes", params={"symbols": "TSLA"}, headers=partner.headers
        )
        after = await scrape(gw.client)
    assert statuses == [401, 401, 429, 429]
    assert delta(before, after, "gateway_rate_limit_refusals_total") == 2
    assert failed.status_code == 503
    retries = delta(before, after, "gateway_upstream_retries_total", service="market-data")
    assert retries >= 1
    assert (
        delta(before, after, "http_client_request_duration_seconds_count", service="market-data")
        == retries + 1
    )
    # The partner's creation reloaded the config: the version served is the latest.
    assert total(after, "gateway_config_version") >= 2
    assert delta(before, after, "gateway_config_reloads_total", result="loaded") >= 0


async def test_metrics_can_require_a_token_or_be_switched_off(settings: Settings) -> None:
    protected = settings.model_copy(update={"metrics": MetricsSettings(token="scrape-secret")})
    async with running_gateway(protected) as gw:
        refused = await gw.client.get("/metrics")
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["www-authenticate"].startswith("Bearer")
        wrong = await gw.client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        await scrape(gw.client, Authorization="Bearer scrape-secret")
    off = settings.model_copy(update={"metrics": MetricsSettings(enabled=False)})
    async with running_gateway(off) as gw:
        assert (await gw.client.get("/metrics")).status_code == 404


def exported_sample_names() -> set[str]:
    """Every sample name `/metrics` can show for the gateway's metrics, by type."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    names = set()
    for family in REGISTRY.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


_LABEL_GROUPS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b")
_PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
    "clamp_min", "clamp_max", "le", "by", "without", "on", "ignoring", "bool", "and", "or",
    "unless", "time", "abs", "e",
}  # fmt: skip


def metrics_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label names and functions left out)."""
    bare = _RANGES.sub("", _MATCHERS.sub("", _LABEL_GROUPS.sub("", expr)))
    return {
        word
        for word in _IDENTIFIER.findall(bare)
        if word not in _PROMQL_WORDS and not re.fullmatch(r"[0-9e.]+", word)
    }


def test_every_dashboard_panel_queries_metrics_the_gateway_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_sample_names()
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        exprs = [target["expr"] for target in panel.get("targets", [])]
        assert exprs, f"panel {panel['title']!r} has no query"
        for expr in exprs:
            named = metrics_in(expr)
            assert named, f"panel {panel['title']!r} queries no metric: {expr}"
            unknown = named - exported
            assert not unknown, f"panel {panel['title']!r} queries {unknown}, not exported"


def test_the_dashboard_check_sees_what_it_checks() -> None:
    assert metrics_in(
        'sum by (http_route) (rate(http_server_request_duration_seconds_count{x="1"}[5m]))'
    ) == {"http_server_request_duration_seconds_count"}
    assert metrics_in("max(gateway_nonexistent_total) / 2") == {"gateway_nonexistent_total"}
    assert "gateway_nonexistent_total" not in exported_sample_names()


async def test_an_idempotent_replay_and_a_used_up_quota_are_counted(
    settings: Settings, platform: Platform
) -> None:
    async with running_gateway(settings) as gw:
        partner = await create_partner(gw.client, plan={"quota_per_day": 1})
        alice = await bearer_headers(platform, username="alice")
        before = await scrape(gw.client)
        key = {"Idempotency-Key": f"metrics-{uuid.uuid4()}"}
        order = {
            "symbol": "AAPL",
            "side": "buy",
            "type": "limit",
            "quantity": 1,
            "limit_price": 1.0,
        }
        first = await gw.client.post("/web/v1/orders", json=order, headers={**alice, **key})
        again = await gw.client.post("/web/v1/orders", json=order, headers={**alice, **key})
        quotes = [
            (
                await gw.client.get(
                    "/partner/v1/quotes", params={"symbols": "AAPL"}, headers=partner.headers
                )
            ).status_code
            for _ in range(2)
        ]
        after = await scrape(gw.client)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true"
    assert delta(before, after, "gateway_idempotent_replays_total") == 1
    assert quotes == [200, 429]
    assert delta(before, after, "gateway_quota_refusals_total", plan=partner.plan) == 1
