"""Server-Sent Events as they go on the wire, encoded once for every client.

A quote or status event is the same bytes for every client that gets it, and so is its
HTTP/1.1 chunk (size line, event, CRLF): the hub writes that chunk to the clients'
connections itself (`app.streams.connection`), so nothing is encoded or framed per client.
"""

# The comment line that keeps an idle stream open through proxies.
HEARTBEAT = b": heartbeat\n\n"


def chunk(body: bytes) -> bytes:
    """`body` as one chunk of a chunked HTTP/1.1 response body."""
    return b"%x\r\n%s\r\n" % (len(body), body)


HEARTBEAT_CHUNK = chunk(HEARTBEAT)
