"""One error format for everything the gateway answers: RFC 9457 problem+json.

Every error is a `GatewayError` (or is converted into one by the handlers below), so a
client sees one shape: type, title, status, detail, instance and request_id.
"""

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.observability.request_id import current_request_id

logger = logging.getLogger("gateway.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "/problems/"


class FieldError(BaseModel):
    """One rejected input: where it was and what was wrong with it."""

    field: str = Field(description="Dotted location of the input, e.g. `body.limit_price`")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "/problems/validation-error",
                    "title": "Invalid request",
                    "status": 422,
                    "detail": "body.limit_price: limit_price is required for limit orders",
                    "instance": "/web/v1/orders",
                    "request_id": "5f0c6a0e9b1d4c3e8a7b6c5d4e3f2a1b",
                    "errors": [
                        {
                            "field": "body.limit_price",
                            "message": "limit_price is required for limit orders",
                        }
                    ],
                }
            ]
        },
    )

    type: str = Field(description="URI reference naming the problem type")
    title: str
    status: int
    detail: str
    instance: str = Field(description="The request path that caused the problem")
    request_id: str
    errors: list[FieldError] | None = None


class GatewayError(Exception):
    """Base of every error the gateway answers with."""

    status: int = 500
    slug: str = "internal-error"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


class BadRequest(GatewayError):
    status, slug, title = 400, "bad-request", "Bad request"


class MalformedBody(BadRequest):
    """The body cannot be read as what the route takes: not UTF-8, or not JSON at all.

    A body that parses but breaks the schema is an `InvalidRequest` (422) instead.
    """

    slug, title = "malformed-body", "Malformed request body"


class Unauthorized(GatewayError):
    status, slug, title = 401, "unauthorized", "Authentication required"


class Forbidden(GatewayError):
    status, slug, title = 403, "forbidden", "Not allowed"


class NotFound(GatewayError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(GatewayError):
    status, slug, title = 409, "conflict", "Conflict"


class InvalidRequest(GatewayError):
    status, slug, title = 422, "validation-error", "Invalid request"


class TooManyRequests(GatewayError):
    status, slug, title = 429, "rate-limited", "Too many requests"


class ServiceUnavailable(GatewayError):
    status, slug, title = 503, "service-unavailable", "Service unavailable"


class UpstreamError(GatewayError):
    """An upstream service answered, but not with something usable.

    Defined here rather than in `app.upstreams` because the layers below it (the breaker and
    bulkhead in `app.traffic`, the registry in `app.discovery`) raise these too.
    """

    status, slug, title = 502, "bad-gateway", "Upstream service error"

    def __init__(self, detail: str, *, service: str, **kwargs: object) -> None:
        super().__init__(detail, extra={"service": service}, **kwargs)  # type: ignore[arg-type]
        self.service = service


class UpstreamUnavailable(UpstreamError):
    """No instance could be reached, or the service said it is unavailable."""

    status, slug, title = 503, "upstream-unavailable", "Upstream service unavailable"


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer before the call's deadline."""

    status, slug, title = 504, "upstream-timeout", "Upstream service timed out"


class UpstreamRejected(GatewayError):
    """The upstream refused the request itself (4xx): its status and detail pass through,
    since they describe the client's request rather than a failure."""

    slug, title = "upstream-rejected", "Request rejected"

    def __init__(self, detail: str, *, status: int, service: str) -> None:
        super().__init__(detail, extra={"service": service})
        self.status = status
        self.service = service


def problem_body(error: GatewayError, *, instance: str) -> bytes:
    """The problem document for an error, as bytes."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + error.slug,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "instance": instance,
        "request_id": current_request_id(),
    }
    body.update(error.extra)
    return orjson.dumps(body)


def problem_response(request: Request, error: GatewayError) -> Response:
    """Render one problem document."""
    return Response(
        problem_body(error, instance=request.url.path),
        status_code=error.status,
        headers=error.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def _field_name(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc)


def validation_problem_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Pydantic's error list as named fields and readable messages."""
    named = []
    for error in errors:
        message = str(error.get("msg", "invalid value"))
        # Pydantic prefixes messages of custom validators; the field name says enough.
        message = message.removeprefix("Value error, ")
        named.append({"field": _field_name(error.get("loc", ())), "message": message})
    return named


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return problem_response(request, exc)


# What FastAPI says, as a 400, when the body cannot be decoded at all.
_UNPARSABLE_BODY = "There was an error parsing the body"


def _malformed_json(error: Mapping[str, Any]) -> MalformedBody | None:
    """A body that is not JSON, from FastAPI's `json_invalid` validation error."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") != "json_invalid" or loc[:1] != ("body",):
        return None
    reason = error.get("ctx", {}).get("error", "invalid syntax")
    where = f" at character {loc[1]}" if len(loc) > 1 else ""
    return MalformedBody(
        f"The body is not JSON: {reason}{where}.",
        extra={"errors": [{"field": "body", "message": f"not JSON: {reason}{where}"}]},
    )


def _unparsable_body(cause: BaseException | None) -> MalformedBody:
    """A body FastAPI could not decode: in practice one whose bytes are not UTF-8."""
    if isinstance(cause, UnicodeDecodeError):
        byte = cause.object[cause.start : cause.start + 1].hex()
        message = f"not UTF-8: byte 0x{byte} at offset {cause.start} ({cause.reason})"
    else:
        message = "could not be decoded"
    return MalformedBody(
        f"The body is {message}.", extra={"errors": [{"field": "body", "message": message}]}
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    for error in exc.errors():
        malformed = _malformed_json(error)
        if malformed is not None:
            return problem_response(request, malformed)
    errors = validation_problem_errors(exc.errors())
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
    return problem_response(request, InvalidRequest(detail, extra={"errors": errors}))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, GatewayError):
        # FastAPI turns whatever fails while it reads the body into a 400; a gateway error
        # raised there (the streamed body-size limit) keeps its own status.
        return problem_response(request, exc.__cause__)
    if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
        return problem_response(request, _unparsable_body(exc.__cause__))
    phrase = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) else phrase
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        detail = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
    error = GatewayError(detail, headers=headers)
    error.status = exc.status_code
    error.title = phrase
    error.slug = phrase.lower().replace(" ", "-").replace("'", "")
    return problem_response(request, error)


def _allowed_methods(request: Request) -> str:
    """Every method some route at the request's path answers (RFC 9110: a 405 lists all).

    The router answers 405 from the first route whose path matched, which knows only its own
    method; the others at the same path are separate routes.
    """
    path = request.scope["path"]
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        path_regex = getattr(route, "path_regex", None)
        if path_regex is not None and route.methods and path_regex.match(path):
            methods |= route.methods
    return ", ".join(sorted(methods))


def unexpected_error(exc: Exception, *, method: str, path: str) -> GatewayError:
    """Log an exception nothing handled, naming the request, and the 500 that answers it."""
    logger.error(
        "unhandled error: request_id=%s %s %s", current_request_id(), method, path, exc_info=exc
    )
    detail = "The gateway failed to handle this request; the request id names it in the logs."
    return GatewayError(detail)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through the one problem+json shape.

    Anything else that escapes a handler is answered by the edge (`app.middleware.edge`),
    inside the request's id and headers: a catch-all handler here would run in Starlette's
    outermost middleware, after the edge has finished with the request.
    """
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error statuses.

    The documents are rewritten to `application/problem+json` in `app.openapi`.
    """
    described = {
        400: "The request is malformed",
        401: "Authentication is missing or invalid",
        403: "The caller may not do this",
        404: "Nothing exists at this address",
        409: "The request conflicts with the resource's state",
        413: "The request body is too large",
        422: "A parameter or body field failed validation; `errors` names each one",
        429: "A rate limit or quota is exhausted; see `Retry-After`",
        502: "An upstream service answered with an error",
        503: "An upstream service is unavailable",
        504: "An upstream service did not answer in time",
    }
    return {
        status: {
            "description": described.get(status, HTTPStatus(status).phrase),
            "model": Problem,
        }
        for status in statuses
    }
