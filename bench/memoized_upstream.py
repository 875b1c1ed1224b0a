"""Stand-ins for the platform's services whose only latency is a set delay, so that the
dashboard row measures the gateway's fan-out rather than the simulated backends (Python
apps sharing one core, about 0.8 ms of CPU per request, served one after another).

Each listening port fronts one real service instance. The first GET of a target is fetched
from it (once, however many ask meanwhile) and its status, content type and body are kept;
every request for the target is answered from memory `delay_ms` after it arrived, on a
timer, so concurrent requests wait side by side and not in a queue. A dashboard's calls are
the same on every load of one user's dashboard, so one warm-up request fills the memory.

    python -m bench.memoized_upstream --delay-ms 20 --front PORT=URL [--front PORT=URL ...]
"""

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from functools import partial

import aiohttp
import uvloop
from yarl import URL

from bench.servers import Server, free_port, pinned, wait_until_up
from bench.upstream import HttpConnection, Response, response

FETCH_TIMEOUT_S = 30


class MemoizedService:
    """One real service instance's answers, fetched once per target and then kept."""

    def __init__(self, origin: str, *, session: aiohttp.ClientSession, delay_s: float) -> None:
        self.origin = origin
        self.session = session
        self.delay_s = delay_s
        self.kept: dict[bytes, Response] = {}
        self.fetching: dict[bytes, asyncio.Task[Response]] = {}

    def answer(self, target: bytes) -> "asyncio.Future[Response]":
        """The target's response, settled no sooner than `delay_s` after this call."""
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[Response] = loop.create_future()
        due = time.monotonic() + self.delay_s
        kept = self.kept.get(target)
        if kept is not None:
            self._settle(answered, kept, due=due)
            return answered
        fetch = self.fetching.get(target)
        if fetch is None:
            fetch = self.fetching[target] = loop.create_task(self._fetch(target))
        fetch.add_done_callback(lambda done: self._settle(answered, done.result(), due=due))
        return answered

    def _settle(self, answered: "asyncio.Future[Response]", kept: Response, *, due: float) -> None:
        remaining = due - time.monotonic()
        if remaining > 0:
            # Checked again when the timer fires: uvloop's can fire up to a millisecond early
            # (it counts from the clock it read at the start of the loop's iteration).
            asyncio.get_running_loop().call_later(
                remaining, partial(self._settle, answered, kept, due=due)
            )
        elif not answered.done():
            answered.set_result(kept)

    async def _fetch(self, target: bytes) -> Response:
        url = URL(self.origin + target.decode("latin-1"), encoded=True)
        try:
            async with self.session.get(url) as reply:
                body = await reply.read()
                reason = reply.reason or ""
                content_type = reply.headers.get("content-type", "application/octet-stream")
        except (aiohttp.ClientError, TimeoutError) as error:
            # Not kept: the next request for the target asks the service again.
            del self.fetching[target]
            return response(b"502 Bad Gateway", str(error).encode(), content_type=b"text/plain")
        kept = response(
            f"{reply.status} {reason}".encode("latin-1"),
            body,
            content_type=content_type.encode("latin-1"),
        )
        self.kept[target] = kept
        del self.fetching[target]
        return kept


async def listen(
    origin: str, *, port: int, session: aiohttp.ClientSession, delay_s: float
) -> asyncio.Server:
    """Serve `origin`'s answers from memory on `port` (0: one the OS picks)."""
    service = MemoizedService(origin, session=session, delay_s=delay_s)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        partial(HttpConnection, service.answer), "127.0.0.1", port, backlog=1024
    )


async def serve(fronts: Mapping[int, str], *, delay_s: float) -> None:
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        servers = [
            await listen(origin, port=port, session=session, delay_s=delay_s)
            for port, origin in fronts.items()
        ]
        await asyncio.gather(*(server.serve_forever() for server in servers))


def start_memoized_upstreams(
    services: Mapping[str, Sequence[str]], *, delay_ms: float
) -> tuple[Server, dict[str, list[str]]]:
    """One process, off the measured core, fronting every instance of `services` on a port
    of its own; returns it and the services' URLs as the gateway is to be given them."""
    fronts = {name: [(free_port(), origin) for origin in urls] for name, urls in services.items()}
    command = [sys.executable, "-m", "bench.memoized_upstream", "--delay-ms", str(delay_ms)]
    for pairs in fronts.values():
        for port, origin in pairs:
            command += ["--front", f"{port}={origin}"]
    process = subprocess.Popen(pinned(command, measured=False))
    urls = {
        name: [f"http://127.0.0.1:{port}" for port, _ in pairs] for name, pairs in fronts.items()
    }
    # The ports are bound in order: the last one answering means all do.
    last = [url for each in urls.values() for url in each][-1]
    wait_until_up("memoized upstreams", last + "/health", process)
    return Server("memoized upstreams", last, process), urls


async def _stages(session: aiohttp.ClientSession, stages: Sequence[Sequence[str]]) -> float:
    """One run of `stages` (each a list of URLs fetched at once, after the stage before it),
    in milliseconds."""
    started = time.perf_counter()
    for stage in stages:

        async def fetch(url: str) -> None:
            async with session.get(url) as reply:
                await reply.read()

        await asyncio.gather(*(fetch(url) for url in stage))
    return (time.perf_counter() - started) * 1000


def stages_floor(stages: Sequence[Sequence[str]], *, seconds: float) -> tuple[float, float]:
    """p50 and p99 (ms) of a plain client making `stages` one run after another against the
    stand-ins: what a gateway that cost nothing would take for the same calls on this
    machine (each call's own round trip and the processes' wake-ups included)."""

    async def measure() -> list[float]:
        async with aiohttp.ClientSession() as session:
            await _stages(session, stages)
            runs: list[float] = []
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                runs.append(await _stages(session, stages))
            return sorted(runs)

    runs = asyncio.run(measure())
    return runs[len(runs) // 2], runs[min(len(runs) - 1, int(len(runs) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument(
        "--front", action="append", required=True, metavar="PORT=URL", help="repeatable"
    )
    arguments = parser.parse_args()
    fronts = {
        int(port): origin for port, _, origin in (front.partition("=") for front in arguments.front)
    }
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(fronts, delay_s=arguments.delay_ms / 1000))


if __name__ == "__main__":
    main()
