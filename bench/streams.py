"""Stream capacity: how many concurrent SSE clients one gateway worker holds with quotes
ticking, the delay of a tick's delivery and the memory each connection costs.

The market-data service publishes every symbol's quote on each second; each client follows
one symbol (spread over 50), so every client gets one event a second, all at once. A
tick's delivery delay is the client's receive time minus the tick's second (the event id):
it holds the market-data service's own work, the gateway's fan-out and the client's
reading (the last column shows the clients' CPU: on a busy machine they, not the gateway,
can be what is slow). Memory: the gateway's resident set with the clients connected and
ticking, less its resident set before them, per connection. The clients run in
this process (uvloop, one protocol object per connection, no parsing beyond the id line).

    python -m bench.streams         BENCH_STREAM_CLIENTS (1000,5000,10000)
                                    BENCH_STREAM_SECONDS (10)
"""

import asyncio
import io
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass

import httpx
import uvloop

from backends.catalog import INSTRUMENTS
from backends.launcher import start_platform
from bench.servers import Server, start_gateway

CLIENT_COUNTS = tuple(
    int(n) for n in os.environ.get("BENCH_STREAM_CLIENTS", "1000,5000,10000").split(",")
)
SECONDS = float(os.environ.get("BENCH_STREAM_SECONDS", "10"))
SYMBOLS = sorted(INSTRUMENTS)[:50]
TARGET_CLIENTS = 10_000
TARGET_P99_MS = 100.0
_CONNECTS_AT_ONCE = 100


@dataclass
class StreamRun:
    clients: int
    connected: int
    events_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    bytes_per_connection: float
    gateway_cores: float
    # The clients' own CPU (this process): near a core, the delays are theirs.
    client_cores: float


class _Client(asyncio.Protocol):
    def __init__(self, request: bytes, run: "_Driver") -> None:
        self._request = request
        self._run = run
        self.ok = asyncio.get_running_loop().create_future()
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self._request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.ok.done():
            self.ok.set_result(data.startswith(b"HTTP/1.1 200"))
        data = self._tail + data
        start = 0
        while (found := data.find(b"\nid: ", start)) != -1:
            end = data.find(b"\n", found + 5)
            if end == -1:
                break
            self._run.record(now, data[found + 5 : end])
            start = end
        self._tail = data[-32:]

    def connection_lost(self, exc: Exception | None) -> None:
        self._run.lost += 1
        if not self.ok.done():
            self.ok.set_result(False)


class _Driver:
    def __init__(self) -> None:
        self.measuring = False
        self.delays: list[float] = []
        self.events = 0
        self.lost = 0
        self._seen: set[bytes] = set()

    def record(self, now: float, step: bytes) -> None:
        if self.measuring:
            self.events += 1
            self.delays.append(now - int(step))


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def _drive(gateway: Server, token: str, clients: int) -> StreamRun:
    loop = asyncio.get_running_loop()
    host, port = gateway.url.removeprefix("http://").split(":")
    driver = _Driver()
    transports: list[asyncio.BaseTransport] = []
    gate = asyncio.Semaphore(_CONNECTS_AT_ONCE)

    async def connect(n: int) -> bool:
        request = (
            f"GET /web/v1/stream/quotes?symbols={SYMBOLS[n % len(SYMBOLS)]} HTTP/1.1\r\n"
            f"Host: {host}\r\nAuthorization: Bearer {token}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
        async with gate:
            transport, protocol = await loop.create_connection(
                lambda: _Client(request, driver), host, int(port)
            )
            transports.append(transport)
            return await protocol.ok

    before = _rss_bytes(gateway.process.pid)
    results = await asyncio.gather(*(connect(n) for n in range(clients)), return_exceptions=True)
    connected = sum(1 for result in results if result is True)
    await asyncio.sleep(3)
    after = _rss_bytes(gateway.process.pid)
    cpu = gateway.cpu_seconds()
    own = time.process_time()
    driver.measuring = True
    await asyncio.sleep(SECONDS)
    driver.measuring = False
    cores = (gateway.cpu_seconds() - cpu) / SECONDS
    client_cores = (time.process_time() - own) / SECONDS
    for transport in transports:
        transport.close()
    await asyncio.sleep(2)
    delays = sorted(driver.delays) or [float("nan")]
    return StreamRun(
        clients=clients,
        connected=connected,
        events_per_s=driver.events / SECONDS,
        p50_ms=delays[len(delays) // 2] * 1000,
        p99_ms=delays[min(int(len(delays) * 0.99), len(delays) - 1)] * 1000,
        max_ms=delays[-1] * 1000,
        bytes_per_connection=(after - before) / max(connected, 1),
        gateway_cores=cores,
        client_cores=client_cores,
    )


def _raise_open_files() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < max(CLIENT_COUNTS) + 1000:
        print(f"note: the open-files limit is {hard}; runs above it lose connections")


def stream_capacity(database_url: str) -> None:
    """The rows: for each client count, delivery delay, event rate, memory, CPU."""
    _raise_open_files()
    platform = start_platform(services=("market-data", "identity"))
    try:
        identity = platform.urls["identity"][0]
        gateway = start_gateway(
            "gateway",
            services={"market-data": platform.urls["market-data"]},
            database_url=database_url,
            env={
                "GATEWAY_IDENTITY__DISCOVERY_URL": identity + "/.well-known/openid-configuration",
                "GATEWAY_RATE_LIMIT__USER_LIMIT": "100000000",
                "GATEWAY_RATE_LIMIT__GATEWAY_MAX_IN_FLIGHT": "100000",
                "GATEWAY_STREAMS__MAX_PER_PRINCIPAL": "1000000",
                "GATEWAY_STREAMS__MAX_PER_PROCESS": "1000000",
                "GATEWAY_ACCESS_LOG": "false",
            },
        )
        try:
            token = (
                httpx.post(
                    identity + "/__dev/token",
                    json={"username": "alice", "ttl_s": 3600},
                    timeout=10,
                )
                .raise_for_status()
                .json()["access_token"]
            )
            print(
                "\n## Stream capacity: SSE clients on one gateway worker, one symbol each, "
                "a tick a second"
            )
            print(
                f"{'clients (connected)':<22} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
                f"{'max ms':>8} {'B/conn':>8} {'cores':>6} {'client cores':>12}"
            )
            for clients in CLIENT_COUNTS:
                run = uvloop.run(_drive(gateway, token, clients))
                target = ""
                if clients >= TARGET_CLIENTS:
                    met = run.connected >= TARGET_CLIENTS and run.p99_ms <= TARGET_P99_MS
                    target = f"  target >= {TARGET_CLIENTS} at p99 <= {TARGET_P99_MS:g} ms: " + (
                        "met" if met else "NOT met"
                    )
                print(
                    f"{f'{clients} ({run.connected})':<22} {run.events_per_s:>9.0f} "
                    f"{run.p50_ms:>8.1f} {run.p99_ms:>8.1f} {run.max_ms:>8.1f} "
                    f"{run.bytes_per_connection:>8.0f} {run.gateway_cores:>6.2f} "
                    f"{run.client_cores:>12.2f}{target}"
                )
        finally:
            gateway.stop()
    finally:
        platform.stop()


def main() -> None:
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    # `python -m bench` imports this module: its helper is imported only when run alone.
    from bench.__main__ import migrated_database

    with tempfile.TemporaryDirectory() as directory:
        stream_capacity(migrated_database(directory))


if __name__ == "__main__":
    main()
