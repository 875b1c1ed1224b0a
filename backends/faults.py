"""Fault injection and request accounting, wrapped around every simulated service.

``FaultInjector`` is a pure ASGI middleware so it sits outside FastAPI's own
error handling: it can delay, fail or drop a request before the service sees
it, and it owns two control endpoints that tests use to steer and observe a
backend over real sockets:

* ``GET|PUT|DELETE /__faults`` - read, merge-update or reset the fault settings;
* ``GET|DELETE /__stats`` - read or reset per-route request counts, latest headers and query.

``/__faults``, ``/__stats`` and ``/health`` are never faulted.
"""

import asyncio
import json
import logging
import random
from collections import Counter, OrderedDict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from backends.service_app import describe_errors

FAULTS_PATH = "/__faults"
STATS_PATH = "/__stats"
_NEVER_FAULTED = frozenset({FAULTS_PATH, STATS_PATH, "/health"})
# Routes whose latest headers are remembered; the oldest route is forgotten first.
_HEADER_ROUTES_KEPT = 256
# A dropped response promises this many bytes but delivers only a fragment.
_DROP_PROMISED_BYTES = 4096
_DROP_FRAGMENT = b'{"partial":'


class FaultSettings(BaseModel):
    """What to inflict on requests whose path starts with one of ``paths`` (``None``: all)."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(default=0, ge=0, le=60_000)
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    error_status: int = Field(default=503, ge=400, le=599)
    drop_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    paths: list[str] | None = None

    def applies_to(self, path: str) -> bool:
        """Whether requests to ``path`` are subject to these faults."""
        if path in _NEVER_FAULTED:
            return False
        return self.paths is None or any(path.startswith(prefix) for prefix in self.paths)


class InjectedConnectionDrop(Exception):
    """Raised after a truncated response so the server closes the connection mid-body."""


class RequestStats:
    """Counts of requests per ``"METHOD /path"``, the latest headers and query seen on each."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.last_headers: OrderedDict[str, dict[str, str]] = OrderedDict()
        self.last_query: dict[str, str] = {}

    def record(
        self, method: str, path: str, raw_headers: list[tuple[bytes, bytes]], query: bytes = b""
    ) -> None:
        """Account for one request that reached the service."""
        route = f"{method} {path}"
        self.counts[route] += 1
        self.last_query[route] = query.decode("latin-1")
        headers: dict[str, str] = {}
        for raw_name, raw_value in raw_headers:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.last_headers[route] = headers
        self.last_headers.move_to_end(route)
        if len(self.last_headers) > _HEADER_ROUTES_KEPT:
            forgotten, _ = self.last_headers.popitem(last=False)
            del self.last_query[forgotten]

    def snapshot(self) -> dict[str, Any]:
        """The ``GET /__stats`` document."""
        return {
            "requests": dict(self.counts),
            "total": sum(self.counts.values()),
            "last_headers": dict(self.last_headers),
            "last_query": {route: self.last_query[route] for route in self.last_headers},
        }

    def reset(self) -> None:
        """Forget everything recorded so far."""
        self.counts.clear()
        self.last_headers.clear()
        self.last_query.clear()


class FaultInjector:
    """ASGI middleware that injects latency, errors and dropped connections, and records traffic."""

    def __init__(self, app: ASGIApp, settings: FaultSettings | None = None) -> None:
        self.app = app
        self.initial_settings = settings or FaultSettings()
        self.settings = self.initial_settings
        self.stats = RequestStats()
        self._dice = random.Random()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == FAULTS_PATH:
            await self._serve_faults(scope, receive, send)
            return
        if path == STATS_PATH:
            await self._serve_stats(scope, send)
            return
        if not path.startswith("/__"):
            self.stats.record(
                scope["method"], path, scope["headers"], scope.get("query_string", b"")
            )
        # Read once: a concurrent PUT must not change the rules halfway through a request.
        settings = self.settings
        if settings.applies_to(path):
            if settings.latency_ms > 0:
                await asyncio.sleep(settings.latency_ms / 1000)
            if self._dice.random() < settings.drop_rate:
                await _drop_connection(send)
            if self._dice.random() < settings.error_rate:
                await _send_json(send, settings.error_status, {"detail": "injected fault"})
                return
        await self.app(scope, receive, send)

    async def _serve_faults(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "PUT":
            try:
                update = json.loads(await _read_body(receive) or b"{}")
                if not isinstance(update, dict):
                    raise ValueError("not an object")
            except ValueError:
                await _send_json(send, 422, {"detail": "Body must be a JSON object"})
                return
            try:
                # Partial updates merge into the current settings.
                self.settings = FaultSettings.model_validate(
                    {**self.settings.model_dump(), **update}
                )
            except ValidationError as exc:
                await _send_json(send, 422, {"detail": describe_errors(_with_body_prefix(exc))})
                return
        elif method == "DELETE":
            # Back to what the process was started with (e.g. --latency-ms for benchmarks).
            self.settings = self.initial_settings
        elif method != "GET":
            await _send_json(send, 405, {"detail": "Method Not Allowed"}, allow="GET, PUT, DELETE")
            return
        await _send_json(send, 200, self.settings.model_dump())

    async def _serve_stats(self, scope: Scope, send: Send) -> None:
        method = scope["method"]
        if method == "DELETE":
            self.stats.reset()
        elif method != "GET":
            await _send_json(send, 405, {"detail": "Method Not Allowed"}, allow="GET, DELETE")
            return
        await _send_json(send, 200, self.stats.snapshot())


def quiet_injected_drops(logger: logging.Logger) -> None:
    """Stop the server logging a traceback for every connection we drop on purpose."""

    def is_not_injected_drop(record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], InjectedConnectionDrop))

    logger.addFilter(is_not_injected_drop)


def _with_body_prefix(exc: ValidationError) -> list[dict[str, Any]]:
    # describe_errors() expects FastAPI-style locations that start with where the value came from.
    return [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]


async def _drop_connection(send: Send) -> None:
    # Promise a longer body than we send, then fail: uvicorn closes the transport, so the
    # client sees a truncated payload / disconnect rather than a clean response.
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(_DROP_PROMISED_BYTES).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _DROP_FRAGMENT, "more_body": True})
    raise InjectedConnectionDrop("connection dropped by fault injection")


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_json(
    send: Send, status: int, payload: dict[str, Any], *, allow: str | None = None
) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if allow is not None:
        headers.append((b"allow", allow.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
