"""Content negotiation on list endpoints: JSON by default, CSV for `Accept: text/csv`, and a
406 problem for an `Accept` that neither satisfies.

Two parts: plain functions any entry can call without FastAPI (`negotiate`, `encode_csv`,
`csv_headers`; a pass-through handler negotiates on the request's `Accept` and encodes the
upstream's JSON rows), and the FastAPI dependency the BFF list routes take (`ListFormatDep`),
which negotiates before the handler calls anything upstream.

The CSV (RFC 4180): UTF-8, CRLF line ends, a header row naming the columns (also for an
empty list), one row per list item. A null is an empty cell, a flag `true`/`false`, a
number as in the JSON answer, a nested list or object its JSON text. A text cell that a
spreadsheet would run as a formula (it begins with `=`, `+`, `-`, `@`, a tab or a carriage
return) is written with a leading `'` (OWASP, CSV injection); numbers are never touched.
A paged list's CSV holds its page; the next page is in `Link: <...>; rel="next"`, the
number of items on every page in `X-Total-Count`.
"""

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request, Response
from pydantic import BaseModel
from starlette.datastructures import URL

from app.errors import GatewayError


class ListFormat(StrEnum):
    json = "application/json"
    csv = "text/csv"


# What a list endpoint can produce, in the order a tie is settled.
LIST_FORMATS = (ListFormat.json, ListFormat.csv)
CSV_MEDIA_TYPE = "text/csv; charset=utf-8; header=present"
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# What most clients send, settled without parsing the header.
_JSON_AT_ONCE = frozenset({"", "*/*", "application/json"})


class NotAcceptable(GatewayError):
    status, slug, title = 406, "not-acceptable", "Not acceptable"


def _media_ranges(accept: str) -> list[tuple[str, str, float]]:
    """Each media range of an `Accept` value with its weight (RFC 9110 §12.5.1)."""
    ranges = []
    for part in accept.split(","):
        media, *parameters = (piece.strip() for piece in part.split(";"))
        if "/" not in media:
            continue
        kind, _, subtype = media.lower().partition("/")
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    weight = 0.0
        ranges.append((kind.strip(), subtype.strip(), weight))
    return ranges


def _weight(offered: str, ranges: list[tuple[str, str, float]]) -> float:
    """The weight of the most specific range that matches `offered` (0 when none does)."""
    kind, _, subtype = offered.partition("/")
    best, specificity = 0.0, -1
    for range_kind, range_subtype, weight in ranges:
        if range_kind == kind and range_subtype == subtype:
            rank = 2
        elif range_kind == kind and range_subtype == "*":
            rank = 1
        elif range_kind == "*" and range_subtype == "*":
            rank = 0
        else:
            continue
        if rank > specificity:
            best, specificity = weight, rank
    return best


def negotiate(accept: str | None, offered: Sequence[ListFormat] = LIST_FORMATS) -> ListFormat:
    """The format to answer in: the offered one the client weighs highest, the first offered
    on a tie or without `Accept`; `NotAcceptable` when the client accepts none of them."""
    if accept is None or (accept in _JSON_AT_ONCE and offered[0] is ListFormat.json):
        return offered[0]
    ranges = _media_ranges(accept)
    if not ranges:
        return offered[0]
    weights = [(_weight(media.value, ranges), -index, media) for index, media in enumerate(offered)]
    weight, _, chosen = max(weights)
    if weight <= 0:
        raise NotAcceptable(
            f"This list is served as {' or '.join(m.value for m in offered)}; "
            f"the request accepts neither (Accept: {accept[:200]}).",
            extra={"available": [m.value for m in offered]},
        )
    return chosen


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return orjson.dumps(value).decode()
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_STARTS) else value
    return orjson.dumps(value).decode()


def columns_of(model: type[BaseModel]) -> list[str]:
    """A model's fields as its JSON names them, in declaration order."""
    return [
        field.serialization_alias or field.alias or name
        for name, field in model.model_fields.items()
    ]


def encode_csv(
    rows: Iterable[BaseModel | Mapping[str, Any]], columns: Sequence[str] | None = None
) -> bytes:
    """`rows` as CSV: a header row of `columns` (by default every key, in first-seen order)
    and one row per item, each value as its JSON answer has it."""
    dumped = [
        row.model_dump(mode="json", by_alias=True) if isinstance(row, BaseModel) else row
        for row in rows
    ]
    if columns is None:
        columns = list(dict.fromkeys(key for row in dumped for key in row))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in dumped:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return out.getvalue().encode("utf-8")


def csv_headers(*, next_url: str | None = None, total: int | None = None) -> dict[str, str]:
    headers = {"Content-Type": CSV_MEDIA_TYPE, "Vary": "Accept"}
    if next_url is not None:
        headers["Link"] = f'<{next_url}>; rel="next"'
    if total is not None:
        headers["X-Total-Count"] = str(total)
    return headers


@dataclass(frozen=True, slots=True)
class Negotiated:
    """A list route's chosen format, and how to answer in CSV."""

    format: ListFormat
    url: URL

    @property
    def csv(self) -> bool:
        return self.format is ListFormat.csv

    def table(
        self,
        rows: Iterable[BaseModel | Mapping[str, Any]],
        model: type[BaseModel],
        *,
        next_cursor: str | None = None,
        total: int | None = None,
    ) -> Response:
        """The rows as a CSV answer, columns as `model` names them."""
        next_url = (
            str(self.url.include_query_params(cursor=next_cursor))
            if next_cursor is not None
            else None
        )
        return Response(
            encode_csv(rows, columns_of(model)),
            headers=csv_headers(next_url=next_url, total=total),
        )


async def list_format(request: Request, response: Response) -> Negotiated:
    """The format the client asked for, decided before anything is called upstream; the
    JSON answer also says that it varies on `Accept`."""
    chosen = negotiate(request.headers.get("accept"))
    response.headers.append("Vary", "Accept")
    return Negotiated(chosen, request.url)


ListFormatDep = Annotated[Negotiated, Depends(list_format)]


def csv_of_json(document: bytes | memoryview, *, key: str, model: type[BaseModel]) -> Response:
    """The list under `key` of a JSON document (e.g. upstream bytes) as a CSV answer, columns
    as `model` names them, each value as the document has it."""
    return Response(
        encode_csv(orjson.loads(document)[key], columns_of(model)), headers=csv_headers()
    )


# Headers that would make a cached JSON answer unreadable as rows: a content coding, a 304.
_NOT_FOR_ROWS = frozenset({b"accept-encoding", b"if-none-match", b"if-modified-since"})


def as_plain_json_request(request: Request) -> Request:
    """The request as a client taking identity-coded JSON with no validators would send it,
    for a cached route's JSON answer that is to become CSV: the cache answers it with the
    entry every JSON client shares, its body plain JSON, never a 304."""
    headers = [
        (name, value) for name, value in request.scope["headers"] if name not in _NOT_FOR_ROWS
    ]
    return Request({**request.scope, "headers": headers}, request.receive)


def varies_by_accept(answer: Response) -> Response:
    """A JSON answer a list route built itself (not through its response model) says that it
    varies on `Accept` too."""
    answer.headers.append("Vary", "Accept")
    return answer


# OpenAPI `responses` of a list route: its CSV alternative, and the 406.
def csv_responses(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    columns = ", ".join(columns_of(model))
    return {
        200: {
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": ",".join(columns_of(model)) + "\r\n",
                }
            },
            "description": f"JSON by default; with `Accept: text/csv` the list as CSV: a "
            f"header row, then a row per item, columns {columns}",
        },
    }
