"""Run every benchmark scenario in one go and print figures (not pass/fail).

Ratios against a bare baseline measured in the same run keep a noisy machine comparable
with itself: each side is measured ROUNDS times, interleaved, and the best run counts.
Instruction counts (callgrind) do not move with the machine's noise at all.

    BENCH_SECONDS (5)  BENCH_ROUNDS (3)  BENCH_CONNECTIONS (50)
    BENCH_REDIS_URL (unset: a redis-server of the bench's own, off the measured core)
"""

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from backends.launcher import start_platform
from bench.batch import batch_against_separate
from bench.cache import cached_against_uncached
from bench.instructions import measure_targets
from bench.load import print_result, run_load
from bench.mcp import mcp_tool_calls
from bench.memoized_upstream import stages_floor, start_memoized_upstreams
from bench.observability import instructions_on_against_off, observability_on_against_off
from bench.passthrough import passthrough_rows
from bench.rate_limited import redis_url
from bench.scaleout import scaleout
from bench.servers import Server, bench_redis, start_gateway, start_upstream
from bench.streams import stream_capacity
from bench.throughput import partner_quotes
from bench.usage import usage_on_against_off

ROOT = Path(__file__).resolve().parents[1]
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
DASHBOARD_DELAY_MS = 20
DASHBOARD_STAGES = 2
# The calls of the dashboard's first stage (account, positions, watchlists, orders, bots).
DASHBOARD_FIRST_CALLS = 5
# The targets for the dashboard, as shares of stages x delay.
DASHBOARD_P50_TARGET = 1.15
DASHBOARD_P99_TARGET = 1.5


def migrated_database(directory: str, name: str = "bench") -> str:
    """A new SQLite config database `name` in `directory`, migrated to the latest schema:
    one per row (each row files its own partner, plan and routes)."""
    url = f"sqlite+aiosqlite:///{directory}/{name}.db"
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        check=True,
        capture_output=True,
    )
    return url


def instructions_per_request(upstream: Server) -> None:
    """Callgrind's count for one request of the gateway (partner quotes, the pass-through
    route), of the bare handler and of the same forward without a framework (the floor of
    Python and aiohttp for this request)."""
    print("\n## Instructions per request (callgrind, in-process driver)")
    if shutil.which("valgrind") is None:
        print("skipped: valgrind is not installed (`make bench` installs it where it can)")
        return
    try:
        counts = measure_targets(upstream.url)
    except subprocess.CalledProcessError as failed:
        error = failed.stderr.decode(errors="replace") if failed.stderr else ""
        print(f"skipped: the driver failed ({failed.returncode}): {error.strip()[-400:]}")
        return
    except subprocess.TimeoutExpired as expired:
        print(f"skipped: the driver did not finish within {expired.timeout:g} s")
        return
    bare = counts["baseline"]
    print(f"{'bare FastAPI + aiohttp handler':<48} {bare:>12,.0f}")
    for label, target in (
        ("the same forward, plain ASGI (no framework)", "raw"),
        ("gateway, API key + Redis rate limit", "gateway"),
        ("pass-through route, key + limit + metrics + log", "passthrough"),
    ):
        print(f"{label:<48} {counts[target]:>12,.0f}   {counts[target] / bare:.2f}x bare")


def dashboard_latency(directory: str) -> None:
    """The web dashboard against stages x delay, its upstreams answering from memory after
    the delay (`bench.memoized_upstream`): the row measures the gateway's fan-out, not the
    simulated backends, whose CPU on their shared core would add about 10 ms a dashboard."""
    with contextlib.ExitStack() as stack:
        platform = stack.enter_context(start_platform())
        # The dashboard is a signed-in user's: the gateway trusts the platform's identity
        # provider, which mints alice a token without a login.
        identity = platform.urls["identity"][0]
        upstreams, services = start_memoized_upstreams(
            {name: urls for name, urls in platform.urls.items() if name != "identity"},
            delay_ms=DASHBOARD_DELAY_MS,
        )
        stack.callback(upstreams.stop)
        trust = {
            "GATEWAY_IDENTITY__DISCOVERY_URL": identity + "/.well-known/openid-configuration",
            "GATEWAY_RATE_LIMIT__USER_LIMIT": "1000000",
        }
        gateway = start_gateway(
            "gateway",
            services=services,
            database_url=migrated_database(directory),
            env=trust,
            quiet=True,
        )
        stack.callback(gateway.stop)
        token = httpx.post(identity + "/__dev/token", json={"username": "alice"}, timeout=10)
        headers = {"Authorization": f"Bearer {token.raise_for_status().json()['access_token']}"}
        paths = ["/web/v1/dashboard"]
        # The first dashboard fills the upstreams' memory from the real services.
        httpx.get(gateway.url + paths[0], headers=headers, timeout=10).raise_for_status()
        run_load(gateway.url, paths, connections=4, seconds=1, headers=headers)
        floor = DASHBOARD_STAGES * DASHBOARD_DELAY_MS
        print(
            f"\n## Web dashboard, {DASHBOARD_STAGES} dependent stages, every upstream answering "
            f"from memory after {DASHBOARD_DELAY_MS} ms (floor {floor} ms)"
        )
        # The same calls without a gateway: five at once (the dashboard's first stage), then
        # one (its quotes), each a stand-in's kept answer.
        stand_ins = [urls[0] + "/health" for urls in services.values()]
        first = [stand_ins[index % len(stand_ins)] for index in range(DASHBOARD_FIRST_CALLS)]
        bare_p50, bare_p99 = stages_floor([first, stand_ins[:1]], seconds=SECONDS)
        print(
            f"{'plain client, the same two stages, no gateway':<48} p50 {bare_p50:6.2f} ms   "
            f"p99 {bare_p99:6.2f} ms   ({bare_p50 / floor:.2f} / {bare_p99 / floor:.2f} of the "
            "floor: this machine's round trips and wake-ups)"
        )
        # One client shows the fan-out's own latency; four add queueing on the gateway's core.
        for connections in (1, 4):
            cpu_before = gateway.cpu_seconds()
            result = run_load(
                gateway.url,
                paths,
                connections=connections,
                seconds=SECONDS,
                headers=headers,
                upstream=upstreams,
            )
            # The gateway's CPU (user and kernel) per dashboard: what four clients queue for
            # on its core, and a figure that moves far less with the machine than latency.
            cpu_ms = (gateway.cpu_seconds() - cpu_before) * 1000 / (result.requests_per_s * SECONDS)
            print_result(f"gateway, {connections} connection(s)", result)
            p50, p99 = result.p50_ms / floor, result.p99_ms / floor
            print(
                f"{'':<48} p50 / floor {p50:.2f} (target <= {DASHBOARD_P50_TARGET})   "
                f"p99 / floor {p99:.2f} (target <= {DASHBOARD_P99_TARGET})   "
                f"gateway CPU {cpu_ms:.2f} ms per dashboard"
            )


def main() -> None:
    if isinstance(sys.stdout, io.TextIOWrapper):
        # A run takes minutes: each line shows when printed, also through a pipe.
        sys.stdout.reconfigure(line_buffering=True)
    with bench_redis():
        every_row()


def every_row() -> None:
    with tempfile.TemporaryDirectory() as directory:
        upstream = start_upstream()
        try:
            partner_quotes(
                upstream, migrated_database(directory), connections=CONNECTIONS, seconds=SECONDS
            )
            instructions_per_request(upstream)
            passthrough_rows(upstream, directory, connections=CONNECTIONS, seconds=SECONDS)
        finally:
            upstream.stop()
    with tempfile.TemporaryDirectory() as directory:
        upstream = start_upstream()
        try:
            observability_on_against_off(upstream, migrated_database(directory, "observability"))
            instructions_on_against_off(upstream)
            usage_on_against_off(upstream, migrated_database(directory, "usage"))
        finally:
            upstream.stop()
    with tempfile.TemporaryDirectory() as directory:
        upstream = start_upstream()
        try:
            cached_against_uncached(
                upstream, migrated_database(directory), connections=CONNECTIONS, seconds=SECONDS
            )
        finally:
            upstream.stop()
    with tempfile.TemporaryDirectory() as directory:
        dashboard_latency(directory)
    upstream = start_upstream()
    try:
        scaleout(upstream, redis_url())
    finally:
        upstream.stop()
    with tempfile.TemporaryDirectory() as directory:
        batch_against_separate(migrated_database(directory))
    with tempfile.TemporaryDirectory() as directory:
        stream_capacity(migrated_database(directory))
    with tempfile.TemporaryDirectory() as directory:
        upstream = start_upstream()
        try:
            mcp_tool_calls(upstream, migrated_database(directory))
        finally:
            upstream.stop()


if __name__ == "__main__":
    main()
