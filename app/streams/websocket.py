"""A stream as a WebSocket session: typed subscribe/unsubscribe in, quotes and status out.

Two coroutines per socket: the reader takes the client's messages (`ClientMessage`) and
changes the subscriptions; the writer is the only one that sends, draining the client's
buffer like the SSE response does (same conflation, same stall bound). A message the
gateway cannot take is answered with an `error` message; the socket stays open. The socket
closes with the code `CLOSE_CODES` names for why the gateway ends it (4401 credential
expired or revoked, 4408 too slow, 1012 draining, 1001 shutdown).
"""

import asyncio
import contextlib

from pydantic import TypeAdapter, ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from app.streams.hub import QuoteHub
from app.streams.messages import (
    CLOSE_CODES,
    MAX_STREAM_SYMBOLS,
    ClientMessage,
    ErrorMessage,
    SubscribedMessage,
    SubscribeMessage,
)
from app.streams.subscriber import Subscriber

_CLIENT_MESSAGE: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
# A client message longer than this is refused unread.
_MAX_MESSAGE_CHARS = 4096


async def serve_socket(websocket: WebSocket, hub: QuoteHub, subscriber: Subscriber) -> None:
    """Run an accepted socket until the client leaves or the hub closes the stream."""
    subscriber.writer = asyncio.current_task()
    reader = asyncio.create_task(_read(websocket, hub, subscriber))
    code = CLOSE_CODES["disconnected"]
    try:
        while True:
            await subscriber.wake.wait()
            batch = subscriber.take()
            if batch.closing == "disconnected":
                return
            texts = [*batch.replies]
            if batch.status is not None:
                texts.append(batch.status.text)
            texts.extend(event.text for event in batch.quotes)
            try:
                for text in texts:
                    with subscriber.writing():
                        await websocket.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):
                return
            if batch.closing is not None:
                code = CLOSE_CODES[batch.closing]
                return
    except asyncio.CancelledError:
        if subscriber.closing != "too-slow":
            raise
        # Dropped by the hub while a write stalled.
        asyncio.current_task().uncancel()  # type: ignore[union-attr]
        code = CLOSE_CODES["too-slow"]
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await hub.leave(subscriber)
        if websocket.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await websocket.close(code=code)


async def _read(websocket: WebSocket, hub: QuoteHub, subscriber: Subscriber) -> None:
    try:
        while True:
            text = await websocket.receive_text()
            subscriber.reply(await _apply(text, hub, subscriber))
    except (WebSocketDisconnect, RuntimeError, KeyError):
        subscriber.close("disconnected")


async def _apply(text: str, hub: QuoteHub, subscriber: Subscriber) -> str:
    """The reply to one client message."""
    if len(text) > _MAX_MESSAGE_CHARS:
        return _error(f"A message may hold at most {_MAX_MESSAGE_CHARS} characters.")
    try:
        message = _CLIENT_MESSAGE.validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'message'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        return _error(f"The message was not a subscribe or unsubscribe message ({problems}).")
    symbols = list(dict.fromkeys(message.symbols))
    if isinstance(message, SubscribeMessage):
        if len(subscriber.symbols | set(symbols)) > MAX_STREAM_SYMBOLS:
            return _error(f"A socket may follow at most {MAX_STREAM_SYMBOLS} symbols.")
        await hub.subscribe(subscriber, symbols)
    else:
        await hub.unsubscribe(subscriber, symbols)
    return SubscribedMessage(symbols=sorted(subscriber.symbols)).model_dump_json()


def _error(detail: str) -> str:
    return ErrorMessage(detail=detail).model_dump_json()
