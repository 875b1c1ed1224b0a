"""What observability costs the request path: partner quotes with Prometheus metrics, tracing
(W3C context, spans not exported: OTLP off, as by default) and the access log (JSON lines,
written to /dev/null) all on, against the same gateway with all three off
(`GATEWAY_METRICS__ENABLED=false`, `OTEL_SDK_DISABLED=true`, `GATEWAY_ACCESS_LOG=false`).
The same canned upstream, API key + Redis rate limit, collapsing and the response cache off
(every request goes upstream, so the upstream call's span and metrics are in the figure),
load spread over the catalogue. Interleaved rounds, best run counts. Target: on >= 0.95x off.

Run alone: `python -m bench.observability` (BENCH_SECONDS, BENCH_ROUNDS, BENCH_CONNECTIONS).
"""

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid

from bench.instructions import instructions_per_request
from bench.rate_limited import delete_keys, provision_partner
from bench.servers import Server, start_upstream
from bench.throughput import verdict
from bench.variants import first_against_second

CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
TARGET = 0.95

OFF = {
    "GATEWAY_METRICS__ENABLED": "false",
    "GATEWAY_ACCESS_LOG": "false",
    "OTEL_SDK_DISABLED": "true",
}
ON = {
    "GATEWAY_METRICS__ENABLED": "true",
    "GATEWAY_ACCESS_LOG": "true",
    "GATEWAY_LOG_FORMAT": "json",
    "OTEL_SDK_DISABLED": "false",
}


def observability_on_against_off(
    upstream: Server, database_url: str, *, connections: int = CONNECTIONS, seconds: float = SECONDS
) -> None:
    off, on = first_against_second(
        upstream,
        database_url,
        {
            "partner quotes, metrics + tracing + access log off": {
                **OFF,
                "GATEWAY_CACHE__ENABLED": "false",
            },
            "partner quotes, metrics + tracing (export off) + access log on": {
                **ON,
                "GATEWAY_CACHE__ENABLED": "false",
            },
        },
        title="Observability (response cache off)",
        connections=connections,
        seconds=seconds,
        # The access log is written (and paid for) but not shown.
        quiet=True,
    )
    ratio = on.requests_per_s / off.requests_per_s
    met = verdict(ratio >= TARGET)
    print(
        f"Observability on: {ratio:.2f}x all off (target >= {TARGET}x: {met}); "
        f"p99 {on.p99_ms:.2f} ms against {off.p99_ms:.2f} ms"
    )


def instructions_on_against_off(upstream: Server) -> None:
    """The same comparison in instructions per request (callgrind, in-process driver of
    `bench.instructions`): unmoved by the machine's noise, which wall-clock rows are not."""
    print("\n## Observability in instructions per request (callgrind, partner quotes)")
    if shutil.which("valgrind") is None:
        print("skipped: valgrind is not installed (`make bench` installs it where it can)")
        return
    from bench.__main__ import migrated_database

    with tempfile.TemporaryDirectory() as directory:
        database_url = migrated_database(directory)
        key = asyncio.run(provision_partner(database_url))
        prefix = f"bench:{uuid.uuid4().hex[:8]}:"
        common = {
            "BENCH_UPSTREAM": upstream.url,
            "BENCH_DATABASE_URL": database_url,
            "BENCH_API_KEY": key,
            "BENCH_REDIS_PREFIX": prefix,
            "GATEWAY_CACHE__ENABLED": "false",
        }
        counts = {}
        try:
            for label, env in (
                ("all off", {**OFF, "BENCH_ACCESS_LOG": "false"}),
                (
                    "metrics + tracing (export off) + access log on",
                    {**ON, "BENCH_ACCESS_LOG": "true"},
                ),
            ):
                try:
                    counts[label] = instructions_per_request("gateway", {**common, **env})
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as failed:
                    print(f"skipped: the driver failed: {failed}")
                    return
        finally:
            asyncio.run(delete_keys(prefix))
    off = counts["all off"]
    for label, count in counts.items():
        print(f"{label:<56} {count:>12,.0f}   {count / off:.3f}x all off")
    share = off / counts["metrics + tracing (export off) + access log on"]
    print(
        f"Throughput share by instructions (off / on): {share:.3f} "
        f"(target >= {TARGET}: {verdict(share >= TARGET)})"
    )


if __name__ == "__main__":
    from bench.__main__ import migrated_database

    with tempfile.TemporaryDirectory() as temporary:
        canned = start_upstream()
        try:
            observability_on_against_off(canned, migrated_database(temporary))
            instructions_on_against_off(canned)
        finally:
            canned.stop()
