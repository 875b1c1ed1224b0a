"""One client's side of the hub: a conflating buffer its writer drains.

The hub never waits for a client. It puts each tick's quote into the client's buffer, one
slot per symbol: a quote the client has not taken yet is replaced by the newer one
(conflation), so a client that cannot keep up gets the latest price of each symbol, and
what it holds is bounded by the number of its symbols whatever the tick rate. The events
themselves are encoded once per symbol and tick and shared by every client.

How long a client may stall (one write that does not complete) before it is dropped is the
writer's bound (`streams.write_stall_s`, see `app.streams.sse` and `app.streams.websocket`).
"""

import asyncio
from collections import deque
from dataclasses import dataclass, field

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
