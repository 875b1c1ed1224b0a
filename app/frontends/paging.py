"""Cursor pagination, one way for every frontend, and the cap on a view's list sections.

A cursor is opaque to clients: the unpadded base64url form of the key of a page's last item
(a symbol, an order id). The gateway takes back only cursors it could have made and refuses
anything else with a 422 naming `query.cursor`, before any upstream is called.

A view (a dashboard, a home screen) shows at most `SECTION_LIMIT` items of each list
section, with the section's total and a link to the paginated list where the rest is.
"""

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Annotated, TypeVar
from urllib.parse import urlencode

from fastapi import Query

from app.errors import InvalidRequest

T = TypeVar("T")

# Items of one list section a view shows; the rest is a link away. A constant, not a
# setting: it is part of the views' documented contract.
SECTION_LIMIT = 20
# The most items one page of a paginated list holds.
MAX_PAGE_LIMIT = 100

CURSOR_FIELD = "query.cursor"

Cursor = Annotated[
    str | None,
    Query(
        # Room for the longest key (64 characters) in base64.
        max_length=128,
        description="`next_cursor` of the previous page; omit for the first page",
    ),
]


def encode_cursor(key: str) -> str:
    """An opaque cursor naming the last item of a page by its key."""
    return base64.urlsafe_b64encode(key.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str, *, is_key: Callable[[str], bool]) -> str:
    """The key a cursor names; anything `encode_cursor` did not make from a key is refused."""
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        key = ""
    if not is_key(key) or encode_cursor(key) != cursor:
        raise unknown_cursor()
    return key


def unknown_cursor() -> InvalidRequest:
    """The 422 for a cursor the gateway did not hand out (or that no longer names anything)."""
    message = "not a cursor from a previous page; omit it to start from the first page"
    return InvalidRequest(
        f"{CURSOR_FIELD}: {message}",
        extra={"errors": [{"field": CURSOR_FIELD, "message": message}]},
    )


def page_after(
    items: Sequence[T], *, key: Callable[[T], str], after: str | None, limit: int
) -> tuple[list[T], str | None]:
    """The `limit` items (sorted by `key`) after key `after`, and the next page's cursor."""
    remaining = [item for item in items if after is None or key(item) > after]
    page = remaining[:limit]
    more = len(remaining) > limit
    return page, encode_cursor(key(page[-1])) if more else None


def link(path: str, **params: str | None) -> str:
    """A link to a list, with the parameters that are set."""
    query = urlencode({name: value for name, value in params.items() if value is not None})
    return f"{path}?{query}" if query else path
