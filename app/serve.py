"""The gateway's server: `python -m app.serve [--host H] [--port P] [--workers N]`.

uvicorn with the gateway's options: uvloop and httptools; no `server` header; no uvicorn
access log (the edge writes its own); proxy headers off, as the gateway reads
`X-Forwarded-For` itself, from the proxies it trusts (`GATEWAY_HTTP__TRUSTED_PROXIES`).

It stops the way a rolling update needs:

1. On SIGTERM the process drains: `/readyz` answers 503 `draining`, so the load balancer
   takes it out of rotation, and every route still serves what arrives meanwhile.
2. After `GATEWAY_DRAIN_S` (default 5) it stops as uvicorn does: the listener closes,
   requests in flight finish (for at most 10 s), the lifespan closes the shared clients.

SIGINT (Ctrl-C) or a second SIGTERM stops at once, as with plain uvicorn.

How the signal reaches `/readyz`: this module builds the app itself, so it creates the
`Drain` and hands it to `create_app(drain=...)`, whose lifespan keeps it in `GatewayState`
where `/readyz` reads it; the server's signal handler sets it. One plain object shared by
the two, passed explicitly: no global, no lookup through the app. (`uvicorn app.asgi:app`
still serves the gateway, stopping at once.)

With `--workers N` the parent binds the socket, runs N worker processes on it, each serving
as above, passes SIGTERM on to them and waits. The workers share one Prometheus metrics
directory (`PROMETHEUS_MULTIPROC_DIR`, or a temporary one the parent creates and removes), so
`/metrics` answers the sum of them all whichever worker it reaches; a stopped worker's live
gauges are dropped from it. A worker that exits on its own stops the
others, and the parent exits with an error for its supervisor (Kubernetes, systemd) to
restart: it does not respawn workers.
"""

import argparse
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

import uvicorn

from app.main import create_app
from app.observability.metrics import forget_worker, share_between_workers
from app.settings import Settings
from app.state import Drain

logger = logging.getLogger("gateway.serve")

# What uvicorn exits with when the app fails to start.
_STARTUP_FAILURE = 3
# Requests in flight when the server stops get this long to finish.
_GRACEFUL_SHUTDOWN_S = 10


@dataclass(frozen=True, slots=True)
class ServeOptions:
    host: str
    port: int
    workers: int


class DrainingServer(uvicorn.Server):
    """uvicorn's server, which on the first SIGTERM drains for `drain_s` before it stops."""

    def __init__(self, config: uvicorn.Config, *, drain: Drain, drain_s: float) -> None:
        super().__init__(config)
        self._drain = drain
        self._drain_s = drain_s
        self._stop_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and not self._drain.draining and not self.should_exit:
            self._drain.begin()
            if self._drain_s > 0:
                logger.warning(
                    "SIGTERM: draining for %.1f s (/readyz answers 503), then stopping",
                    self._drain_s,
                )
                # Checked on uvicorn's tick (every 0.1 s): a signal handler must not wait.
                self._stop_at = time.monotonic() + self._drain_s
                return
        self._stop_at = None
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._stop_at is not None and time.monotonic() >= self._stop_at:
            self._stop_at = None
            super().handle_exit(signal.SIGTERM, None)
        return await super().on_tick(counter)


def serve(options: ServeOptions, sockets: list[socket.socket] | None = None) -> None:
    """One process serving the gateway until it is stopped (on `sockets`, or it binds)."""
    settings = Settings()
    drain = Drain()
    config = uvicorn.Config(
        create_app(settings, drain=drain),
        host=options.host,
        port=options.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        server_header=False,
        proxy_headers=False,
        access_log=False,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
    )
    server = DrainingServer(config, drain=drain, drain_s=settings.drain_s)
    server.run(sockets=sockets)
    if not server.started:
        sys.exit(_STARTUP_FAILURE)


def serve_workers(options: ServeOptions) -> None:
    """`options.workers` processes serving on one socket; SIGTERM or SIGINT stops them all."""
    sock = uvicorn.Config("app.asgi:app", host=options.host, port=options.port).bind_socket()
    # Before the workers start (they read it at import): one metrics directory for all.
    remove_metrics = share_between_workers()
    spawn = multiprocessing.get_context("spawn")
    workers = [
        spawn.Process(target=serve, args=(options, [sock]), name=f"gateway-worker-{n}")
        for n in range(options.workers)
    ]
    stopping = False

    def stop(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None:
                os.kill(worker.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in workers:
        worker.start()
    multiprocessing.connection.wait([worker.sentinel for worker in workers])
    failed = not stopping
    if failed:
        logger.error("a worker exited on its own; stopping the others")
        stop(signal.SIGTERM, None)
    for worker in workers:
        worker.join()
        if worker.pid is not None:
            forget_worker(worker.pid)
    sock.close()
    remove_metrics()
    if failed:
        sys.exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m app.serve",
        description="Serve the gateway; on SIGTERM drain for GATEWAY_DRAIN_S, then stop.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    options = ServeOptions(host=args.host, port=args.port, workers=args.workers)
    if options.workers == 1:
        serve(options)
    else:
        serve_workers(options)


if __name__ == "__main__":
    main()
