"""A stream as Server-Sent Events: `text/event-stream`, one ASGI response per client.

The response starts with the client's reconnect delay (`retry:`). Then, while the client
keeps up, the hub writes each event to its connection itself (`app.streams.connection`:
under uvicorn's httptools protocol; through ASGI otherwise) and this response's task sleeps.
When something is buffered (the client fell behind, the connection is not the server's, the
stream closes), it wakes and writes what the buffer holds: a status event, the quotes (`id:`
the tick, so a reconnecting browser sends `Last-Event-ID` and gets the latest quote of each
symbol newer than it), a heartbeat comment. A write that waits longer than
`streams.write_stall_s` (the client stopped reading and the socket's buffers are full) has
the hub drop the client. A closing stream ends with a `status` event naming why, and the
response completes.
"""

import asyncio
import contextlib
import time

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.observability.access_log import access_record_var
from app.streams.connection import chunked_transport
from app.streams.frames import HEARTBEAT
from app.streams.hub import QuoteHub, status_notice
from app.streams.subscriber import Batch, Subscriber

EVENT_STREAM = "text/event-stream"
_CLOSING_DETAIL = {
    "credential-expired": "The credential expired; reconnect with a fresh one.",
    "credential-revoked": "The credential is no longer valid; sign in again.",
    "too-slow": "The client did not keep up.",
    "draining": "This gateway process is restarting; reconnect.",
    "shutdown": "The gateway is shutting down; reconnect.",
    "disconnected": "",
}


def last_event_step(value: str | None) -> int | None:
    """The tick a `Last-Event-ID` names; None when absent or not one of ours."""
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() and len(value) <= 12 else None


def encode_batch(batch: Batch) -> bytes:
    parts = []
    if batch.status is not None:
        parts.append(batch.status.sse)
    parts.extend(event.sse for event in batch.quotes)
    if batch.heartbeat and not parts:
        parts.append(HEARTBEAT)
    if batch.closing is not None:
        notice = status_notice("closing", _CLOSING_DETAIL[batch.closing], batch.closing)
        parts.append(notice.sse)
    return b"".join(parts)


class EventStreamResponse(Response):
    """Serves one subscriber of `hub` until the client leaves or the hub closes it."""

    media_type = EVENT_STREAM

    def __init__(self, hub: QuoteHub, subscriber: Subscriber) -> None:
        super().__init__(
            content=None,
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )
        # Starlette would send a zero content-length for an empty body.
        self.raw_headers = [(n, v) for n, v in self.raw_headers if n != b"content-length"]
        self.background: BackgroundTask | None = None
        self._hub = hub
        self._subscriber = subscriber

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        subscriber = self._subscriber
        subscriber.writer = asyncio.current_task()
        listener = asyncio.create_task(_until_disconnect(receive, subscriber))

        async def write(body: bytes, *, more: bool = True) -> None:
            # `writing()` inlined: without a lent connection, this runs once per client and tick.
            subscriber.writing_since = time.monotonic()
            try:
                await send({"type": "http.response.body", "body": body, "more_body": more})
            finally:
                subscriber.writing_since = None

        try:
            with subscriber.writing():
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                )
            await write(b"retry: %d\n\n" % self._hub.settings.client_retry_ms)
            transport = chunked_transport()
            while True:
                if transport is not None and not subscriber.wake.is_set():
                    subscriber.transport = transport
                await subscriber.wake.wait()
                quotes = subscriber.take_quotes()
                if quotes is not None:
                    if quotes:
                        await write(b"".join([event.sse for event in quotes]))
                    continue
                batch = subscriber.take()
                if batch.closing == "disconnected":
                    return
                body = encode_batch(batch)
                if body:
                    await write(body)
                if batch.closing is not None:
                    await write(b"", more=False)
                    return
        except asyncio.CancelledError:
            if subscriber.closing != "too-slow":
                raise
            # Dropped by the hub while a write stalled: the response ends incomplete, and
            # the server cuts the connection.
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        finally:
            subscriber.transport = None
            record = access_record_var.get()
            if record is not None:
                record.bytes_out += subscriber.direct_bytes
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await self._hub.leave(subscriber)


async def _until_disconnect(receive: Receive, subscriber: Subscriber) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            subscriber.close("disconnected")
            return
