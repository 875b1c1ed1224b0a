"""A fast stand-in for market-data: canned quotes, so the benchmark measures the gateway."""

import orjson
from starlette.types import Receive, Scope, Send

QUOTES = orjson.dumps(
    {
        "quotes": [
            {
                "symbol": "AAPL",
                "price": 189.84,
                "change": 1.27,
                "change_pct": 0.67,
                "bid": 189.83,
                "ask": 189.85,
                "open": 188.9,
                "high": 190.32,
                "low": 188.41,
                "prev_close": 188.57,
                "volume": 48213377,
                "timestamp": "2026-11-26T15:30:00Z",
            }
        ]
    }
)
HEALTH = b'{"status":"ok","service":"market-data","instance":"bench"}'


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = HEALTH if scope["path"] == "/health" else QUOTES
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
