"""One client's side of the hub: a conflating buffer its writer drains.

The hub never waits for a client. It puts each tick's quote into the client's buffer, one
slot per symbol: a quote the client has not taken yet is replaced by the newer one
(conflation), so a client that cannot keep up gets the latest price of each symbol, and
what it holds is bounded by the number of its symbols whatever the tick rate. The events
themselves are encoded once per symbol and tick and shared by every client.

A writer marks each write (`writing`); the hub's housekeeping drops a client whose one
write has waited longer than `streams.write_stall_s` by cancelling that writer
(`app.streams.sse`, `app.streams.websocket`): no timer per write.
"""

import asyncio
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from app.streams.messages import CloseReason

# WebSocket replies (subscribed, error) waiting for the writer; a client sending commands
# faster than that is answered only for the latest ones.
_MAX_REPLIES = 8


@dataclass(frozen=True, slots=True)
class QuoteEvent:
    """One symbol's quote at one tick, encoded for both protocols."""

    symbol: str
    step: int
    sse: bytes
    text: str


@dataclass(frozen=True, slots=True)
class StatusNotice:
    """A status event, encoded for both protocols."""

    sse: bytes
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
    """One stream's buffer; `wake` is set while it holds something to send."""

    # Whose stream it is, for the per-principal cap.
    principal_key: str
    symbols: set[str] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    pending: dict[str, QuoteEvent] = field(default_factory=dict)
    status: StatusNotice | None = None
    replies: deque[str] = field(default_factory=lambda: deque(maxlen=_MAX_REPLIES))
    heartbeat_due: bool = False
    closing: CloseReason | None = None
    # Quotes replaced before the client took them, and quotes delivered.
    conflated: int = 0
    delivered: int = 0
    # The task writing to the client, and since when its current write waits (None: none).
    writer: "asyncio.Task[Any] | None" = None
    writing_since: float | None = None

    def offer(self, event: QuoteEvent) -> None:
        if event.symbol in self.pending:
            self.conflated += 1
        self.pending[event.symbol] = event
        self.wake.set()

    def offer_status(self, notice: StatusNotice) -> None:
        # Only the latest state matters.
        self.status = notice
        self.wake.set()

    def reply(self, text: str) -> None:
        self.replies.append(text)
        self.wake.set()

    def heartbeat(self) -> None:
        self.heartbeat_due = True
        self.wake.set()

    def close(self, reason: CloseReason) -> None:
        if self.closing is None:
            self.closing = reason
        self.wake.set()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around one write to the client, so that a stalled one can be found."""
        self.writing_since = time.monotonic()
        try:
            yield
        finally:
            self.writing_since = None

    def stalled(self, now: float, limit_s: float) -> bool:
        since = self.writing_since
        return since is not None and now - since > limit_s

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
        self.delivered += len(quotes)
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
        self.delivered += len(batch.quotes)
        if self.closing is None:
            self.wake.clear()
        return batch
