"""Instructions per request, counted by callgrind on an in-process driver.

Wall-clock throughput on a shared 2-core machine moves by 20 % from run to run; instruction
counts do not. The driver calls an ASGI app directly (no client sockets, no HTTP parsing by
a server), with its real upstream and Redis over sockets, N requests at a concurrency of
50 spread over the catalogue's symbols. It runs under callgrind with counting off through
start-up and warm-up (uninstrumented, so several times faster), counting is switched on
(`callgrind_control -i on`) for the N measured requests, and the process ends as soon as
they are answered: the count divided by N is the cost of one request, start-up and shutdown
excluded. (Counting the whole run twice, N and 2N, took over 15 minutes per gateway run on
a loaded 2-core machine.) The gateway's periodic tasks (config revision check and refresh,
registry refresh, usage flush) are stretched so they do not run during the count: under
callgrind's slowdown they would add 80-200 k instructions per request, varying with load.

    python -m bench.instructions           # prints instructions per request of each target

`gateway` runs as `make bench`'s partner-quotes rows run it: partner quotes with an API key,
Redis rate limits, collapsing off, no access log. `passthrough` runs as its pass-through row:
the config-driven route `/api/market-data/quotes` with an API key, the route's Redis rate
limit, metrics and the access log on (to /dev/null). `baseline` is the bare handler, `raw`
the same forward without a framework (`bench.baseline.RawForward`).
"""

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from backends.catalog import INSTRUMENTS

CONCURRENCY = 50
REQUESTS = 400
SYMBOLS = sorted(INSTRUMENTS)


def _scope(path: str, query: str, headers: Mapping[str, str], state: dict[str, Any]) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": dict(state),
    }


def _handshake(ready_file: str, go_file: str) -> None:
    """Say the warm-up is done; return once callgrind counts (the parent made `go_file`)."""
    with open(ready_file, "w"):
        pass
    while not os.path.exists(go_file):
        time.sleep(0.05)


async def _drive(app: Any, path: str, headers: Mapping[str, str], requests: int) -> None:
    # Set by `_callgrind_instructions`: the driver says when its warm-up is done (READY
    # file) and waits for the GO file, created once callgrind counts.
    ready_file, go_file = os.environ.get("BENCH_READY_FILE"), os.environ.get("BENCH_GO_FILE")
    lifespan = app.router.lifespan_context if hasattr(app, "router") else app.lifespan_context
    async with lifespan(app) as state:
        statuses: list[int] = []

        async def one(index: int) -> None:
            symbol = SYMBOLS[index % len(SYMBOLS)]
            scope = _scope(path, f"symbols={symbol}", headers, state or {})

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            await app(scope, receive, send)

        # Warm-up: pools, caches, Redis scripts.
        await asyncio.gather(*(one(i) for i in range(CONCURRENCY)))
        if ready_file is not None and go_file is not None:
            await asyncio.to_thread(_handshake, ready_file, go_file)
        statuses.clear()
        for start in range(0, requests, CONCURRENCY):
            await asyncio.gather(*(one(i) for i in range(start, start + CONCURRENCY)))
        failed = [s for s in statuses if s != 200]
        if failed:
            raise SystemExit(f"{len(failed)} of {len(statuses)} requests failed: {failed[:5]}")
        if go_file is not None:
            # Counting ends with the last answer: the lifespan's shutdown is no request's.
            os._exit(0)


def _run_in_process(target: str, requests: int, upstream: str, database_url: str) -> None:
    """The driver itself (what callgrind measures)."""
    import uvloop

    if target in ("baseline", "raw"):
        os.environ["BENCH_UPSTREAM"] = upstream
        from bench import baseline

        handler = baseline.app if target == "baseline" else baseline.raw
        uvloop.run(_drive(handler, "/quotes", {}, requests))
        return
    from app.main import create_app
    from app.settings import Settings
    from bench.rate_limited import redis_url

    settings = Settings(
        database_url=database_url,
        services={"market-data": [upstream]},
        redis_url=redis_url(),
        redis_prefix=os.environ["BENCH_REDIS_PREFIX"],
        # Off as in `make bench`'s rows, unless a row measures it (`bench.observability`).
        access_log=os.environ.get("BENCH_ACCESS_LOG") == "true",
    )
    settings.upstream.collapse_gets = False
    # The request path, as the headline rows measure it; the cache's rows are `bench.cache`.
    settings.cache.enabled = False
    settings.resilience.health_checks = False
    # Under callgrind the process runs tens of times slower than its time bounds expect:
    # stretched, or calls time out, the instance is ejected and the count is of 503s.
    settings.upstream.default_timeout_s = 60
    settings.upstream.connect_timeout_s = 30
    settings.resilience.default_deadline_ms = 600_000
    settings.redis.timeout_s = 5
    # Periodic work runs by the clock, and under callgrind a request takes tens of times
    # longer: left at their intervals, these tasks would be counted into every request by
    # an amount that depends on the machine's load. At full speed they cost nothing per
    # request; here they do not run during the count.
    settings.config_revision_check_s = 3600
    settings.config_refresh_s = 3600
    settings.resilience.registry_refresh_s = 60
    settings.portal.usage_flush_s = 60
    settings.startup_db_timeout_s = 600
    settings.db_connect_timeout_s = 60
    settings.db_statement_timeout_s = 300
    path = "/partner/v1/quotes"
    if target == "passthrough":
        path = "/api/market-data/quotes"
        settings.access_log = True
        settings.metrics.enabled = True
    headers = {"X-API-Key": os.environ["BENCH_API_KEY"]}
    uvloop.run(_drive(create_app(settings), path, headers, requests))


def _callgrind_instructions(target: str, requests: int, env: Mapping[str, str]) -> int:
    """Callgrind's count over `requests` requests of `target`, warm-up excluded."""
    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, "callgrind.out")
        ready, go = os.path.join(directory, "ready"), os.path.join(directory, "go")
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "bench.instructions",
            "--drive",
            target,
            str(requests),
        ]
        # A driver that hangs must not hang `make bench` with it.
        give_up_at = time.monotonic() + 900
        with open(os.path.join(directory, "stderr"), "w+b") as errors:
            driver = subprocess.Popen(
                command,
                env={
                    **os.environ,
                    **env,
                    "PYTHONMALLOC": "malloc",
                    "BENCH_READY_FILE": ready,
                    "BENCH_GO_FILE": go,
                },
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
            try:
                while not os.path.exists(ready):
                    if driver.poll() is not None:
                        errors.seek(0)
                        raise subprocess.CalledProcessError(
                            driver.returncode, command, stderr=errors.read()
                        )
                    if time.monotonic() > give_up_at:
                        raise subprocess.TimeoutExpired(command, 900)
                    time.sleep(0.2)
                subprocess.run(
                    ["callgrind_control", "--instr=on", str(driver.pid)],
                    check=True,
                    capture_output=True,
                    timeout=max(give_up_at - time.monotonic(), 1),
                )
                with open(go, "w"):
                    pass
                if driver.wait(timeout=max(give_up_at - time.monotonic(), 1)) != 0:
                    errors.seek(0)
                    raise subprocess.CalledProcessError(
                        driver.returncode, command, stderr=errors.read()
                    )
            finally:
                if driver.poll() is None:
                    driver.kill()
                    driver.wait()
        with open(out) as summary:
            totals = re.search(r"^summary:\s+(\d+)", summary.read(), re.MULTILINE)
        assert totals is not None, "callgrind wrote no summary"
        return int(totals.group(1))


def instructions_per_request(target: str, env: Mapping[str, str]) -> float:
    """Instructions of one request of `target`, start-up and warm-up excluded."""
    return _callgrind_instructions(target, REQUESTS, env) / REQUESTS


TARGETS = ("baseline", "raw", "gateway", "passthrough")


def measure_targets(upstream: str, targets: Sequence[str] = TARGETS) -> dict[str, float]:
    """Instructions per request of each of `targets` (the bare handler, the same without a
    framework, the gateway's partner quotes, its pass-through route), against `upstream`."""
    from bench.__main__ import migrated_database
    from bench.passthrough import seed_routes
    from bench.rate_limited import delete_keys, provision_partner

    if shutil.which("valgrind") is None:
        raise RuntimeError("valgrind is not installed")
    with tempfile.TemporaryDirectory() as directory:
        database_url = migrated_database(directory)
        key = asyncio.run(provision_partner(database_url))
        asyncio.run(seed_routes(database_url, count=1))
        prefix = f"bench:{uuid.uuid4().hex[:8]}:"
        env = {
            "BENCH_UPSTREAM": upstream,
            "BENCH_DATABASE_URL": database_url,
            "BENCH_API_KEY": key,
            "BENCH_REDIS_PREFIX": prefix,
        }
        try:
            return {target: instructions_per_request(target, env) for target in targets}
        finally:
            asyncio.run(delete_keys(prefix))


def main() -> None:
    if sys.argv[1:2] == ["--drive"]:
        target, requests = sys.argv[2], int(sys.argv[3])
        _run_in_process(
            target, requests, os.environ["BENCH_UPSTREAM"], os.environ.get("BENCH_DATABASE_URL", "")
        )
        return
    from bench.servers import start_upstream

    upstream = start_upstream()
    try:
        figures = measure_targets(upstream.url)
    finally:
        upstream.stop()
    print(json.dumps({name: round(value) for name, value in figures.items()}))


if __name__ == "__main__":
    main()
