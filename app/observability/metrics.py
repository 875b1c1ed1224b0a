"""The gateway's Prometheus metrics: every metric it exports, defined once, in one place.

Names follow the OpenTelemetry HTTP semantic conventions in Prometheus form
(`http.server.request.duration` -> `http_server_request_duration_seconds`, attribute dots as
underscores); what is the gateway's own is `gateway_*`. Every label takes values from a
bounded set: route templates, never raw paths; configured services, instances, plans and
limit names; a fixed list of methods.

Several worker processes (`python -m app.serve --workers N`) share one directory named by
`PROMETHEUS_MULTIPROC_DIR` (prometheus_client's multiprocess mode, chosen when the variable
is set before this module is imported); `/metrics` then adds up every worker's files.
Gauges say how: `livesum` (in-flight requests), `livemax` (breaker state: the worst any live
worker sees), `livemin` (health, config version: the least any live worker has).
"""

import glob
import os
import shutil
import tempfile
from collections.abc import Callable

from prometheus_client import REGISTRY as PROCESS_REGISTRY
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# No `*_created` series: a timestamp per label set that no dashboard reads.
disable_created_metrics()

# The semantic conventions' advice for `http.server.request.duration` and
# `http.client.request.duration`, in seconds.
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
# Methods the conventions name; anything else is `_OTHER`, so a client cannot mint labels.
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
# The route label of a request no route matched (404, or answered by the edge first).
UNMATCHED_ROUTE = "unmatched"

# -- HTTP server (the edge) -------------------------------------------------------------
http_server_request_duration = Histogram(
    "http_server_request_duration_seconds",
    "Duration of HTTP server requests, by method, route template and status.",
    ["http_request_method", "http_route", "http_response_status_code"],
    buckets=DURATION_BUCKETS,
)
http_server_active_requests = Gauge(
    "http_server_active_requests",
    "HTTP server requests in flight.",
    ["http_request_method"],
    multiprocess_mode="livesum",
)

# -- HTTP client (the upstream caller), one observation per try --------------------------
http_client_request_duration = Histogram(
    "http_client_request_duration_seconds",
    "Duration of each try of an upstream call, by service, instance, method and status "
    "(error_type for a try that got no status).",
    ["service", "instance", "http_request_method", "http_response_status_code", "error_type"],
    buckets=DURATION_BUCKETS,
)

# -- The gateway's own ------------------------------------------------------------------
rate_limit_refusals = Counter(
    "gateway_rate_limit_refusals",
    "Requests refused by a rate limit or in-flight cap (429), by the limit that refused.",
    ["policy"],
)
quota_refusals = Counter(
    "gateway_quota_refusals",
    "Partner calls refused because their plan's quota is used up, by plan.",
    ["plan"],
)
breaker_state = Gauge(
    "gateway_breaker_state",
    "Circuit breaker state per upstream instance: 0 closed, 1 half-open, 2 open.",
    ["service", "instance"],
    multiprocess_mode="livemax",
)
breaker_transitions = Counter(
    "gateway_breaker_transitions",
    "Circuit breaker state changes per upstream instance, by the state entered.",
    ["service", "instance", "state"],
)
instance_healthy = Gauge(
    "gateway_instance_healthy",
    "Whether an upstream instance passes its health checks (1) or not (0).",
    ["service", "instance"],
    multiprocess_mode="livemin",
)
instance_ejections = Counter(
    "gateway_instance_ejections",
    "Upstream instances taken out of rotation, by service, instance and cause "
    "(passive: failed calls; check: failed health checks).",
    ["service", "instance", "cause"],
)
cache_lookups = Counter(
    "gateway_cache_lookups",
    "Response cache lookups by result (hit, miss, stale, revalidated, bypass, ...).",
    ["result"],
)
upstream_retries = Counter(
    "gateway_upstream_retries",
    "Upstream calls tried again, by service.",
    ["service"],
)
retry_budget_refusals = Counter(
    "gateway_retry_budget_refusals",
    "Retries not made because the service's retry budget was spent, by service.",
    ["service"],
)
bulkhead_rejections = Counter(
    "gateway_bulkhead_rejections",
    "Upstream calls refused because the service's bulkhead was full, by service.",
    ["service"],
)
config_version = Gauge(
    "gateway_config_version",
    "Version of the config snapshot being served (least of the live workers).",
    multiprocess_mode="livemin",
)
config_reloads = Counter(
    "gateway_config_reloads",
    "Config snapshot loads, by result (loaded, failed).",
    ["result"],
)
config_refused_rows = Gauge(
    "gateway_config_refused_rows",
    "Config rows the snapshot being served refused (outside what the gateway can serve).",
    multiprocess_mode="livemax",
)
idempotent_replays = Counter(
    "gateway_idempotent_replays",
    "Order requests answered from the idempotency ledger instead of placing an order again.",
)
stream_clients = Gauge(
    "gateway_stream_clients",
    "Open quote streams (SSE and WebSocket).",
    multiprocess_mode="livesum",
)
stream_drops = Counter(
    "gateway_stream_drops",
    "Stream clients dropped because a write to them stalled past streams.write_stall_s.",
)
stream_conflated_quotes = Counter(
    "gateway_stream_conflated_quotes",
    "Quotes replaced in a stream client's buffer by a newer one before it took them.",
)
stream_upstream_connects = Counter(
    "gateway_stream_upstream_connects",
    "Attempts to open the market-data quote stream, by result (opened, failed).",
    ["result"],
)


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "_OTHER"


def count_cache_lookup(result: str) -> None:
    """One response-cache lookup: `result` from a small fixed set (hit, miss, stale, ...)."""
    cache_lookups.labels(result).inc()


class ServerMetrics:
    """The edge's per-request metrics, with label children kept, so a request costs two
    dictionary lookups and no lock for the label set."""

    def __init__(self) -> None:
        self._durations: dict[tuple[str, str, int], Callable[[float], None]] = {}
        self._active: dict[str, Gauge] = {}

    def active(self, method: str) -> Gauge:
        gauge = self._active.get(method)
        if gauge is None:
            gauge = self._active[method] = http_server_active_requests.labels(method_label(method))
        return gauge

    def observe(self, *, method: str, route: str | None, status: int, seconds: float) -> None:
        key = (method, route or UNMATCHED_ROUTE, status)
        observe = self._durations.get(key)
        if observe is None:
            child = http_server_request_duration.labels(method_label(method), key[1], str(status))
            observe = self._durations[key] = child.observe
        observe(seconds)


class ClientMetrics:
    """The caller's per-try duration, label children kept as in `ServerMetrics`."""

    def __init__(self) -> None:
        self._durations: dict[tuple[str, str, str, int | None, str], Callable[[float], None]] = {}

    def observe(
        self,
        *,
        service: str,
        instance: str,
        method: str,
        status: int | None,
        error_type: str = "",
        seconds: float,
    ) -> None:
        key = (service, instance, method, status, error_type)
        observe = self._durations.get(key)
        if observe is None:
            child = http_client_request_duration.labels(
                service,
                instance,
                method_label(method),
                "" if status is None else str(status),
                error_type,
            )
            observe = self._durations[key] = child.observe
        observe(seconds)


def share_between_workers() -> Callable[[], None]:
    """Before worker processes start: give them one metrics directory (the one
    `PROMETHEUS_MULTIPROC_DIR` names, emptied of an earlier run's files, or a new temporary
    one). Returns what removes the temporary one once every worker has exited."""
    directory = multiprocess_directory()
    if directory is None:
        directory = tempfile.mkdtemp(prefix="gateway-metrics-")
        os.environ[MULTIPROC_DIR_VARIABLE] = directory
        return lambda: shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)
    # An earlier run's counters would be added to this one's.
    for stale in glob.glob(os.path.join(directory, "*.db")):
        os.remove(stale)
    return lambda: None


def forget_worker(pid: int) -> None:
    """A worker exited: its live gauges (in-flight requests, breaker state, health, config
    version) stop counting; its counters and histograms stay, as Prometheus expects."""
    directory = multiprocess_directory()
    if directory is not None:
        mark_process_dead(pid, directory)


def multiprocess_directory() -> str | None:
    """The directory worker processes share their metrics in, when several serve."""
    return os.environ.get(MULTIPROC_DIR_VARIABLE) or None


def exposition() -> bytes:
    """The Prometheus text of every metric: this process's, or every worker's added up."""
    directory = multiprocess_directory()
    if directory is None:
        return generate_latest(PROCESS_REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)
