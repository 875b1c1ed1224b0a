"""The AsyncAPI 3.0 document of the quote streams, served at `GET /asyncapi/quotes.json`.

Message payloads are the JSON Schemas of the models in `app.streams.messages`, so the
document and what the gateway sends cannot drift apart.
"""

from typing import Any

from pydantic import BaseModel

from app.streams.messages import (
    CLOSE_CODES,
    MAX_STREAM_SYMBOLS,
    ErrorMessage,
    QuoteMessage,
    StatusEvent,
    StatusMessage,
    StreamQuote,
    SubscribedMessage,
    SubscribeMessage,
    UnsubscribeMessage,
)

ASYNCAPI_PATH = "/asyncapi/quotes.json"

_SECURITY = [
    {"$ref": "#/components/securitySchemes/SessionCookie"},
    {"$ref": "#/components/securitySchemes/BearerToken"},
]


def _message(model: type[BaseModel], summary: str, *, content_type: str) -> dict[str, Any]:
    payload = model.model_json_schema(ref_template="#/components/schemas/{model}")
    _SCHEMAS.update(payload.pop("$defs", {}))
    return {
        "name": model.__name__,
        "summary": summary,
        "contentType": content_type,
        "payload": payload,
    }


# Models nested in a payload, hoisted to `components.schemas`.
_SCHEMAS: dict[str, Any] = {}


def quotes_document(*, cookie_name: str) -> dict[str, Any]:
    """The document; `cookie_name` is the deployment's session cookie."""
    closes = ", ".join(f"{code} {reason}" for reason, code in CLOSE_CODES.items())
    sse_messages = {
        "quote": _message(
            StreamQuote,
            "SSE `event: quote`, `id:` the tick (epoch seconds), `data:` the quote",
            content_type="text/event-stream",
        ),
        "status": _message(
            StatusEvent,
            "SSE `event: status`: upstream `live` or `reconnecting`, or `closing` with a reason",
            content_type="text/event-stream",
        ),
    }
    ws_out = {
        "quote": _message(QuoteMessage, "A quote", content_type="application/json"),
        "status": _message(
            StatusMessage, "Upstream state or closing", content_type="application/json"
        ),
        "subscribed": _message(
            SubscribedMessage, "The symbols followed now", content_type="application/json"
        ),
        "error": _message(ErrorMessage, "A message not taken", content_type="application/json"),
    }
    ws_in = {
        "subscribe": _message(SubscribeMessage, "Follow symbols", content_type="application/json"),
        "unsubscribe": _message(
            UnsubscribeMessage, "Stop following symbols", content_type="application/json"
        ),
    }
    sse_parameters = {
        "symbols": {
            "description": f"Comma-separated tickers, 1 to {MAX_STREAM_SYMBOLS} distinct",
            "location": "$message.payload#/symbol",
        }
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "stock-bot live quotes",
            "version": "1.0.0",
            "description": (
                "Quotes as they move, translated from the market-data service's stream. "
                "Authentication at connect (session cookie or bearer token, a signed-in user "
                "with `read`); a stream closes when its credential expires or is revoked. "
                "Connects count against the caller's rate limits; open streams are capped "
                "per caller (429) and per process (503). A client that stops reading gets "
                "the latest quote per symbol and is dropped past a bound. SSE: a `retry:` "
                "field first, a heartbeat comment every 15 s, `Last-Event-ID` resumes with "
                f"the latest quote of each symbol newer than it. WebSocket close codes: {closes}."
            ),
        },
        "servers": {
            "gateway": {"host": "127.0.0.1:8000", "protocol": "http", "description": "make run"}
        },
        "channels": {
            "webSse": {
                "address": "/web/v1/stream/quotes?symbols={symbols}",
                "title": "Web SSE",
                "parameters": sse_parameters,
                "messages": sse_messages,
            },
            "mobileSse": {
                "address": "/mobile/v1/stream/quotes?symbols={symbols}",
                "title": "Mobile SSE",
                "parameters": sse_parameters,
                "messages": sse_messages,
            },
            "webSocket": {
                "address": "/web/v1/ws/quotes",
                "title": "Web WebSocket",
                "messages": {**ws_out, **ws_in},
            },
        },
        "operations": {
            "receiveWebSse": _operation("receive", "webSse", sse_messages),
            "receiveMobileSse": _operation("receive", "mobileSse", sse_messages),
            "receiveSocket": _operation("receive", "webSocket", ws_out),
            "sendSocket": _operation("send", "webSocket", ws_in),
        },
        "components": {
            "schemas": dict(_SCHEMAS),
            "securitySchemes": {
                "SessionCookie": {
                    "type": "httpApiKey",
                    "in": "cookie",
                    "name": cookie_name,
                    "description": "The web login's session",
                },
                "BearerToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    }


def _operation(action: str, channel: str, messages: dict[str, Any]) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "security": _SECURITY,
        "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in messages],
    }
