"""`Idempotent-Replayed`: how every frontend tells a client its order had been placed before.

`app.frontends.order_entry.PLACED_ORDER_RESPONSE` documents the header; this sets it.
"""

from fastapi import Response

REPLAYED_HEADER = "Idempotent-Replayed"


def mark_replayed(response: Response, *, replayed: bool) -> None:
    """Say on `response` that the order is the one an earlier request with the same
    Idempotency-Key placed, when it is."""
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
