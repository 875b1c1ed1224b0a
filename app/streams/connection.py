"""The connection of an event stream, for the hub to write each event to directly.

Sent through ASGI, every event to every client would wake that client's task and run the
`send` chain (route, exception and edge layers, the server's `send`): about 50 us of CPU per
event, so a tick for 10,000 clients would take half a second. Under uvicorn's httptools
protocol (the gateway's server, `app.serve`) the response task is the request cycle's
`run_asgi`, whose cycle holds the connection's transport and frames the body in chunks; the
hub then writes each event's chunk, encoded once, to the transport itself.

What it skips is safe for an event stream: the gateway's layers pass its body through
untouched (an event stream is never compressed; the edge only counts its bytes for the
access log, and the stream adds what the hub wrote directly when it ends:
`Subscriber.direct_bytes`). The status line, the headers,
the first and last chunks and whatever a backlogged client is sent still go through ASGI.
Under any other server (another protocol, an in-process test client) there is no such
transport, and every write goes through ASGI as before.
"""

import asyncio
from typing import cast

_HTTPTOOLS_CYCLE = "uvicorn.protocols.http.httptools_impl"


def chunked_transport() -> asyncio.WriteTransport | None:
    """The transport of the response the current task serves, once its head is sent, when
    the server is uvicorn's httptools protocol and frames the body in chunks; else None."""
    task = asyncio.current_task()
    frame = getattr(task.get_coro(), "cr_frame", None) if task is not None else None
    cycle = frame.f_locals.get("self") if frame is not None else None
    if (
        type(cycle).__module__ != _HTTPTOOLS_CYCLE
        or getattr(cycle, "chunked_encoding", None) is not True
        or not getattr(cycle, "response_started", False)
        or getattr(cycle, "response_complete", True)
    ):
        return None
    transport = getattr(cycle, "transport", None)
    # uvloop's transports are not `asyncio.Transport` subclasses: what the hub calls.
    if not all(
        callable(getattr(transport, name, None))
        for name in ("write", "is_closing", "get_write_buffer_size")
    ):
        return None
    return cast(asyncio.WriteTransport, transport)
