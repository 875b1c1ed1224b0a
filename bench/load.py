"""Load generation: wrk when the machine has it (installed by `make bench` where it can be),
otherwise a Python generator, which saturates sooner and so understates differences."""

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from bench.servers import pinned

# Runs per side of a comparison: on a shared 2-core machine one run can be 20 % off.
ROUNDS = 3


@dataclass
class LoadResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    tool: str


def run_load(
    url: str,
    *,
    connections: int,
    seconds: float,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    if shutil.which("wrk"):
        return _wrk(url, connections=connections, seconds=seconds, headers=headers or {})
    return asyncio.run(_python_load(url, connections, seconds, headers or {}))


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _duration_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNIT_MS[unit]


def _wrk(url: str, *, connections: int, seconds: float, headers: Mapping[str, str]) -> LoadResult:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run(
        pinned([*command, url], measured=False), capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _duration_ms(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _duration_ms(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    non_2xx_match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    non_2xx = int(non_2xx_match.group(1)) if non_2xx_match else 0
    return LoadResult(rps, p50, p99, non_2xx, "wrk")


async def _python_load(
    url: str, connections: int, seconds: float, headers: Mapping[str, str]
) -> LoadResult:
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with session.get(url, headers=dict(headers)) as response:
                await response.read()
                if response.status >= 300:
                    failures += 1
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return LoadResult(
        requests_per_s=len(latencies) / elapsed,
        p50_ms=latencies[len(latencies) // 2],
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        non_2xx=failures,
        tool="python",
    )


def print_result(label: str, result: LoadResult) -> None:
    """One row of a benchmark's table."""
    print(
        f"{label:<36} {result.requests_per_s:>9.0f} req/s   p50 {result.p50_ms:6.2f} ms   "
        f"p99 {result.p99_ms:6.2f} ms   non-2xx {result.non_2xx}"
    )
