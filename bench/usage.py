"""What counting usage for the developer portal costs the request path: partner quotes with
the portal on (the edge counts each consumer request into the `UsageMeter`, flushed to Redis
every second) against the same gateway with the portal off (`GATEWAY_PORTAL__ENABLED=false`:
nothing counted). The same canned upstream, API key + Redis rate limit, collapsing and the
response cache off, load spread over the catalogue. Interleaved rounds, best run counts.
Target: on >= 0.97x off.

Run alone: `python -m bench.usage` (BENCH_SECONDS, BENCH_ROUNDS, BENCH_CONNECTIONS).
"""

import os
import tempfile

from bench.servers import Server, start_upstream
from bench.throughput import verdict
from bench.variants import first_against_second

CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
TARGET = 0.97


def usage_on_against_off(
    upstream: Server, database_url: str, *, connections: int = CONNECTIONS, seconds: float = SECONDS
) -> None:
    common = {
        "GATEWAY_CACHE__ENABLED": "false",
        "GATEWAY_METRICS__ENABLED": "false",
        "GATEWAY_ACCESS_LOG": "false",
        "OTEL_SDK_DISABLED": "true",
    }
    off, on = first_against_second(
        upstream,
        database_url,
        {
            "partner quotes, portal off (no usage counted)": {
                **common,
                "GATEWAY_PORTAL__ENABLED": "false",
            },
            "partner quotes, portal on (usage counted, flushed to Redis)": {
                **common,
                "GATEWAY_PORTAL__ENABLED": "true",
            },
        },
        title="Usage metering (response cache off)",
        connections=connections,
        seconds=seconds,
    )
    ratio = on.requests_per_s / off.requests_per_s
    print(
        f"Usage counted: {ratio:.2f}x portal off (target >= {TARGET}x: "
        f"{verdict(ratio >= TARGET)}); p99 {on.p99_ms:.2f} ms against {off.p99_ms:.2f} ms"
    )


def main() -> None:
    from bench.__main__ import migrated_database

    with tempfile.TemporaryDirectory() as directory:
        upstream = start_upstream()
        try:
            usage_on_against_off(upstream, migrated_database(directory))
        finally:
            upstream.stop()


if __name__ == "__main__":
    main()
