"""Log set-up for the gateway's own loggers: one line per record on stderr.

`json` (the default, for log collectors): one JSON object per line with time, level, logger,
event, the request id and trace id of the request the record belongs to, and the record's
fields (`extra={"fields": {...}}`). `console` (`GATEWAY_LOG_FORMAT=console`, for a developer's
terminal): the same as `time LEVEL logger event key=value ...`.

Secrets never reach the lines: the gateway logs no header values, query strings or bodies,
and as a second line of defence every message and traceback is scrubbed of what looks like a
credential (`Authorization`/`Cookie` values, bearer tokens, JWTs, `password=`, `api_key=`,
`token=`, `secret=` values) before it is written.
"""

import asyncio
import contextlib
import logging
import re
import sys
import time
from typing import Literal, TextIO

import orjson

from app.observability.request_id import current_request_id
from app.observability.tracing import current_trace_id

LogFormat = Literal["json", "console"]
_HANDLER_NAME = "gateway-stderr"
_REDACTED = "[redacted]"

_SECRETS = re.compile(
    r"""(?ix)
    (?P<pair>
        (?:authorization|proxy-authorization|cookie|set-cookie|x-api-key|api[_-]?key
          |password|passwd|secret|client[_-]secret|access[_-]token|refresh[_-]token
          |id[_-]token|token|session)
        ["']?\s*[:=]\s*["']?
    )
    (?P<value>(?:bearer\s+|basic\s+)?[^\s"',;&]+)
    | (?P<bearer>\bbearer\s+)(?P<token>[A-Za-z0-9\-._~+/]+=*)
    | (?P<jwt>\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)
    """
)


def redact(text: str) -> str:
    """`text` with every credential-looking value replaced."""
    return _SECRETS.sub(_redacted, text)


def _redacted(match: re.Match[str]) -> str:
    if match.group("pair") is not None:
        return match.group("pair") + _REDACTED
    if match.group("bearer") is not None:
        return match.group("bearer") + _REDACTED
    return _REDACTED


_second = -1
_second_text = ""


def _timestamp(created: float) -> str:
    """ISO 8601 UTC with milliseconds; the part up to the second formatted once a second."""
    global _second, _second_text
    seconds = int(created)
    if seconds != _second:
        _second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second = seconds
    return f"{_second_text}.{int((created - seconds) * 1000):03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, object]:
    """The record's event, ids and fields, secrets scrubbed from what was free text."""
    fields: dict[str, object] | None = getattr(record, "fields", None)
    if record.name == "gateway.access" and fields is not None:
        # Built by the edge from known fields only: nothing to scrub, nothing to add.
        return {"event": record.msg, **fields}
    document: dict[str, object] = {"event": redact(record.getMessage())}
    request_id = current_request_id()
    if request_id != "-":
        document["request_id"] = request_id
    trace_id = current_trace_id()
    if trace_id is not None:
        document["trace_id"] = trace_id
    if fields:
        document.update(fields)
    if record.exc_info:
        document["exception"] = redact(logging.Formatter().formatException(record.exc_info))
    return document


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        document.update(_fields(record))
        return orjson.dumps(document, default=str).decode()


def _console_value(value: object) -> str:
    return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        event = fields.pop("event")
        pairs = " ".join(
            f"{name}={_console_value(value)}"
            for name, value in fields.items()
            if value is not None and value != []
        )
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        return f"{clock} {record.levelname:<7} {record.name} {event} {pairs}".rstrip()


# The gateway's own stderr handler while it writes JSON: access lines may go to its stream
# directly (`write_access_line`).
_json_handler: logging.StreamHandler[TextIO] | None = None
_gateway_logger = logging.getLogger("gateway")
_access_logger = logging.getLogger("gateway.access")


def write_access_line(fields: dict[str, object]) -> bool:
    """Write an access record as the JSON formatter would, straight to the gateway's stream,
    when that handler is the only one listening; False otherwise (the caller logs it).

    The standard `logging` path (a record object, the caller's frame looked up, a formatter)
    costs several times the JSON encoding itself, on every request: the one line every
    request writes skips it, the rarer events keep it.
    """
    handler = _json_handler
    handlers = _gateway_logger.handlers
    if handler is None or len(handlers) != 1 or handlers[0] is not handler:
        return False
    if _access_logger.handlers or _access_logger.filters or _gateway_logger.filters:
        return False
    line = orjson.dumps(
        {
            "ts": _timestamp(time.time()),
            "level": "info",
            "logger": "gateway.access",
            "event": "access",
            **fields,
        },
        default=str,
        option=orjson.OPT_APPEND_NEWLINE,
    )
    stream = handler.stream
    handler.acquire()
    try:
        raw = getattr(stream, "buffer", None)
        if raw is None or not _flush_soon(stream):
            stream.write(line.decode())
            stream.flush()
        else:
            # Into the stream's byte buffer, behind whatever the text layer flushed before;
            # written out with the lines of the next few milliseconds (`_flush_soon`).
            raw.write(line)
    except (OSError, ValueError):
        handler.handleError(logging.makeLogRecord({"msg": "access", "name": "gateway.access"}))
    finally:
        handler.release()
    return True


# Access lines reach the stream's buffer at once and the file together, at most this long
# after: one write per batch instead of one per request. A crash loses at most this much.
ACCESS_FLUSH_S = 0.05
_flush_pending: set[int] = set()


def _flush_soon(stream: TextIO) -> bool:
    """Arrange for `stream` to be flushed within `ACCESS_FLUSH_S` on the running event loop;
    False when there is none (then the caller flushes at once)."""
    if id(stream) in _flush_pending:
        return True
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    _flush_pending.add(id(stream))
    loop.call_later(ACCESS_FLUSH_S, _flush, stream)
    return True


def _flush(stream: TextIO) -> None:
    _flush_pending.discard(id(stream))
    # A closed or broken stream: nothing to be done about it here.
    with contextlib.suppress(OSError, ValueError):
        stream.flush()


def configure_logging(level: str, log_format: LogFormat = "json") -> None:
    """Idempotent: calling it again (a second app in one process) adds no second handler;
    the format of the last call applies."""
    logger = logging.getLogger("gateway")
    logger.setLevel(level.upper())
    formatter = ConsoleFormatter() if log_format == "console" else JsonFormatter()
    global _json_handler
    for existing in logger.handlers:
        if existing.get_name() == _HANDLER_NAME and isinstance(existing, logging.StreamHandler):
            existing.setFormatter(formatter)
            _json_handler = existing if log_format == "json" else None
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.propagate = False
    _json_handler = handler if log_format == "json" else None
