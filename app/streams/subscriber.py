"""One client's side of the hub: a conflating buffer its writer drains, or the client's
connection written to directly while nothing is buffered.

The hub never waits for a client. An SSE writer with nothing to send lends its subscriber
the connection (`transport`, `app.streams.connection`): each event's chunk, encoded once and
shared by every client, is then written to it at once, with no task woken per client and
event. When the connection is gone, or holds more than `DIRECT_WRITE_BOUND` bytes unsent
(the client is behind), the event goes into the buffer instead and the writer is woken; so
does everything a WebSocket client gets.

The buffer has one slot per symbol: a quote the client has not taken yet is replaced by the
newer one (conflation), so a client that cannot keep up gets the latest price of each
symbol, and what it holds is bounded by the number of its symbols whatever the tick rate.

A writer marks each write it makes (`writing`); the hub's housekeeping drops a client whose
one write has waited longer than `streams.write_stall_s` by cancelling that writer
(`app.streams.sse`, `app.streams.websocket`): no timer per write. A client that stops
reading fills its connection past the bound, so its events go through the writer, whose
write then waits for room: what a connection holds is bounded by the server's write buffer
limit and one batch of events.
"""

import asyncio
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from app.streams.frames import HEARTBEAT, HEARTBEAT_CHUNK
from app.streams.messages import CloseReason

# WebSocket replies (subscribed, error) waiting for the writer; a client sending commands
# faster than that is answered only for the latest ones.
_MAX_REPLIES = 8
# Unsent bytes a connection may hold for the hub to go on writing to it directly (a few
# events per symbol): past it the client is behind, and its events are buffered.
DIRECT_WRITE_BOUND = 16 * 1024


@dataclass(frozen=True, slots=True)
class QuoteEvent:
    """One symbol's quote at one tick, encoded for both protocols (`chunk`: the SSE event
    as a chunk of an HTTP/1.1 body)."""

    symbol: str
    step: int
    sse: bytes
    chunk: bytes
    text: str


@dataclass(frozen=True, slots=True)
class StatusNotice:
    """A status event, encoded for both protocols."""

    sse: bytes
    chunk: bytes
    text: str


@dataclass(slots=True)
class Batch:
    """What a writer sends next, in this order."""

    status: StatusNotice | None
    replies: list[str]
    quotes: list[QuoteEvent]
    heartbeat: bool
    closing: CloseReason | None


@dataclass(eq=False, slots=True)
class Subscriber:
    """One stream's buffer; `wake` is set while it holds something to send, `transport`
    while its writer waits with nothing buffered and lends the hub its connection."""

    # Whose stream it is, for the per-principal cap.
    principal_key: str
    symbols: set[str] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    pending: dict[str, QuoteEvent] = field(default_factory=dict)
    status: StatusNotice | None = None
    replies: deque[str] = field(default_factory=lambda: deque(maxlen=_MAX_REPLIES))
    heartbeat_due: bool = False
    closing: CloseReason | None = None
    # Quotes replaced before the client took them.
    conflated: int = 0
    # The client's connection, lent by its SSE writer while nothing is buffered.
    transport: "asyncio.WriteTransport | None" = None
    # The task writing to the client, and since when its current write waits (None: none).
    writer: "asyncio.Task[Any] | None" = None
    writing_since: float | None = None
    # Body bytes written to the lent connection (for the access record: they pass no ASGI).
    direct_bytes: int = 0

    def offer(self, event: QuoteEvent) -> None:
        # Once per client and tick: the direct write is the common case.
        transport = self.transport
        if transport is not None and self._written(transport, event.chunk, len(event.sse)):
            return
        if event.symbol in self.pending:
            self.conflated += 1
        self.pending[event.symbol] = event
        self.wake.set()

    def offer_status(self, notice: StatusNotice) -> None:
        transport = self.transport
        if transport is not None and self._written(transport, notice.chunk, len(notice.sse)):
            return
        # Only the latest state matters.
        self.status = notice
        self.wake.set()

    def reply(self, text: str) -> None:
        self.replies.append(text)
        self.wake.set()

    def heartbeat(self) -> None:
        transport = self.transport
        if transport is not None and self._written(transport, HEARTBEAT_CHUNK, len(HEARTBEAT)):
            return
        self.heartbeat_due = True
        self.wake.set()

    def close(self, reason: CloseReason) -> None:
        if self.closing is None:
            self.closing = reason
        self.transport = None
        self.wake.set()

    def _written(self, transport: "asyncio.WriteTransport", frame: bytes, size: int) -> bool:
        """Whether `frame` (a chunk of `size` body bytes) went straight to the connection;
        if not, the connection is taken back until the writer has sent what is buffered."""
        if not transport.is_closing() and transport.get_write_buffer_size() <= DIRECT_WRITE_BOUND:
            transport.write(frame)
            self.direct_bytes += size
            return True
        self.transport = None
        return False

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around one write to the client, so that a stalled one can be found."""
        self.writing_since = time.monotonic()
        try:
            yield
        finally:
            self.writing_since = None

    def drop(self) -> bool:
        """End a stalled client: its writer is cancelled in the write (True the first time)."""
        if self.closing == "too-slow" or self.writer is None:
            return False
        self.closing = "too-slow"
        self.writer.cancel()
        return True

    def take_quotes(self) -> list[QuoteEvent] | None:
        """The fan-out's common case, cheaply: the buffered quotes when nothing else is
        buffered (None otherwise: `take` then)."""
        if (
            self.status is not None
            or self.replies
            or self.heartbeat_due
            or self.closing is not None
        ):
            return None
        quotes = list(self.pending.values())
        self.pending.clear()
        self.wake.clear()
        return quotes

    def take(self) -> Batch:
        """Everything buffered, emptying the buffer."""
        batch = Batch(
            status=self.status,
            replies=list(self.replies),
            quotes=list(self.pending.values()),
            heartbeat=self.heartbeat_due,
            closing=self.closing,
        )
        self.status = None
        self.replies.clear()
        self.pending.clear()
        self.heartbeat_due = False
        if self.closing is None:
            self.wake.clear()
        return batch
