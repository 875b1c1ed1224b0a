"""Serve one simulated service with uvicorn."""

import logging
import os
import threading
import time

import uvicorn

from backends.faults import FaultSettings, quiet_injected_drops
from backends.services import build_service

_PARENT_POLL_SECONDS = 0.5


def serve(
    service: str,
    *,
    host: str,
    port: int,
    instance: str | None,
    seed: int,
    faults: FaultSettings,
    exit_with_parent: bool = False,
) -> None:
    """Run the service until SIGINT/SIGTERM (or, optionally, until the parent process dies)."""
    app = build_service(service, instance=instance, seed=seed, faults=faults)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
    )
    # uvicorn configures its loggers in Config(); filter after that so the filter sticks.
    quiet_injected_drops(logging.getLogger("uvicorn.error"))
    server = uvicorn.Server(config)
    if exit_with_parent:
        _shut_down_when_orphaned(server)
    server.run()


def _shut_down_when_orphaned(server: uvicorn.Server) -> None:
    # A test run that is killed outright cannot stop its backends; they notice the
    # re-parenting and exit instead of squatting on ports forever.
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_SECONDS)
        server.should_exit = True

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
