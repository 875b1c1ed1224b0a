"""Refuse request bodies above the configured size, declared or streamed."""

from starlette.types import Message, Receive

from app.errors import GatewayError


class PayloadTooLarge(GatewayError):
    status, slug, title = 413, "payload-too-large", "Request body too large"


def _detail(limit: int) -> str:
    return f"The request body exceeds {limit} bytes."


def check_declared_length(value: bytes, *, limit: int) -> None:
    """Raise PayloadTooLarge when a request's Content-Length is over `limit` or not a number."""
    if not value.isdigit() or int(value) > limit:
        # Nobody will read the body the client is still sending: no keep-alive after it.
        raise PayloadTooLarge(_detail(limit), headers={"Connection": "close"})


def limited_receive(receive: Receive, *, limit: int) -> Receive:
    """`receive` that raises PayloadTooLarge once the body it has delivered passes `limit`."""
    received = 0

    async def receive_limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                # Raised inside the handler's read, so the error handler answers it.
                raise PayloadTooLarge(_detail(limit))
        return message

    return receive_limited
