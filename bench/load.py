"""Load generation: wrk when the machine has it (installed by `make bench` where it can be),
otherwise a Python generator, which saturates sooner and so understates differences.

Either spreads its requests over the paths it is given (one per catalogue symbol), and
either can watch the upstream's CPU during the run, to show it was not the bottleneck.
"""

import asyncio
import itertools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from bench.servers import Server, pinned

# Runs per side of a comparison: on a shared 2-core machine one run can be 20 % off.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
# Above this share of a core the upstream may be what limits a run, not the target.
UPSTREAM_CORE_LIMIT = 0.5
SPREAD_SCRIPT = Path(__file__).with_name("spread.lua")


@dataclass(frozen=True)
class LoadResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    tool: str
    # Cores the upstream used during the run, when it was watched.
    upstream_cores: float | None = None


def load_tool() -> str:
    return "wrk" if shutil.which("wrk") else "python"


def run_load(
    base_url: str,
    paths: Sequence[str],
    *,
    connections: int,
    seconds: float,
    headers: Mapping[str, str] | None = None,
    upstream: Server | None = None,
) -> LoadResult:
    """Load `base_url` with requests spread over `paths`; with `upstream`, also the cores
    that process used meanwhile (its CPU time over the run's wall time)."""
    cpu_before = upstream.cpu_seconds() if upstream else 0.0
    started = time.monotonic()
    if load_tool() == "wrk":
        result = _wrk(base_url, paths, connections=connections, seconds=seconds, headers=headers)
    else:
        result = asyncio.run(_python_load(base_url, paths, connections, seconds, headers or {}))
    if upstream is None:
        return result
    cores = (upstream.cpu_seconds() - cpu_before) / (time.monotonic() - started)
    return replace(result, upstream_cores=cores)


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _duration_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNIT_MS[unit]


def _wrk(
    base_url: str,
    paths: Sequence[str],
    *,
    connections: int,
    seconds: float,
    headers: Mapping[str, str] | None,
) -> LoadResult:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if len(paths) == 1:
        command.append(base_url + paths[0])
    else:
        # The script's paths replace the URL's: they carry its path (e.g. /partner/v1).
        prefix = urlsplit(base_url).path
        command += ["-s", str(SPREAD_SCRIPT), base_url, "--", *(prefix + p for p in paths)]
    output = subprocess.run(
        pinned(command, measured=False), capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _duration_ms(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _duration_ms(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    non_2xx_match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    non_2xx = int(non_2xx_match.group(1)) if non_2xx_match else 0
    return LoadResult(rps, p50, p99, non_2xx, "wrk")


async def _python_load(
    base_url: str,
    paths: Sequence[str],
    connections: int,
    seconds: float,
    headers: Mapping[str, str],
) -> LoadResult:
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    # Shared by the workers: consecutive requests take consecutive paths.
    next_path = itertools.cycle(paths).__next__

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with session.get(base_url + next_path(), headers=dict(headers)) as response:
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


def print_result(label: str, result: LoadResult, *, baseline: LoadResult | None = None) -> None:
    """One row of a benchmark's table: throughput, its ratio to `baseline`, latency, and the
    upstream's CPU (with a warning line when it may have limited the run)."""
    ratio = f"{result.requests_per_s / baseline.requests_per_s:5.2f}x" if baseline else " " * 6
    upstream = ""
    if result.upstream_cores is not None:
        upstream = f"   upstream {result.upstream_cores:.2f} core"
    print(
        f"{label:<48} {result.requests_per_s:>7.0f} req/s {ratio}   "
        f"p50 {result.p50_ms:6.2f} ms   p99 {result.p99_ms:6.2f} ms   "
        f"non-2xx {result.non_2xx}{upstream}"
    )
    if result.upstream_cores is not None and result.upstream_cores > UPSTREAM_CORE_LIMIT:
        print(
            f"  WARNING: the upstream used {result.upstream_cores:.2f} core (> "
            f"{UPSTREAM_CORE_LIMIT}) during a run of this row; it may have limited the figure"
        )
