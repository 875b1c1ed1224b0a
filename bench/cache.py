"""A cached route's hit path against the same route uncached: partner quotes, the same
canned upstream, the same partner and Redis rate limit, load spread over the catalogue's
symbols; one gateway with the response cache on (every request after the warm-up a hit,
from memory; Redis holds the shared level), one with it off (every request upstream,
collapsing off). Interleaved rounds, best run counts. Target: hits >= 2x uncached.

Run alone: `python -m bench.cache` (BENCH_SECONDS, BENCH_ROUNDS, BENCH_CONNECTIONS).
"""

import os
import tempfile

from bench.servers import Server, start_upstream
from bench.throughput import verdict
from bench.variants import first_against_second

CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
HIT_TARGET = 2.0


def cached_against_uncached(
    upstream: Server, database_url: str, *, connections: int = CONNECTIONS, seconds: float = SECONDS
) -> None:
    uncached, cached = first_against_second(
        upstream,
        database_url,
        {
            "partner quotes, cache off (every request upstream)": {
                "GATEWAY_ACCESS_LOG": "false",
                "GATEWAY_CACHE__ENABLED": "false",
            },
            "partner quotes, cache hits": {
                "GATEWAY_ACCESS_LOG": "false",
                "GATEWAY_CACHE__QUOTES_TTL_S": "3600",
            },
        },
        title="Response cache",
        connections=connections,
        seconds=seconds,
    )
    ratio = cached.requests_per_s / uncached.requests_per_s
    print(
        f"Cache hit path: {ratio:.2f}x the uncached route "
        f"(target >= {HIT_TARGET}x: {verdict(ratio >= HIT_TARGET)}); "
        f"p50 {cached.p50_ms:.2f} ms against {uncached.p50_ms:.2f} ms"
    )


if __name__ == "__main__":
    from bench.__main__ import migrated_database

    with tempfile.TemporaryDirectory() as temporary:
        canned = start_upstream()
        try:
            cached_against_uncached(canned, migrated_database(temporary))
        finally:
            canned.stop()
