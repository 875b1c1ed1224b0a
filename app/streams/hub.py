"""The process's one view of the market-data quote stream, shared by every client.

One WebSocket to one market-data instance (through `UpstreamCaller.websocket`, the pooled
session) carries one subscription per symbol that some client of this process follows:
subscribed on the first client's interest, unsubscribed when the last one leaves. Each
tick's quotes are encoded once (SSE event and its HTTP/1.1 chunk, WebSocket text) and offered
to each follower (`app.streams.subscriber`): written straight to an SSE client's connection
when it keeps up, else into its conflating buffer. The hub never waits for a client.

When the upstream connection fails or closes, every client gets a `reconnecting` status
event, the hub reconnects with jittered exponential backoff (`streams.reconnect_first_s` up
to `streams.reconnect_max_s`, to whichever instance the balancer picks), subscribes again
and tells the clients `live`.

A housekeeping task, on a timer rather than per event, sends the heartbeats, closes the
streams whose token expired, drops the clients whose write stalled, confirms the streams'
credentials (`app.streams.credentials`) and ends every stream when the process starts
draining. The
caps: `streams.max_per_principal` open streams per principal (429) and
`streams.max_per_process` per process (503).
"""

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable

import aiohttp
import orjson

from app.errors import GatewayError, ServiceUnavailable, TooManyRequests, Unauthorized
from app.observability.metrics import (
    stream_clients,
    stream_conflated_quotes,
    stream_drops,
    stream_upstream_connects,
)
from app.policy.chain import PolicyChain
from app.settings import StreamSettings
from app.shared.tasks import stop_tasks
from app.streams.credentials import StreamCredential
from app.streams.frames import chunk
from app.streams.messages import CloseReason, StatusEvent, StreamQuote, UpstreamState
from app.streams.subscriber import QuoteEvent, StatusNotice, Subscriber
from app.upstreams.caller import UpstreamCaller

logger = logging.getLogger("gateway.streams")

SERVICE = "market-data"
UPSTREAM_PATH = "/stream/quotes"
_UPSTREAM_HEARTBEAT_S = 10.0


def status_notice(
    status: UpstreamState | str, detail: str, reason: CloseReason | None = None
) -> StatusNotice:
    event = StatusEvent.model_validate({"status": status, "detail": detail, "reason": reason})
    data = event.model_dump_json(exclude_none=True)
    sse = b"event: status\ndata: " + data.encode() + b"\n\n"
    return StatusNotice(sse=sse, chunk=chunk(sse), text='{"type":"status",' + data[1:])


def quote_event(upstream: dict[str, object], step: int) -> QuoteEvent:
    symbol = str(upstream["symbol"])
    data = StreamQuote.fields_of(upstream)
    sse = b"id: %d\nevent: quote\ndata: %s\n\n" % (step, data)
    return QuoteEvent(
        symbol=symbol,
        step=step,
        sse=sse,
        chunk=chunk(sse),
        text=f'{{"type":"quote","id":"{step}","quote":{data.decode()}}}',
    )


class QuoteHub:
    def __init__(
        self,
        *,
        caller: UpstreamCaller,
        chain: PolicyChain,
        settings: StreamSettings,
        draining: Callable[[], bool],
    ) -> None:
        self._caller = caller
        self._chain = chain
        self.settings = settings
        self._draining = draining
        self._followers: dict[str, set[Subscriber]] = {}
        self._latest: dict[str, QuoteEvent] = {}
        self._streams: dict[Subscriber, StreamCredential] = {}
        self._per_principal: Counter[str] = Counter()
        self._upstream: aiohttp.ClientWebSocketResponse | None = None
        # None until the first connection: a first connect is no news to the clients.
        self._state: UpstreamState | None = None
        self._state_notice = status_notice("reconnecting", "Connecting to the quote stream.")
        self._runner: asyncio.Task[None] | None = None
        self._housekeeper: asyncio.Task[None] | None = None
        self._closed = False
        # Counters for the operators (and the benchmark).
        self.dropped = 0
        self.upstream_connects = 0

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def upstream_symbols(self) -> frozenset[str]:
        return frozenset(self._followers)

    def open(self, credential: StreamCredential, *, principal_key: str) -> Subscriber:
        """A new stream's buffer, within the caps; 429 or 503 beyond them."""
        if self._closed or self._draining():
            raise ServiceUnavailable(
                "This gateway process is shutting down; reconnect.", headers={"Retry-After": "1"}
            )
        if len(self._streams) >= self.settings.max_per_process:
            raise ServiceUnavailable(
                "This gateway process holds as many streams as it may; try again shortly.",
                headers={"Retry-After": "5"},
            )
        if self._per_principal[principal_key] >= self.settings.max_per_principal:
            raise TooManyRequests(
                f"At most {self.settings.max_per_principal} open streams per caller; "
                "close one first.",
                headers={"Retry-After": "5"},
            )
        subscriber = Subscriber(principal_key=principal_key)
        self._streams[subscriber] = credential
        self._per_principal[principal_key] += 1
        stream_clients.inc()
        if self._housekeeper is None:
            self._housekeeper = asyncio.create_task(self._housekeep(), name="stream-housekeeping")
        if self._state == "reconnecting":
            subscriber.offer_status(self._state_notice)
        return subscriber

    async def subscribe(
        self, subscriber: Subscriber, symbols: Iterable[str], *, since_step: int | None = None
    ) -> None:
        """Follow `symbols`; the latest quote of each (newer than `since_step`, when given)
        is offered at once."""
        fresh = []
        for symbol in symbols:
            if symbol in subscriber.symbols:
                continue
            subscriber.symbols.add(symbol)
            followers = self._followers.get(symbol)
            if followers is None:
                followers = self._followers[symbol] = set()
                fresh.append(symbol)
            followers.add(subscriber)
            latest = self._latest.get(symbol)
            if latest is not None and (since_step is None or latest.step > since_step):
                subscriber.offer(latest)
        if self._runner is None or self._runner.done():
            # (Again, should the last one have died of something unforeseen.)
            self._runner = asyncio.create_task(self._run_upstream(), name="quote-upstream")
        elif fresh:
            await self._tell_upstream("subscribe", fresh)

    async def unsubscribe(self, subscriber: Subscriber, symbols: Iterable[str]) -> None:
        gone = []
        for symbol in symbols:
            if symbol not in subscriber.symbols:
                continue
            subscriber.symbols.discard(symbol)
            subscriber.pending.pop(symbol, None)
            followers = self._followers.get(symbol)
            if followers is None:
                continue
            followers.discard(subscriber)
            if not followers:
                del self._followers[symbol]
                self._latest.pop(symbol, None)
                gone.append(symbol)
        if gone:
            await self._tell_upstream("unsubscribe", gone)

    async def leave(self, subscriber: Subscriber) -> None:
        """The stream ended: its subscriptions and its place in the caps go."""
        if self._streams.pop(subscriber, None) is None:
            return
        stream_clients.dec()
        if subscriber.conflated:
            stream_conflated_quotes.inc(subscriber.conflated)
        self._per_principal[subscriber.principal_key] -= 1
        if self._per_principal[subscriber.principal_key] <= 0:
            del self._per_principal[subscriber.principal_key]
        await self.unsubscribe(subscriber, list(subscriber.symbols))

    def record_drop(self) -> None:
        self.dropped += 1
        stream_drops.inc()

    async def close(self) -> None:
        """End every stream and the upstream connection (the lifespan's shutdown)."""
        self._closed = True
        for subscriber in self._streams:
            subscriber.close("shutdown")
        await stop_tasks(self._runner, self._housekeeper)
        if self._upstream is not None:
            await self._upstream.close()

    async def _tell_upstream(self, op: str, symbols: list[str]) -> None:
        upstream = self._upstream
        if upstream is None or upstream.closed:
            # Sent with every other symbol when the connection is back.
            return
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            await upstream.send_str(orjson.dumps({"op": op, "symbols": symbols}).decode())

    async def _run_upstream(self) -> None:
        failures = 0
        while True:
            try:
                _, upstream = await self._caller.websocket(
                    SERVICE, UPSTREAM_PATH, heartbeat_s=_UPSTREAM_HEARTBEAT_S
                )
            except GatewayError as exc:
                stream_upstream_connects.labels("failed").inc()
                failures += 1
                self._set_state("reconnecting", f"The quote stream is unavailable: {exc.detail}")
                await asyncio.sleep(self._backoff_s(failures))
                continue
            self._upstream = upstream
            self.upstream_connects += 1
            stream_upstream_connects.labels("opened").inc()
            try:
                if self._followers:
                    await upstream.send_str(
                        orjson.dumps({"op": "subscribe", "symbols": list(self._followers)}).decode()
                    )
                self._set_state("live", "Quotes are live.")
                failures = 0
                async for message in upstream:
                    if message.type is aiohttp.WSMsgType.TEXT:
                        self._on_message(message.data)
                    elif message.type is aiohttp.WSMsgType.ERROR:
                        break
            except (aiohttp.ClientError, ConnectionError, ValueError) as exc:
                logger.warning("quote stream: upstream connection failed: %r", exc)
            finally:
                self._upstream = None
                await upstream.close()
            failures += 1
            self._set_state("reconnecting", "The quote stream was interrupted; reconnecting.")
            await asyncio.sleep(self._backoff_s(failures))

    def _backoff_s(self, failures: int) -> float:
        ceiling = min(
            self.settings.reconnect_max_s, self.settings.reconnect_first_s * 2 ** (failures - 1)
        )
        return ceiling * random.uniform(0.5, 1.0)

    def _on_message(self, data: str) -> None:
        try:
            message = orjson.loads(data)
            if not isinstance(message, dict) or message.get("type") != "quotes":
                return
            step = int(message["step"])
            events = [quote_event(upstream_quote, step) for upstream_quote in message["quotes"]]
        except (KeyError, TypeError, ValueError) as exc:
            # One message the gateway cannot read is skipped; the stream goes on.
            logger.warning("quote stream: unreadable upstream message skipped: %r", exc)
            return
        for event in events:
            followers = self._followers.get(event.symbol)
            if followers is None:
                # Unsubscribed while this tick was on its way.
                continue
            self._latest[event.symbol] = event
            for subscriber in followers:
                subscriber.offer(event)

    def _set_state(self, state: UpstreamState, detail: str) -> None:
        if state == self._state:
            return
        first = self._state is None
        self._state = state
        self._state_notice = status_notice(state, detail)
        if first and state == "live":
            return
        if state != "live":
            logger.warning("quote stream: %s", detail)
        for subscriber in self._streams:
            subscriber.offer_status(self._state_notice)

    async def _housekeep(self) -> None:
        settings = self.settings
        interval = min(settings.heartbeat_s, settings.credential_check_s, 1.0)
        now = time.monotonic()
        next_heartbeat = now + settings.heartbeat_s
        next_check = now + settings.credential_check_s
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            if self._draining():
                for subscriber in self._streams:
                    subscriber.close("draining")
            if now >= next_heartbeat:
                next_heartbeat = now + settings.heartbeat_s
                for subscriber in self._streams:
                    subscriber.heartbeat()
            self._sweep(now, time.time())
            if now >= next_check:
                await self._confirm_credentials()
                next_check = time.monotonic() + settings.credential_check_s

    def _sweep(self, now: float, wall: float) -> None:
        """Close the streams whose token expired, drop the clients whose write stalled: once
        a housekeeping round for every stream, so written out rather than called per
        stream."""
        stall_s = self.settings.write_stall_s
        for subscriber, credential in self._streams.items():
            expires_at = credential.expires_at
            if expires_at is not None and wall >= expires_at:
                subscriber.close("credential-expired")
            since = subscriber.writing_since
            if since is not None and now - since > stall_s and subscriber.drop():
                self.record_drop()
                logger.info("stream client dropped: a write waited over %s s", stall_s)

    async def _confirm_credentials(self) -> None:
        groups: dict[tuple[str, str, str], list[Subscriber]] = {}
        credentials: dict[tuple[str, str, str], StreamCredential] = {}
        for subscriber, credential in self._streams.items():
            if subscriber.closing is None:
                groups.setdefault(credential.key, []).append(subscriber)
                credentials.setdefault(credential.key, credential)
        within_s = self.settings.credential_check_s
        for key, subscribers in groups.items():
            try:
                async with asyncio.timeout(within_s):
                    await self._chain.confirmed_principal(
                        credentials[key].context(within_s=within_s)
                    )
            except Unauthorized:
                for subscriber in subscribers:
                    subscriber.close("credential-revoked")
            except (GatewayError, TimeoutError) as exc:
                # Cannot tell now (Redis, the provider): the stream stays until the next check.
                logger.warning("stream credential check failed: %r", exc)
