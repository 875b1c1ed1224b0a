"""Stream capacity: how many concurrent SSE clients one gateway worker holds with quotes
ticking, the delay of a tick's delivery and the memory each connection costs.

The market-data service publishes every symbol's quote on each second; each client follows
one symbol (spread over 50), so every client gets one event a second, all at once. A
tick's delivery delay is the client's receive time minus the tick's second (the event id):
it holds the market-data service's own work, the gateway's fan-out and the client's
reading (the last column shows the clients' CPU: on a busy machine they, not the gateway,
can be what is slow). The gateway's CPU per delivered event (us/event) is the figure to
compare on a shared machine, where the delays are noise; `kernel` is its share spent in
the kernel. That share is the floor: each event is one `send` per client, and on loopback
the kernel also runs the client's TCP receive inside that send (measured here at 10,000
clients: about 13 of 17 us per event, 1.3 s of kernel time per 100,000 events on one core,
so a tick for 10,000 clients takes over 100 ms on one core whatever the gateway's own code
costs). Memory: the gateway's resident set
with the clients connected and ticking, less its resident set before them, per connection.

The clients run in this process, on the cores the gateway does not have (`pinned`): uvloop,
one protocol object per connection that only notes each read and its time; the reads are
parsed after the measurement, so a client's own work delays the ones after it as little as
it can (parsing each read as it came cost the clients about 20 us of CPU per event, twice
what they cost now: most of it is the kernel's receive, and one process keeps up with the
gateway at 10,000 clients).

    python -m bench.streams         BENCH_STREAM_CLIENTS (1000,5000,10000)
                                    BENCH_STREAM_SECONDS (10)
"""

import asyncio
import io
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
# A connect not answered by then counts as refused (a saturated gateway answers late).
_CONNECT_TIMEOUT_S = 30.0


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
    # The gateway's CPU per delivered event, in microseconds, and the kernel's share of it
    # (the sends: on loopback the kernel also does the client's receive in the same call).
    gateway_us_per_event: float
    kernel_share: float
    # The clients' own CPU (this process): near a core, the delays are theirs.
    client_cores: float


class _Client(asyncio.Protocol):
    def __init__(self, request: bytes) -> None:
        self._request = request
        self.ok = asyncio.get_running_loop().create_future()
        self.reads: list[tuple[float, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self._request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.reads.append((time.time(), data))
        if len(self.reads) == 1 and not self.ok.done():
            # (Done already: the connect timed out.)
            self.ok.set_result(data.startswith(b"HTTP/1.1 200"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ok.done():
            self.ok.set_result(False)

    def delays(self, start: float, end: float) -> list[float]:
        """Each event's delay (receive time less its tick) among the reads in [start, end)."""
        delays = []
        tail = b""
        for moment, data in self.reads:
            data = tail + data
            at = 0
            while (found := data.find(b"\nid: ", at)) != -1:
                line_end = data.find(b"\n", found + 5)
                if line_end == -1:
                    break
                if start <= moment < end:
                    delays.append(moment - int(data[found + 5 : line_end]))
                at = line_end
            tail = data[at:][-32:]
        return delays


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def _drive(gateway: Server, token: str, clients: int) -> StreamRun:
    loop = asyncio.get_running_loop()
    host, port = gateway.url.removeprefix("http://").split(":")
    transports: list[asyncio.BaseTransport] = []
    protocols: list[_Client] = []
    gate = asyncio.Semaphore(_CONNECTS_AT_ONCE)

    async def connect(n: int) -> bool:
        request = (
            f"GET /web/v1/stream/quotes?symbols={SYMBOLS[n % len(SYMBOLS)]} HTTP/1.1\r\n"
            f"Host: {host}\r\nAuthorization: Bearer {token}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
        async with gate, asyncio.timeout(_CONNECT_TIMEOUT_S):
            transport, protocol = await loop.create_connection(
                lambda: _Client(request), host, int(port)
            )
            transports.append(transport)
            protocols.append(protocol)
            return await protocol.ok

    before = _rss_bytes(gateway.process.pid)
    results = await asyncio.gather(*(connect(n) for n in range(clients)), return_exceptions=True)
    connected = sum(1 for result in results if result is True)
    await asyncio.sleep(3)
    after = _rss_bytes(gateway.process.pid)
    user, system = gateway.cpu_times()
    own = time.process_time()
    start = time.time()
    await asyncio.sleep(SECONDS)
    end = time.time()
    user_after, system_after = gateway.cpu_times()
    used = (user_after - user) + (system_after - system)
    cores = used / SECONDS
    client_cores = (time.process_time() - own) / SECONDS
    for transport in transports:
        transport.close()
    await asyncio.sleep(2)
    delays = sorted(delay for protocol in protocols for delay in protocol.delays(start, end))
    events = len(delays)
    delays = delays or [float("nan")]
    return StreamRun(
        clients=clients,
        connected=connected,
        events_per_s=events / SECONDS,
        p50_ms=delays[len(delays) // 2] * 1000,
        p99_ms=delays[min(int(len(delays) * 0.99), len(delays) - 1)] * 1000,
        max_ms=delays[-1] * 1000,
        bytes_per_connection=(after - before) / max(connected, 1),
        gateway_cores=cores,
        gateway_us_per_event=cores * SECONDS / max(events, 1) * 1e6,
        kernel_share=(system_after - system) / used if used else float("nan"),
        client_cores=client_cores,
    )


@contextmanager
def _off_the_measured_core() -> Iterator[None]:
    """This process (the clients) on the cores `pinned` leaves to the load tools."""
    cores = os.cpu_count() or 1
    before = os.sched_getaffinity(0)
    if cores >= 2 and shutil.which("taskset") is not None:
        os.sched_setaffinity(0, range(1, cores))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


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
                f"{'max ms':>8} {'B/conn':>8} {'cores':>6} {'us/event':>9} {'kernel':>7} "
                f"{'client cores':>12}"
            )
            for clients in CLIENT_COUNTS:
                with _off_the_measured_core():
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
                    f"{run.gateway_us_per_event:>9.1f} {run.kernel_share:>7.0%} "
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
