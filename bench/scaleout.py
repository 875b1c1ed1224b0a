"""Scale-out figures: throughput with 1 and 2 worker processes (scaling efficiency), the
rate-limited partner route on a local Redis Cluster against a single Redis node, and the
Redis commands and bytes each route class costs (the inputs of docs/scaling.md).

    python -m bench.scaleout        (BENCH_SECONDS, BENCH_ROUNDS, BENCH_CONNECTIONS)

The cluster (three primaries, one replica each) and the single node are `redis-server`
processes of the run's own, with the same options, on free ports.
"""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from app.security.apikeys import KeyHasher, issue_key
from app.store.database import create_engine, session_factory
from app.store.models import ApiKey, Consumer, Plan
from backends.launcher import start_platform
from bench.load import ROUNDS, LoadResult, load_tool, print_result, run_load
from bench.rate_limited import provision_partner
from bench.servers import ADMIN_TOKEN, Server, free_port, start_gateway
from bench.throughput import SERVICES, SPREAD_PATHS
from tests.fixtures.redis_cluster import LocalRedisCluster, RedisProcess

CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
# Several worker processes start on a machine that is busy with the rest of the bench.
START_BOUND_S = 90.0
# Requests per route class when counting Redis commands.
SAMPLE = 200
LIMITED = {
    "GATEWAY_RATE_LIMIT__ENABLED": "true",
    "GATEWAY_UPSTREAM__COLLAPSE_GETS": "false",
    "GATEWAY_ACCESS_LOG": "false",
}


def _migrated(directory: str) -> str:
    from bench.__main__ import migrated_database

    return migrated_database(directory)


def start_served(
    name: str,
    *,
    workers: int,
    services: Mapping[str, list[str]],
    database_url: str,
    env: Mapping[str, str],
) -> Server:
    """`python -m app.serve --workers N`, as deployed: N processes on one socket, on every
    core (not pinned: the point is to use more than one)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "app.serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "GATEWAY_SERVICES": json.dumps(services),
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEWAY_CONFIG_SNAPSHOT_PATH": "",
        "GATEWAY_DRAIN_S": "0",
        "GATEWAY_LOG_LEVEL": "warning",
        **env,
    }
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_BOUND_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} during start-up")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return Server(name, url, process)
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{name} did not answer at {url} within {START_BOUND_S:g} s")
        time.sleep(0.1)


def _best(runs: Sequence[LoadResult]) -> LoadResult:
    return max(runs, key=lambda run: run.requests_per_s)


def _measure(
    targets: Sequence[tuple[str, str]], headers: Mapping[str, str]
) -> dict[str, LoadResult]:
    """Each target loaded ROUNDS times, interleaved; the best run of each."""
    runs: dict[str, list[LoadResult]] = {label: [] for label, _ in targets}
    for _, url in targets:
        run_load(url, SPREAD_PATHS, connections=CONNECTIONS, seconds=1, headers=headers)
    for _ in range(ROUNDS):
        for label, url in targets:
            runs[label].append(
                run_load(
                    url, SPREAD_PATHS, connections=CONNECTIONS, seconds=SECONDS, headers=headers
                )
            )
    return {label: _best(results) for label, results in runs.items()}


def worker_scaling(upstream: Server, database_url: str, redis_url: str) -> None:
    """Throughput of `app.serve` with 1 and 2 workers on the same machine."""
    key = asyncio.run(provision_partner(database_url))
    services = {name: [upstream.url] for name in SERVICES}
    env = {**LIMITED, "REDIS_URL": redis_url, "GATEWAY_REDIS_PREFIX": _prefix()}
    targets = []
    with ExitStack() as servers:
        for workers in (1, 2):
            server = start_served(
                f"{workers} worker(s)",
                workers=workers,
                services=services,
                database_url=database_url,
                env=env,
            )
            servers.callback(server.stop)
            targets.append((f"python -m app.serve --workers {workers}", server.url + "/partner/v1"))
        best = _measure(targets, {"X-API-Key": key})
    print(
        f"\n## Worker processes: partner quotes with Redis limits, {CONNECTIONS} connections, "
        f"{load_tool()}, best of {ROUNDS} round(s) of {SECONDS:g} s, {os.cpu_count()} cores "
        "shared with the load tool and the upstream"
    )
    one, two = best[targets[0][0]], best[targets[1][0]]
    print_result(targets[0][0], one, baseline=one)
    print_result(targets[1][0], two, baseline=one)
    print(f"Scaling efficiency, 2 workers: {two.requests_per_s / (2 * one.requests_per_s):.2f}")


def cluster_against_node(upstream: Server, database_url: str, directory: Path) -> None:
    """The rate-limited partner route on a three-primary cluster and on one node."""
    key = asyncio.run(provision_partner(database_url))
    services = {name: [upstream.url] for name in SERVICES}
    cluster = LocalRedisCluster(directory / "cluster")
    node = RedisProcess(_free_redis_port(), directory / "node")
    with ExitStack() as stack:
        cluster.start()
        stack.callback(cluster.stop)
        node.start()
        stack.callback(node.stop)
        _wait_ping(node)
        targets = []
        servers = {
            "gateway, Redis limits on one node": [node],
            "gateway, Redis limits on a 3-primary cluster": cluster.nodes,
        }
        for label, url in (
            ("gateway, Redis limits on one node", f"redis://127.0.0.1:{node.port}/0"),
            ("gateway, Redis limits on a 3-primary cluster", cluster.url),
        ):
            gateway = start_gateway(
                label,
                services=services,
                database_url=database_url,
                env={**LIMITED, "REDIS_URL": url, "GATEWAY_REDIS_PREFIX": _prefix()},
            )
            stack.callback(gateway.stop)
            targets.append((label, gateway.url + "/partner/v1"))
        headers = {"X-API-Key": key}
        best = _measure(targets, headers)
        # Redis's CPU per request under this load (every node of the deployment, replicas'
        # replication included), from one more run of each.
        cpu_per_request = {}
        for label, url in targets:
            before = _redis_cpu_s(servers[label])
            run = run_load(
                url, SPREAD_PATHS, connections=CONNECTIONS, seconds=SECONDS, headers=headers
            )
            spent = _redis_cpu_s(servers[label]) - before
            cpu_per_request[label] = spent * 1_000_000 / (run.requests_per_s * SECONDS)
    print(
        f"\n## Rate-limited partner quotes: Redis Cluster against one node, {CONNECTIONS} "
        f"connections, {load_tool()}, best of {ROUNDS} round(s) of {SECONDS:g} s, one gateway "
        "process on its own core"
    )
    single = best[targets[0][0]]
    print_result(targets[0][0], single, baseline=single)
    print_result(targets[1][0], best[targets[1][0]], baseline=single)
    for label, _ in targets:
        print(f"{'':<4}{label}: Redis CPU {cpu_per_request[label]:.1f} us per request")


def _redis_cpu_s(servers: Sequence[RedisProcess]) -> float:
    """CPU seconds (user + system) the servers have used so far."""
    total = 0.0
    for server in servers:
        with server.client() as direct:
            cpu = direct.info("cpu")
        total += float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    return total


def redis_per_request(database_url: str, directory: Path) -> None:
    """Commands and bytes each route class sends Redis, from INFO commandstats and INFO
    stats around SAMPLE requests, less what the same time costs idle (background refreshes)."""
    platform = start_platform()
    node = RedisProcess(_free_redis_port(), directory / "count")
    try:
        node.start()
        _wait_ping(node)
        partner_key = asyncio.run(_provision_trader(database_url, rate_per_second=1_000_000))
        refused_key = asyncio.run(_provision_trader(database_url, rate_per_second=1))
        identity = platform.urls["identity"][0]
        services = {name: urls for name, urls in platform.urls.items() if name != "identity"}
        gateway = start_gateway(
            "gateway (counting)",
            services=services,
            database_url=database_url,
            env={
                **LIMITED,
                "REDIS_URL": f"redis://127.0.0.1:{node.port}/0",
                "GATEWAY_IDENTITY__DISCOVERY_URL": identity + "/.well-known/openid-configuration",
                "GATEWAY_RATE_LIMIT__USER_LIMIT": "1000000",
            },
        )
        try:
            token = httpx.post(identity + "/__dev/token", json={"username": "alice"}, timeout=10)
            bearer = {"Authorization": f"Bearer {token.raise_for_status().json()['access_token']}"}
            order = {
                "account_id": "ACC-2001",
                "symbol": "MSFT",
                "side": "buy",
                "type": "limit",
                "quantity": 1,
                "limit_price": 1.0,
            }
            classes: dict[str, Callable[[httpx.Client], httpx.Response]] = {
                "partner quotes (API key, plan limit)": lambda c: c.get(
                    "/partner/v1/quotes?symbols=AAPL", headers={"X-API-Key": partner_key}
                ),
                "partner order (+ idempotency record)": lambda c: c.post(
                    "/partner/v1/orders",
                    json=order,
                    headers={"X-API-Key": partner_key, "Idempotency-Key": uuid.uuid4().hex},
                ),
                "web dashboard (bearer token, user limit)": lambda c: c.get(
                    "/web/v1/dashboard", headers=bearer
                ),
                "refused by a limit (429)": lambda c: c.get(
                    "/partner/v1/quotes?symbols=AAPL", headers={"X-API-Key": refused_key}
                ),
            }
            print(
                f"\n## Redis per request, by route class ({SAMPLE} requests each, one gateway "
                "process, single node; idle background subtracted)"
            )
            print(
                f"{'route class':<44} {'commands':>8} {'bytes in':>9} {'bytes out':>9} "
                f"{'cpu us':>7}  by command (Redis's own count: a script's calls included)"
            )
            with httpx.Client(base_url=gateway.url, timeout=10) as client:
                for label, call in classes.items():
                    call(client)  # warm: scripts loaded, pools open
                    print(_count(node, client, label, call))
        finally:
            gateway.stop()
    finally:
        node.stop()
        platform.stop()


def _count(
    node: RedisProcess,
    client: httpx.Client,
    label: str,
    call: Callable[[httpx.Client], httpx.Response],
) -> str:
    with node.client() as direct:
        probe = _delta(direct, lambda: None)  # what the counting (INFO) itself costs
        idle = _delta(direct, lambda: time.sleep(1.0))
        measured = _delta(direct, lambda: _run(client, label, call))
    # Per request: the measured window less the counting's own cost and the background
    # (registry refresh, health checks) of an idle window, scaled to the same duration.
    scale = measured.seconds / idle.seconds

    def per_request(name: str) -> float:
        background = idle.commands.get(name, 0) - probe.commands.get(name, 0)
        own = measured.commands.get(name, 0) - probe.commands.get(name, 0)
        return (own - scale * max(0, background)) / SAMPLE

    cpu_us = per_request("(cpu us)")
    commands = {
        name: per_request(name) for name in measured.commands if name not in ("info", "(cpu us)")
    }
    commands = {name: n for name, n in commands.items() if n >= 0.1}
    bytes_in, bytes_out = (
        (own - probe_bytes - scale * max(0, idle_bytes - probe_bytes)) / SAMPLE
        for own, probe_bytes, idle_bytes in (
            (measured.bytes_in, probe.bytes_in, idle.bytes_in),
            (measured.bytes_out, probe.bytes_out, idle.bytes_out),
        )
    )
    detail = ", ".join(f"{name} {n:.2f}" for name, n in sorted(commands.items()))
    return (
        f"{label:<44} {sum(commands.values()):>8.2f} {bytes_in:>9.0f} {bytes_out:>9.0f} "
        f"{cpu_us:>7.1f}  {detail}"
    )


def _run(client: httpx.Client, label: str, call: Callable[[httpx.Client], httpx.Response]) -> None:
    for _ in range(SAMPLE):
        response = call(client)
        if response.status_code >= 500:
            raise RuntimeError(f"{label}: {response.status_code} {response.text[:200]}")


@dataclass(frozen=True)
class _Delta:
    commands: dict[str, int]
    bytes_in: int
    bytes_out: int
    seconds: float


def _delta(direct: redis.Redis, during: Callable[[], None]) -> _Delta:
    """What Redis counted (calls per command, bytes in and out) while `during` ran."""
    before = _stats(direct)
    started = time.monotonic()
    during()
    seconds = max(time.monotonic() - started, 1e-6)
    after = _stats(direct)
    commands = {name: after[0].get(name, 0) - before[0].get(name, 0) for name in after[0]}
    return _Delta(commands, after[1] - before[1], after[2] - before[2], seconds)


def _stats(direct: redis.Redis) -> tuple[dict[str, int], int, int]:
    commandstats = direct.info("commandstats")
    calls = {
        name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in commandstats.items()
    }
    stats = direct.info("stats")
    cpu = direct.info("cpu")
    calls["(cpu us)"] = round((cpu["used_cpu_user"] + cpu["used_cpu_sys"]) * 1_000_000)
    return calls, int(stats["total_net_input_bytes"]), int(stats["total_net_output_bytes"])


async def _provision_trader(database_url: str, *, rate_per_second: float) -> str:
    """A partner allowed quotes and orders in ACC-2001, at `rate_per_second`; its key."""
    issued = issue_key(KeyHasher(None))
    engine = create_engine(database_url)
    suffix = uuid.uuid4().hex[:8]
    try:
        async with session_factory(engine)() as session, session.begin():
            plan = Plan(
                name=f"count-{suffix}",
                scopes=["quotes:read", "orders:write"],
                rate_per_second=rate_per_second,
            )
            session.add(plan)
            await session.flush()
            consumer = Consumer(
                name=f"count-{suffix}", plan_id=plan.plan_id, account_ids=["ACC-2001"]
            )
            session.add(consumer)
            await session.flush()
            session.add(
                ApiKey(
                    consumer_id=consumer.consumer_id,
                    prefix=issued.prefix,
                    key_hash=issued.key_hash,
                    name="count",
                )
            )
    finally:
        await engine.dispose()
    return issued.key


def _prefix() -> str:
    return f"bench:{uuid.uuid4().hex[:8]}:"


def _free_redis_port() -> int:
    while True:
        port = free_port()
        if port + 10000 < 65536:
            return port


def _wait_ping(node: RedisProcess) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            if node.ping():
                return
        except (redis.RedisError, OSError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


SECTIONS = ("workers", "cluster", "redis")


def scaleout(upstream: Server, redis_url: str, sections: Sequence[str] = SECTIONS) -> None:
    """The scale-out rows (all of them from `bench.__main__`)."""
    if "workers" in sections:
        with tempfile.TemporaryDirectory() as directory:
            worker_scaling(upstream, _migrated(directory), redis_url)
    if "cluster" in sections:
        with tempfile.TemporaryDirectory() as directory:
            cluster_against_node(upstream, _migrated(directory), Path(directory))
    if "redis" in sections:
        with tempfile.TemporaryDirectory() as directory:
            redis_per_request(_migrated(directory), Path(directory))


def main() -> None:
    """`python -m bench.scaleout [workers] [cluster] [redis]` (default: all three)."""
    from bench.rate_limited import redis_url
    from bench.servers import start_upstream

    sections = [name for name in sys.argv[1:] if name in SECTIONS] or list(SECTIONS)
    upstream = start_upstream()
    try:
        scaleout(upstream, redis_url(), sections)
    finally:
        upstream.stop()


if __name__ == "__main__":
    main()
