"""MCP tool calls against the partner HTTP calls they stand for, on one gateway.

`tools/call quotes` through `POST /mcp` (stateless, answered as a one-event SSE stream) and
`GET /partner/v1/quotes` with the same API key and symbols, loaded in turns by one Python
generator (so both rows pay the same client cost); the ratio is what a tool call costs over
its HTTP call: the SDK's JSON-RPC handling plus the in-process partner request.

    python -m bench.mcp      # BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_MCP_CONNECTIONS (10)
"""

import asyncio
import os
import tempfile
import time
from collections.abc import Mapping

import aiohttp
import orjson

from bench.load import ROUNDS, LoadResult, print_result
from bench.rate_limited import provision_partner
from bench.servers import Server, start_gateway, start_upstream

CONNECTIONS = int(os.environ.get("BENCH_MCP_CONNECTIONS", "10"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
SYMBOLS = "AAPL,MSFT,NVDA"
TOOL_CALL = orjson.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "quotes", "arguments": {"symbols": SYMBOLS}},
    }
)
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
# The same call as a 2026-07-28 client sends it: the protocol fields ride in each request.
MODERN = "2026-07-28"
MODERN_TOOL_CALL = orjson.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "quotes",
            "arguments": {"symbols": SYMBOLS},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
)
MODERN_HEADERS = {
    **MCP_HEADERS,
    "MCP-Protocol-Version": MODERN,
    "Mcp-Method": "tools/call",
    "Mcp-Name": "quotes",
}


async def _load(
    url: str, *, body: bytes | None, headers: Mapping[str, str], seconds: float
) -> LoadResult:
    """`CONNECTIONS` clients sending the request (a POST of `body`, else a GET) for `seconds`."""
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            if body is None:
                request = session.get(url, headers=dict(headers))
            else:
                request = session.post(url, data=body, headers=dict(headers))
            async with request as response:
                answer = await response.read()
                if response.status >= 300 or b'"isError":true' in answer:
                    failures += 1
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(CONNECTIONS)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return LoadResult(
        requests_per_s=len(latencies) / elapsed,
        p50_ms=latencies[len(latencies) // 2],
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        non_2xx=failures,
        tool="python",
    )


def mcp_tool_calls(upstream: Server, database_url: str, *, seconds: float = SECONDS) -> None:
    """Print the HTTP row and the MCP row, the best of `ROUNDS` runs each."""
    key = asyncio.run(provision_partner(database_url))
    gateway = start_gateway(
        "gateway",
        services={"market-data": [upstream.url]},
        database_url=database_url,
        env={
            "GATEWAY_ACCESS_LOG": "false",
            "GATEWAY_UPSTREAM__COLLAPSE_GETS": "false",
        },
        unset=("REDIS_URL", "GATEWAY_REDIS_URL"),
    )
    try:
        http_url = f"{gateway.url}/partner/v1/quotes?symbols={SYMBOLS}"
        credential = {"X-API-Key": key}
        rows: dict[str, tuple[str, bytes | None, dict[str, str]]] = {
            "GET /partner/v1/quotes": (http_url, None, credential),
            "MCP tools/call quotes, 2025-06-18 (SSE)": (
                f"{gateway.url}/mcp",
                TOOL_CALL,
                {**MCP_HEADERS, **credential},
            ),
            f"MCP tools/call quotes, {MODERN}": (
                f"{gateway.url}/mcp",
                MODERN_TOOL_CALL,
                {**MODERN_HEADERS, **credential},
            ),
        }
        runs: dict[str, list[LoadResult]] = {label: [] for label in rows}
        for url, body, headers in rows.values():  # warm pools and the tool catalogue
            asyncio.run(_load(url, body=body, headers=headers, seconds=1))
        for _ in range(ROUNDS):
            for label, (url, body, headers) in rows.items():
                runs[label].append(
                    asyncio.run(_load(url, body=body, headers=headers, seconds=seconds))
                )
    finally:
        gateway.stop()
    print(
        f"\n## Partner quotes: MCP tool call vs its HTTP call, one gateway (in-process limiter), "
        f"{CONNECTIONS} connections, {seconds:g} s, best of {ROUNDS}"
    )
    best = {
        label: max(results, key=lambda run: run.requests_per_s) for label, results in runs.items()
    }
    http = best["GET /partner/v1/quotes"]
    for label, result in best.items():
        print_result(label, result, baseline=http)


def main() -> None:
    from bench.__main__ import migrated_database

    with tempfile.TemporaryDirectory() as directory:
        upstream = start_upstream()
        try:
            mcp_tool_calls(upstream, migrated_database(directory))
        finally:
            upstream.stop()


if __name__ == "__main__":
    main()
