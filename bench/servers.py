"""Start the processes a benchmark needs and wait until they answer."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import redis

# The gateway's admin API is not under load; a token only so that it starts as deployed.
ADMIN_TOKEN = "bench-admin-token"
# A gateway confined to one core of a busy machine can take half a minute to import and
# start; a bench is meant for a quiet machine, but should still run on a busy one.
START_WITHIN_S = 90


def pinned(command: Sequence[str], *, measured: bool) -> list[str]:
    """`command`, confined to its cores when the machine has two or more and `taskset`.

    The process under measurement (gateway or bare baseline) gets core 0 to itself; the
    load tool and the upstream share the others. Otherwise which of them steals from the
    measured process changes from run to run, and so do the ratios.
    """
    cores = os.cpu_count() or 1
    if cores < 2 or shutil.which("taskset") is None:
        return list(command)
    return ["taskset", "-c", "0" if measured else f"1-{cores - 1}", *command]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """User and system CPU time the process has used so far (Linux /proc)."""
        return sum(self.cpu_times())

    def cpu_times(self) -> tuple[float, float]:
        """User and system (kernel) CPU time the process has used so far, apart."""
        with open(f"/proc/{self.process.pid}/stat") as stat:
            # Fields after the parenthesised command name, which may itself hold spaces.
            fields = stat.read().rpartition(")")[2].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / ticks, int(fields[12]) / ticks

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_uvicorn(
    name: str,
    target: str,
    *,
    health_path: str,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    measured: bool = False,
    unset: Collection[str] = (),
    quiet: bool = False,
) -> Server:
    """Serve `target` (module:app) with uvicorn on a free port, one worker; `measured` for
    the process whose throughput is compared (see `pinned`); `unset` names variables the
    server must not see, whether from this environment or from `env`; `quiet` sends its
    output (an access log, say: still written, at its cost) to /dev/null."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        # As the gateway runs: X-Forwarded-For is the edge's to judge, no `server` banner.
        "--no-proxy-headers",
        "--no-server-header",
        "--log-level",
        "warning",
        *extra_args,
    ]
    environment = {**os.environ, **(env or {})}
    for name in unset:
        environment.pop(name, None)
    process = subprocess.Popen(
        pinned(command, measured=measured),
        env=environment,
        stdout=subprocess.DEVNULL if quiet else None,
        stderr=subprocess.DEVNULL if quiet else None,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(name, url + health_path, process)
    return Server(name, url, process)


def start_gateway(
    name: str,
    *,
    services: Mapping[str, list[str]],
    database_url: str,
    env: Mapping[str, str] = {},
    unset: Collection[str] = (),
    quiet: bool = False,
) -> Server:
    """The gateway on the measured core, its services at `services`, its config in
    `database_url` (migrated); `quiet`: its output to /dev/null."""
    return start_uvicorn(
        name,
        "app.asgi:app",
        health_path="/healthz",
        env={
            "DATABASE_URL": database_url,
            "GATEWAY_SERVICES": json.dumps(services),
            "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
            # Several gateways run at once: none writes a config snapshot file.
            "GATEWAY_CONFIG_SNAPSHOT_PATH": "",
            **env,
        },
        measured=True,
        unset=unset,
        quiet=quiet,
    )


def start_baseline(upstream: Server) -> Server:
    """The bare FastAPI + aiohttp handler (`bench.baseline`) the gateway is compared with,
    on the measured core as the gateway is."""
    return start_uvicorn(
        "baseline",
        "bench.baseline:app",
        health_path="/docs",
        env={"BENCH_UPSTREAM": upstream.url},
        measured=True,
    )


def start_upstream() -> Server:
    """The canned market-data stand-in (`bench.upstream`), beside the load tool and off the
    measured core."""
    port = free_port()
    command = [sys.executable, "-m", "bench.upstream", "--port", str(port)]
    process = subprocess.Popen(pinned(command, measured=False))
    url = f"http://127.0.0.1:{port}"
    wait_until_up("upstream", url + "/health", process)
    return Server("upstream", url, process)


@contextmanager
def bench_redis() -> Iterator[str]:
    """The Redis of the rate-limited rows, as BENCH_REDIS_URL while the block runs: the one
    BENCH_REDIS_URL names if set, else a private `redis-server` (no persistence) off the
    measured core. The system Redis is pinned nowhere: under load the scheduler may run it
    on the gateway's core, where it would be counted against the gateway."""
    given = os.environ.get("BENCH_REDIS_URL")
    if given:
        print(
            f"Redis for the rate-limited rows: {given} (BENCH_REDIS_URL), not pinned by the "
            "bench: it may share the gateway's core"
        )
        yield given
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: install it or set BENCH_REDIS_URL")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with tempfile.TemporaryDirectory() as directory:
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        confined = pinned(command, measured=False)
        process = subprocess.Popen(confined, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_ping(url, process)
            where = (
                "off the gateway's core"
                if confined != command
                else "not pinned (one core or no taskset)"
            )
            print(f"Redis for the rate-limited rows: a private redis-server at {url}, {where}")
            os.environ["BENCH_REDIS_URL"] = url
            try:
                yield url
            finally:
                del os.environ["BENCH_REDIS_URL"]
        finally:
            process.kill()
            process.wait()


def _wait_for_ping(url: str, process: subprocess.Popen[bytes]) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    deadline = time.monotonic() + START_WITHIN_S
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {process.returncode} on start-up")
            try:
                if client.ping():
                    return
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.05)
    finally:
        client.close()
    raise RuntimeError(f"redis-server did not answer at {url} within {START_WITHIN_S:g} s")


def wait_until_up(name: str, url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_WITHIN_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} during start-up")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{name} did not answer at {url} within {START_WITHIN_S:g} s")
