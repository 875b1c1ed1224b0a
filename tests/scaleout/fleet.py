"""Several gateway processes (`python -m app.serve`, as in production) sharing one PostgreSQL
database and one Redis deployment, behind a small TCP load balancer of the test's own.

The balancer hands each new connection to the next process in turn; a process that refuses
the connection (it died) is skipped, so only the requests in flight on a killed process
fail, as behind a real load balancer that retries connects.
"""

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from backends.launcher import Platform
from tests.fixtures.databases import ROOT
from tests.fixtures.redis import free_port

START_BOUND_S = 90.0


@dataclass
class GatewayProcess:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@dataclass
class LoadBalancer:
    """Round robin over the processes' ports, per connection."""

    ports: list[int]
    port: int = 0
    connections: dict[int, int] = field(default_factory=dict)
    _next: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self.ports)):
            port = self.ports[self._next % len(self.ports)]
            self._next += 1
            try:
                streams = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.connections[port] = self.connections.get(port, 0) + 1
            return streams
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._connect()
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def gateway_env(
    *, platform: Platform, database_url: str, redis_url: str, prefix: str
) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GATEWAY_") and key not in {"DATABASE_URL", "REDIS_URL"}
    }
    services = {name: urls for name, urls in platform.urls.items() if name != "identity"}
    env.update(
        PYTHONPATH=str(ROOT),
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        GATEWAY_REDIS_PREFIX=prefix,
        GATEWAY_ENVIRONMENT="test",
        GATEWAY_ADMIN_TOKEN="test-admin-token",
        GATEWAY_SERVICES=json.dumps(services),
        GATEWAY_IDENTITY__DISCOVERY_URL=(
            f"{platform.urls['identity'][0]}/.well-known/openid-configuration"
        ),
        GATEWAY_DRAIN_S="0",
        GATEWAY_ACCESS_LOG="false",
        GATEWAY_LOG_LEVEL="warning",
    )
    return env


@contextmanager
def gateway_processes(
    count: int, env: Mapping[str, str], directory: Path
) -> Iterator[list[GatewayProcess]]:
    """`count` gateway processes, each on its own port, started together; healthy on return."""
    started: list[GatewayProcess] = []
    try:
        # All at once on the fresh database, as a new deployment's pods start: they race to
        # seed the services, and every one of them must come up.
        for index in range(count):
            port = free_port()
            workdir = directory / f"gateway-{index}"
            workdir.mkdir(parents=True, exist_ok=True)
            log = workdir / "serve.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "app.serve", "--host", "127.0.0.1", "--port", str(port)],
                    env=dict(env),
                    cwd=workdir,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            started.append(GatewayProcess(port, process, log))
        _wait_ready(started)
        yield started
    finally:
        for gateway in started:
            if gateway.process.poll() is None:
                gateway.process.terminate()
        for gateway in started:
            try:
                gateway.process.wait(10)
            except subprocess.TimeoutExpired:
                gateway.kill()


def _wait_ready(started: list[GatewayProcess]) -> None:
    deadline = time.monotonic() + START_BOUND_S
    for gateway in started:
        while True:
            if gateway.process.poll() is not None:
                raise RuntimeError(
                    f"gateway on {gateway.port} exited: {gateway.log.read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway on {gateway.port} did not start")
            try:
                if httpx.get(gateway.url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
