"""One structured log line per request: what was asked, what was answered, how long it took.

Only the path is logged, never the query string or headers, so that keys and tokens a
client puts there never reach the logs.
"""

import logging
import time

import orjson

logger = logging.getLogger("gateway.access")


def access_logged() -> bool:
    """Whether a request's line would be written (the access logger takes INFO)."""
    return logger.isEnabledFor(logging.INFO)


def log_request(
    *, request_id: str, method: str, path: str, client: str, status: int, started: float
) -> None:
    """Write the line of a request that began at `started` (`time.perf_counter()`)."""
    line = {
        "request_id": request_id,
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        "client": client,
    }
    logger.info(orjson.dumps(line).decode())
